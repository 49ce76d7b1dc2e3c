"""What each study of a scale runs: the design dataclasses a :class:`~gemrepro.config.scales.Scale`
holds, one per study (``scale.recipe``, ``scale.pretraining``, ``scale.seeds``, ``scale.committee``,
``scale.long_runs``, ``scale.performance``).

Their fields, order and defaults are part of the cache keys (``dataclasses.asdict(design)`` is
hashed into the artifacts' parameters): renaming, reordering or adding a field changes every key,
which invalidates the shipped models (``models/<scale>.tar.xz``). Floor 0: the standard library and
numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_DT_FS",
    "ArmsDesign",
    "CommitteeDesign",
    "LongRunDesign",
    "PerformancePlan",
    "Plan",
    "Recipe",
    "SeedsDesign",
    "StabilityProtocol",
]

DEFAULT_DT_FS = 0.5
"""The MD time step (fs) of the long runs: the MD engine's default (``gemrepro.md.integrators.DEFAULT_DT_FS``;
a test checks they agree), here because config imports nothing of gemrepro's."""


# ----------------------------------------------------------------------------- learning curves
@dataclass(frozen=True)
class Recipe:
    """How one scale trains its models: the paper's recipe, with budgets in steps.

    ``max_steps`` has one entry per training size of the scale (smallest first): a small
    training set converges (or over-fits) in fewer updates. ``max_validation`` caps the
    validation structures used for early stopping, because evaluating forces on a quarter of
    the training set every ``eval_every`` steps would cost more than training at ``tiny``.
    ``model_overrides`` change fields of the scale's GemNet preset. Every budget is a multiple
    of ``eval_every``, so the last step is validated and can become the kept model.
    """

    max_steps: tuple[int, ...]
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 1000
    decay_steps: int = 100_000
    decay_rate: float = 0.01
    ema_decay: float = 0.999
    energy_weight: float = 0.001  # the paper's 0.1 % energy, 99.9 % forces
    force_weight: float = 0.999
    patience: int = 20
    min_relative_delta: float = 0.0  # progress that resets the patience, as a fraction of the loss
    eval_every: int = 1000
    checkpoint_every: int = 1000
    max_validation: int | None = None
    dtype: str = "float32"
    model_overrides: tuple[tuple[str, object], ...] = ()


# ----------------------------------------------------------------------------- pretraining
@dataclass(frozen=True)
class StabilityProtocol:
    """MDsim's stability test: NVT at 500 K, 0.5 fs, ``n_seeds`` trajectories per model."""

    time_ps: float
    n_seeds: int
    temperature: float = 500.0
    dt_fs: float = 0.5
    friction_per_fs: float = 0.01
    frame_interval: int = 100  # MDsim stores a frame every 0.05 ps

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_ps) and self.time_ps > 0):
            raise ValueError(f"time_ps: expected a positive duration in ps, got {self.time_ps!r}")
        for name in ("n_seeds", "frame_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not (self.temperature > 0 and self.dt_fs > 0 and self.friction_per_fs > 0):
            raise ValueError("temperature, dt_fs, friction_per_fs: expected positive numbers")

    @property
    def n_steps(self) -> int:
        return int(round(self.time_ps * 1000.0 / self.dt_fs))


@dataclass(frozen=True)
class Plan:
    """The sizes of the pretraining experiment at one scale (the paper: aspirin, 10k frames, OC20)."""

    molecule: str  # an MD17 molecule (gemrepro.catalog.MD17)
    n_train: int
    n_validation: int
    n_test: int
    target_frame_interval: int  # reference-MD steps between target frames (MD17: 1)
    hot_molecules: int  # molecules of the MD list run hot for the corpus
    hot_frames: int  # frames per hot molecule
    hot_temperature: float
    pretrain_steps: int
    finetune_steps: int
    stability: StabilityProtocol
    target_temperature: float = 500.0

    @property
    def n_target_frames(self) -> int:
        return self.n_train + self.n_validation + self.n_test


@dataclass(frozen=True)
class ArmsDesign:
    """The second paper's experiment as two arms of models (issue #31), at one scale.

    The target follows MD17's recipe: ``target_runs`` independent reference-method MD runs of
    one molecule at ``target_temperature``; training and validation frames come from all runs
    but the last, test frames from the last (frames of one run are correlated, a held-out run is
    not). The corpus standing in for OC20 is the scale's normal-mode dataset plus hot reference
    MD (``corpus_temperatures``) of ``corpus_molecules`` of its molecules, the target's formula
    left out. Each arm trains ``training_seeds`` models per fine-tuning set size, in epochs,
    until the validation loss stops improving for ``patience_epochs``. A pilot of the scratch
    arm at ``pilot_temperatures`` picks the temperature of the stability runs (the lowest at
    which the scratch arm's median failure falls inside ``time_ps``).
    """

    molecule: str  # an MD17 molecule (gemrepro.catalog.MD17)
    target_runs: int
    frames_per_run: int
    target_frame_interval: int  # reference-MD steps between frames
    train_sizes: tuple[int, ...]  # fine-tuning set sizes of the MAE-vs-stability picture, smallest first
    primary_size: int  # the set size of the MAE-matched comparison (one of train_sizes)
    n_validation: int
    training_seeds: int
    corpus_molecules: int
    corpus_frames: int  # frames per corpus molecule and hot temperature
    pretrain_max_epochs: int
    finetune_max_epochs: int
    patience_epochs: int
    pretrain_decay_epochs: int  # the learning rate falls tenfold every this many epochs
    finetune_decay_epochs: int
    pilot_temperatures: tuple[float, ...]
    pilot_seeds: int  # trajectories per scratch model and pilot temperature
    time_ps: float  # the length of every pilot and stability run
    md_seeds: int  # trajectories per model of the matched comparison
    family_md_seeds: int  # trajectories per model of the MAE-vs-stability picture
    corpus_temperatures: tuple[float, ...] = (1000.0, 1500.0)
    corpus_frame_interval: int = 10
    pretrain_batch_size: int = 16
    target_temperature: float = 500.0  # MD17's
    md_frame_interval: int = 100  # MDsim stores a frame every 0.05 ps

    def __post_init__(self) -> None:
        counts = (
            "target_runs", "frames_per_run", "target_frame_interval", "n_validation", "training_seeds",
            "corpus_molecules", "corpus_frames", "pretrain_max_epochs", "finetune_max_epochs", "patience_epochs",
            "pretrain_decay_epochs", "finetune_decay_epochs", "pilot_seeds", "md_seeds", "family_md_seeds",
            "corpus_frame_interval", "pretrain_batch_size", "md_frame_interval",
        )  # fmt: skip
        for name in counts:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.target_runs < 2:
            raise ValueError(
                f"target_runs: expected at least 2 (training runs and a held-out test run), got {self.target_runs}"
            )
        sizes = tuple(self.train_sizes)
        if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
            raise ValueError(f"train_sizes: expected increasing positive sizes, got {self.train_sizes!r}")
        if self.primary_size not in sizes:
            raise ValueError(f"primary_size: expected one of train_sizes {sizes}, got {self.primary_size!r}")
        pool = (self.target_runs - 1) * self.frames_per_run
        if sizes[-1] + self.n_validation > pool:
            raise ValueError(
                f"train_sizes: the largest ({sizes[-1]}) plus {self.n_validation} validation frames exceeds the "
                f"{pool} frames of the {self.target_runs - 1} training runs"
            )
        temperatures = (*self.pilot_temperatures, *self.corpus_temperatures, self.target_temperature)
        if not self.pilot_temperatures or any(not (math.isfinite(t) and t > 0) for t in temperatures):
            raise ValueError("pilot_temperatures, corpus_temperatures, target_temperature: expected positive kelvins")
        if list(self.pilot_temperatures) != sorted(set(self.pilot_temperatures)):
            raise ValueError(f"pilot_temperatures: expected increasing temperatures, got {self.pilot_temperatures!r}")
        if not (math.isfinite(self.time_ps) and self.time_ps > 0):
            raise ValueError(f"time_ps: expected a positive duration in ps, got {self.time_ps!r}")

    @property
    def n_test(self) -> int:
        """Test frames: every frame of the held-out run."""
        return self.frames_per_run


# ----------------------------------------------------------------------------- seeds study
@dataclass(frozen=True)
class SeedsDesign:
    """Which systems a seeds run holds: the first ``n_molecules`` MD molecules x temperatures x ``n_seeds``."""

    n_molecules: int
    n_seeds: int
    temperatures: tuple[float, ...] | None = None  # None: the protocol's

    def __post_init__(self) -> None:
        for name in ("n_molecules", "n_seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.temperatures is not None:
            if not self.temperatures or any(not (t > 0) for t in self.temperatures):
                raise ValueError(f"temperatures: expected positive temperatures in K, got {self.temperatures!r}")
            object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))


# ----------------------------------------------------------------------------- committees
@dataclass(frozen=True)
class CommitteeDesign:
    """Which training sizes get a committee, how many members each has (member 0 included), and
    every how many stored frames the committee is evaluated (``frame_stride``; the last is always)."""

    train_sizes: tuple[int, ...]
    n_members: int = 3
    frame_stride: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.n_members, bool) or int(self.n_members) != self.n_members or self.n_members < 2:
            raise ValueError(f"n_members: expected at least 2 members per committee, got {self.n_members!r}")
        if not self.train_sizes:
            raise ValueError("train_sizes: expected at least one training size")
        if isinstance(self.frame_stride, bool) or int(self.frame_stride) != self.frame_stride or self.frame_stride < 1:
            raise ValueError(f"frame_stride: expected a positive integer, got {self.frame_stride!r}")


# ----------------------------------------------------------------------------- long runs
@dataclass(frozen=True)
class LongRunDesign:
    """Every MD molecule at ``temperature`` (K) x ``n_seeds``, each to ``time_ps`` or its first failure."""

    temperature: float
    n_seeds: int
    time_ps: float
    frame_interval: int = 200
    checkpoint_interval: int = 1000

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature: expected a positive temperature in K, got {self.temperature!r}")
        if not (np.isfinite(self.time_ps) and self.time_ps > 0):
            raise ValueError(f"time_ps: expected a positive length in ps, got {self.time_ps!r}")
        for name in ("n_seeds", "frame_interval", "checkpoint_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")

    @property
    def n_steps(self) -> int:
        return int(round(self.time_ps * 1000.0 / DEFAULT_DT_FS))


# ----------------------------------------------------------------------------- performance
@dataclass(frozen=True)
class PerformancePlan:
    """How much each measurement runs at one scale (large enough to time, small enough to wait for)."""

    md_systems: int
    md_steps: int
    model_preset: str
    model_sizes: tuple[int, ...]
    model_repeats: int
    label_configurations: int
    label_workers: tuple[int, ...]
    train_preset: str
    train_batch_size: int
    train_steps: int
