"""The three scales of every experiment: same shape, different size.

``tiny`` fits CI (2 CPU cores, whole book in minutes), ``small`` one GPU, ``paper`` the
seeds' sizes. Each keeps four training-set sizes a factor 10 apart with validation sets a
quarter of the training set (3.2k/800 ... 3.2M/800k in the paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Scale:
    """Sizes of one scale; every chapter reads what it needs from here."""

    name: str
    n_molecules: int  # molecules drawn from the QM7-X-style catalog
    n_conformers: int  # conformers per molecule
    n_displaced: int  # normal-mode displaced structures per conformer (QM7-X: 100)
    train_sizes: tuple[int, ...]  # four sizes a factor 10 apart
    test_size: int
    n_md_molecules: int
    temperatures: tuple[float, ...] = (300.0, 600.0, 1200.0)
    md_time_ps: float = 1.0  # the short runs of the studies (seeds, out-of-sample, stability checks)
    n_sampled_frames: int = 72
    model_preset: str = "tiny"
    notes: str = ""
    extra: dict = field(default_factory=dict)
    default_variant: str = "T"  # the GemNet of the chapters: T (triplets) or Q (quadruplets, the paper's)
    learning_curve_variants: tuple[str, ...] = ("T",)  # variants the learning-curve chapter draws side by side
    n_training_seeds: int = 1  # models per training size, differing in initialisation and batch order
    dft_frames_per_cell: int = 30  # PBE0 relabelling of the convergence chapter: frames per (model, T) cell
    dft_temperatures: tuple[float, ...] | None = None  # the cells' temperatures (None: all)
    sweep_time_ps: float | None = None  # the temperature sweep's length (None: md_time_ps)

    @property
    def sweep_length_ps(self) -> float:
        """How long each temperature-sweep trajectory runs (ps)."""
        return self.md_time_ps if self.sweep_time_ps is None else self.sweep_time_ps

    @property
    def validation_sizes(self) -> tuple[int, ...]:
        """Validation set per training size, in the paper's 4:1 proportion."""
        return tuple(max(1, n // 4) for n in self.train_sizes)

    @property
    def n_configurations(self) -> int:
        """Configurations the dataset build produces (before failed labels are dropped)."""
        return self.n_molecules * self.n_conformers * (self.n_displaced + 1)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["validation_sizes"] = self.validation_sizes
        return out


SCALES: dict[str, Scale] = {
    "tiny": Scale(
        name="tiny",
        n_molecules=30,  # the 5 MD molecules and 25 more: a chemical space small enough to learn on 2 cores
        n_conformers=3,
        n_displaced=100,
        # Half a decade apart (the paper: a decade): four decades of data cannot converge on 2 CPU
        # cores, and the sparsest model must see enough configurations for a test error that looks good.
        train_sizes=(100, 320, 1000, 3200),
        test_size=500,
        n_md_molecules=5,
        md_time_ps=1.0,  # 2,000 steps: the many short runs (seeds, out-of-sample) in the tiny book's MD budget
        # 20,000 steps: long enough for a hole to open after a stable stretch (the sparsest model's
        # median failure at 1200 K is a few ps); ~1 h of one core, so the runs ship with the models.
        sweep_time_ps=10.0,
        model_preset="tiny",
        notes="CI and laptops: 2 CPU cores, minutes",
        n_training_seeds=3,
        # 30 PBE0/def2-SVP frames per model at the hottest T (~5 s each on a core): the Fig. 2d
        # statistic with power, in ~6 minutes on 2 cores; the cooler cells would triple it.
        dft_frames_per_cell=30,
        dft_temperatures=(1200.0,),
    ),
    "small": Scale(
        name="small",
        n_molecules=450,
        n_conformers=1,
        n_displaced=100,
        train_sizes=(32, 320, 3200, 32000),
        test_size=2000,
        n_md_molecules=20,
        md_time_ps=50.0,
        model_preset="small",
        notes="one GPU, a few hours",
        learning_curve_variants=("T", "Q"),
        n_training_seeds=3,
    ),
    "paper": Scale(
        name="paper",
        n_molecules=6950,
        n_conformers=6,
        n_displaced=100,
        train_sizes=(3200, 32000, 320000, 3200000),
        test_size=10100,
        n_md_molecules=20,
        md_time_ps=1000.0,
        model_preset="paper",
        notes="a cluster: the seeds' sizes",
        default_variant="Q",
        learning_curve_variants=("T", "Q"),
    ),
}


def get_scale(name: str) -> Scale:
    """The named scale, or a one-line error listing the valid names."""
    try:
        return SCALES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown scale {name!r}: expected one of {', '.join(SCALES)}"
        ) from None
