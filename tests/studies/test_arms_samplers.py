"""The arms' training stages have samplers: a stored pretrained or arm model is retrained through its
stage's own function for its first evaluation and compared with its history; a changed history is caught."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from arms_designs import micro_design

from gemrepro.cache.artifacts import MANIFEST, Artifact
from gemrepro.config.scales import SCALES
from gemrepro.studies import pretraining_arms as pa
from gemrepro.studies.samplers import SAMPLERS, Inputs, SampleUnavailable

torch.set_num_threads(1)

# A micro arms design over a four-molecule dataset (ethanol, the target, among them): every input is a
# stored artifact (dataset, hot and target reference MD), as in a computed study; about 15 s to build.
DESIGN = micro_design(
    training_seeds=1, corpus_molecules=4, corpus_frames=2, corpus_frame_interval=2, pretrain_max_epochs=3,
    md_seeds=1, pretrain_batch_size=4
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Stored:
    root: Path
    pretrained: Artifact
    scratch: Artifact
    tuned: Artifact


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Iterator[Stored]:
    """A pretrained, a scratch and a matching fine-tuned model built by the stages' public functions."""
    scale = dataclasses.replace(
        SCALES["tiny"], n_molecules=4, n_conformers=1, n_displaced=2, n_md_molecules=4, arms=DESIGN
    )
    root = tmp_path_factory.mktemp("arms-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SCALES, "tiny", scale)
        tgt = pa.target(scale, root=root)
        pretrained = pa.pretrained_model(scale, tgt.formula, root=root)
        scratch = pa.arm_model(tgt, scale, "scratch", 12, 0, root=root)
        # every validation reaches this target: the stored run matched at its first evaluation
        tuned = pa.arm_model(tgt, scale, "pretrained", 12, 0, pretrained=pretrained, match_forces_mae=1e3, root=root)
        yield Stored(root, pretrained, scratch, tuned)


def _tampered(artifact: Artifact, folder: Path, column: str | None = None, **manifest) -> Artifact:
    """A copy of ``artifact`` whose first evaluation's ``column`` is 1 % larger, or whose manifest differs."""
    copy = folder / artifact.stage / artifact.key
    shutil.copytree(artifact.path, copy)
    if column is not None:
        history = pd.read_csv(copy / "history.csv")
        history.loc[0, column] *= 1.01
        history.to_csv(copy / "history.csv", index=False)
    content = {**artifact.manifest, **manifest}
    (copy / MANIFEST).write_text(json.dumps(content))
    return Artifact(copy, content)


@pytest.mark.parametrize("which", ["pretrained", "scratch", "tuned"])
def test_a_stored_model_is_reproduced_and_a_changed_history_is_caught(stored, which, tmp_path):
    artifact = getattr(stored, which)
    assert artifact.manifest["steps"] > pd.read_csv(artifact.file("history.csv"))["step"].iloc[0]  # more than sampled
    sampler = SAMPLERS[artifact.stage]
    sample = sampler(artifact, Inputs([stored.root], tmp_path / "work"))
    assert sample.agrees and sample.difference < 1e-6, sample
    assert sample.stage == artifact.stage and "first evaluation" in sample.what
    changed = _tampered(artifact, tmp_path / "tampered", "val_forces_mae")
    sample = sampler(changed, Inputs([stored.root], tmp_path / "again"))
    assert not sample.agrees and sample.difference == pytest.approx(0.01 / 1.01, rel=1e-6)


def test_a_fine_tuned_model_must_match_where_the_stored_one_did(stored, tmp_path):
    assert stored.tuned.manifest["matched_step"] == pd.read_csv(stored.tuned.file("history.csv"))["step"].iloc[0]
    never = _tampered(stored.tuned, tmp_path / "tampered", matched_step=None)
    sample = SAMPLERS["arms-models"](never, Inputs([stored.root], tmp_path / "work"))
    assert not sample.agrees and sample.difference == float("inf")


def test_a_missing_input_is_named(stored, tmp_path):
    empty = tmp_path / "empty"
    tuned_only = _tampered(stored.tuned, empty)
    with pytest.raises(SampleUnavailable, match=f"arms-pretrained/{stored.pretrained.key} is in none of"):
        SAMPLERS["arms-models"](tuned_only, Inputs([empty], tmp_path / "work"))
    with pytest.raises(SampleUnavailable, match="none of the study seeds"):
        SAMPLERS["arms-models"](stored.scratch, Inputs([empty], tmp_path / "work"))
    with pytest.raises(SampleUnavailable, match="its input dataset/"):
        SAMPLERS["arms-pretrained"](stored.pretrained, Inputs([empty], tmp_path / "work"))
