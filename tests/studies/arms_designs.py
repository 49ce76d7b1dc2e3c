"""A micro arms design for the tests beside this module: ethanol as the target, seconds to run.

Every test of the arms study (``test_pretraining_arms.py``) and of its samplers
(``test_arms_samplers.py``) starts from these values and changes what it needs.
"""

from __future__ import annotations

from gemrepro.config.designs import ArmsDesign

MICRO = dict(
    molecule="ethanol",
    target_runs=2,
    frames_per_run=20,
    target_frame_interval=3,
    train_sizes=(6, 12),
    primary_size=12,
    n_validation=6,
    training_seeds=2,
    corpus_molecules=2,
    corpus_frames=10,
    pretrain_max_epochs=4,
    finetune_max_epochs=3,
    patience_epochs=2,
    pretrain_decay_epochs=2,
    finetune_decay_epochs=2,
    pilot_temperatures=(300.0, 3000.0),
    pilot_seeds=1,
    time_ps=0.01,
    md_seeds=2,
    family_md_seeds=1,
    pretrain_batch_size=8,
    md_frame_interval=5,
)


def micro_design(**changes: object) -> ArmsDesign:
    """The micro design with ``changes``."""
    return ArmsDesign(**{**MICRO, **changes})  # type: ignore[arg-type]
