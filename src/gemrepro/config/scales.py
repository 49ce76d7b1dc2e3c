"""The three scales of every experiment: same shape, different size.

``tiny`` fits CI (2 CPU cores, whole book in minutes), ``small`` one GPU, ``paper`` the
seeds' sizes. A scale is one object: its sizes and what every study runs at it (the designs of
:mod:`gemrepro.config.designs`). Each keeps four training-set sizes a factor 10 apart with validation sets a
quarter of the training set (3.2k/800 ... 3.2M/800k in the paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from gemrepro.config.designs import (
    ArmsDesign,
    CommitteeDesign,
    LongRunDesign,
    PerformancePlan,
    Plan,
    Recipe,
    SeedsDesign,
    StabilityProtocol,
)


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
    # What each study runs at this scale (gemrepro.config.designs; None: the study is not planned here)
    recipe: Recipe | None = None  # how its models are trained (learning curves; pretraining shares it)
    pretraining: Plan | None = None  # the pretraining experiment
    seeds: SeedsDesign | None = None  # the seeds study's systems
    committee: CommitteeDesign | None = None  # which sizes get a committee, of how many members
    long_runs: LongRunDesign | None = None  # the long stability runs
    performance: PerformancePlan | None = None  # how much each speed measurement runs
    arms: ArmsDesign | None = None  # the second paper's experiment as arms of seeds (issue #31)

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
        # median failure at 1200 K is a few ps); 34 min of one core for the four models, so the runs
        # ship with the models.
        sweep_time_ps=10.0,
        model_preset="tiny",
        notes="CI and laptops: 2 CPU cores, minutes",
        n_training_seeds=3,
        # 30 PBE0/def2-SVP frames per model at the hottest T (5 s to over a minute each on a core;
        # torn post-failure geometries take the longest): the Fig. 2d statistic with power, in about
        # 22 minutes on 2 cores; the cooler cells would triple it.
        dft_frames_per_cell=30,
        dft_temperatures=(1200.0,),
        # 2 CPU cores: twelve models (four sizes x three seeds), each trained until its validation loss
        # has not improved by 2 % in 5 validations (every 100 steps); max_steps is a safety cap the
        # chapter reports when it is hit. Batches of 8, a 4 Å cutoff (molecules of ~14 atoms: fewer
        # triplets per atom, cheaper steps), a learning rate that falls tenfold every 4,000 steps.
        # Energies get 5 % of the loss (the paper: 0.1 %, over millions of steps; over thousands the
        # energy would stay untrained).
        recipe=Recipe(
            max_steps=(8000, 8000, 8000, 8000),
            batch_size=8,
            lr=3e-3,
            warmup_steps=50,
            decay_steps=4000,
            decay_rate=0.1,
            energy_weight=0.05,
            force_weight=0.95,
            patience=5,
            min_relative_delta=0.02,
            eval_every=100,
            checkpoint_every=500,
            max_validation=100,
            model_overrides=(("cutoff", 4.0),),
        ),
        # 2 CPU cores, minutes: ethanol (9 atoms, the cheapest MD17 molecule), 300 frames, 0.1 ps of MD.
        pretraining=Plan(
            "ethanol",
            150,
            50,
            100,
            5,
            6,
            40,
            1000.0,
            pretrain_steps=300,
            finetune_steps=200,
            stability=StabilityProtocol(time_ps=0.1, n_seeds=24, frame_interval=5),
        ),
        # The chapter's MD budget on 2 CPU cores is about a minute for all four models. The first two
        # MD molecules hold every element; 300 K is left out, where within 0.25 ps only the sparsest
        # model fails (the temperature-sweep chapter shows it).
        # Issue #31 on 2 CPU cores: ethanol, 5 runs of 300 frames 10 fs apart (3 ps each, the last held
        # out); fine-tuning sets of 50, 200 and 800 frames, 3 training seeds per arm and size; a corpus of
        # the 29 other dataset molecules at 1000 and 1500 K (300 frames each) beside the 9,090 normal-mode
        # configurations; 20 ps stability runs, 16 per model of the matched comparison, 8 per model of the
        # picture. About 8 core-hours: the runs ship with the models.
        arms=ArmsDesign(
            molecule="ethanol",
            target_runs=5,
            frames_per_run=300,
            target_frame_interval=20,
            train_sizes=(50, 200, 800),
            primary_size=200,
            n_validation=50,
            training_seeds=3,
            corpus_molecules=30,
            corpus_frames=300,
            pretrain_max_epochs=30,
            finetune_max_epochs=400,
            patience_epochs=10,
            pretrain_decay_epochs=8,
            finetune_decay_epochs=100,
            pilot_temperatures=(500.0, 700.0, 900.0, 1100.0, 1300.0),
            pilot_seeds=2,
            time_ps=20.0,
            md_seeds=16,
            family_md_seeds=8,
            md_frame_interval=1000,  # a frame every 0.5 ps (MDsim: 0.05 ps), so the runs ship in a few MB
        ),
        seeds=SeedsDesign(n_molecules=2, n_seeds=3, temperatures=(600.0, 1200.0)),
        # Every size, with the three training seeds of the learning-curve chapter as members, so the
        # committees cost no extra training. Every second stored frame keeps the evaluation within budget.
        committee=CommitteeDesign(train_sizes=(100, 320, 1000, 3200), n_members=3, frame_stride=2),
        # 10 ps (the sweep's length) at the sweep's hottest temperature; 4 seeds of each of the 5 molecules.
        long_runs=LongRunDesign(temperature=1200.0, n_seeds=4, time_ps=10.0),
        performance=PerformancePlan(
            md_systems=4,
            md_steps=20,
            model_preset="tiny",
            model_sizes=(8, 16, 32, 64, 128),
            model_repeats=3,
            label_configurations=240,
            label_workers=(1, 2),
            train_preset="tiny",
            train_batch_size=8,
            train_steps=6,
        ),
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
        # One GPU: tens of thousands of steps per model.
        recipe=Recipe(
            max_steps=(5_000, 10_000, 20_000, 40_000),
            batch_size=32,
            lr=1e-3,
            warmup_steps=1000,
            decay_steps=40_000,
            decay_rate=0.05,
            patience=10,
            eval_every=1000,
            checkpoint_every=1000,
            max_validation=2000,
        ),
        pretraining=Plan(
            "aspirin",
            1000,
            250,
            1000,
            10,
            20,
            200,
            1000.0,
            pretrain_steps=20_000,
            finetune_steps=10_000,
            stability=StabilityProtocol(time_ps=20.0, n_seeds=32),
        ),
        # Aspirin, 1k fine-tuning frames (MD17's small set) from 10 runs, 100 ps stability runs.
        arms=ArmsDesign(
            molecule="aspirin",
            target_runs=10,
            frames_per_run=400,
            target_frame_interval=20,
            train_sizes=(250, 1000, 3000),
            primary_size=1000,
            n_validation=250,
            training_seeds=3,
            corpus_molecules=450,
            corpus_frames=200,
            pretrain_max_epochs=60,
            finetune_max_epochs=1000,
            patience_epochs=20,
            pretrain_decay_epochs=15,
            finetune_decay_epochs=200,
            pilot_temperatures=(500.0, 700.0, 900.0, 1100.0),
            pilot_seeds=4,
            time_ps=100.0,
            md_seeds=16,
            family_md_seeds=8,
            pretrain_batch_size=32,
        ),
        seeds=SeedsDesign(n_molecules=20, n_seeds=5),
        committee=CommitteeDesign(train_sizes=(32, 320, 3200, 32000), n_members=4),
        long_runs=LongRunDesign(
            temperature=1200.0, n_seeds=4, time_ps=100.0, frame_interval=1000, checkpoint_interval=10000
        ),
        performance=PerformancePlan(
            md_systems=60,
            md_steps=200,
            model_preset="small",
            model_sizes=(8, 16, 32, 64, 128, 256, 512),
            model_repeats=5,
            label_configurations=2000,
            label_workers=(1, 2, 4, 8),
            train_preset="small",
            train_batch_size=32,
            train_steps=50,
        ),
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
        # The GemNet reference training configuration (TUM-DAML/gemnet_pytorch config.yaml):
        # batch 32, lr 1e-3, warm-up 3,750, exponential decay to 1 % over 4.5M steps, at most
        # 1.5M steps, validation every 7,500 steps, early stopping.
        recipe=Recipe(
            max_steps=(1_500_000,) * 4,
            batch_size=32,
            lr=1e-3,
            warmup_steps=3750,
            decay_steps=4_500_000,
            decay_rate=0.01,
            patience=50,
            eval_every=7500,
            checkpoint_every=7500,
        ),
        # The paper: aspirin, 10k fine-tuning frames; MDsim's 300 ps.
        pretraining=Plan(
            "aspirin",
            9500,
            500,
            1000,
            10,
            20,
            1000,
            1000.0,
            pretrain_steps=1_000_000,
            finetune_steps=500_000,
            stability=StabilityProtocol(time_ps=300.0, n_seeds=16),
        ),
        # The paper: aspirin, 10k fine-tuning frames; MDsim's 300 ps (the temperature still from the pilot).
        arms=ArmsDesign(
            molecule="aspirin",
            target_runs=20,
            frames_per_run=1000,
            target_frame_interval=20,
            train_sizes=(1000, 3000, 10000),
            primary_size=10000,
            n_validation=1000,
            training_seeds=3,
            corpus_molecules=6950,
            corpus_frames=100,
            pretrain_max_epochs=100,
            finetune_max_epochs=2000,
            patience_epochs=50,
            pretrain_decay_epochs=25,
            finetune_decay_epochs=400,
            pilot_temperatures=(500.0, 700.0, 900.0, 1100.0),
            pilot_seeds=4,
            time_ps=300.0,
            md_seeds=16,
            family_md_seeds=8,
            pretrain_batch_size=32,
        ),
        seeds=SeedsDesign(n_molecules=20, n_seeds=5),
        committee=CommitteeDesign(train_sizes=(3200, 32000, 320000, 3200000), n_members=4),
        long_runs=LongRunDesign(
            temperature=1200.0, n_seeds=4, time_ps=1000.0, frame_interval=2000, checkpoint_interval=20000
        ),
        performance=PerformancePlan(
            md_systems=60,
            md_steps=1000,
            model_preset="paper",
            model_sizes=(8, 16, 32, 64, 128, 256, 512, 1024),
            model_repeats=5,
            label_configurations=10_000,
            label_workers=(1, 2, 4, 8, 16, 32),
            train_preset="paper",
            train_batch_size=32,
            train_steps=100,
        ),
    ),
}


def get_scale(name: str) -> Scale:
    """The named scale, or a one-line error listing the valid names."""
    try:
        return SCALES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scale {name!r}: expected one of {', '.join(SCALES)}") from None
