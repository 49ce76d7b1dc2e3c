"""Equal force error, unequal stability? The second paper's experiment as two arms of models (issue #31).

Maheshwari et al. (arXiv:2506.14850) train GemNet-T on MD17 twice, from scratch and from OC20
pretraining, reach about the same force error, and find the pretrained model's MD stable up to
three times longer. The seed names no molecule, temperature, run length or failure rule; this
study takes those from MDsim (Fu et al.) and says so. It makes the comparison an experiment:

* the **target** follows MD17's recipe: several independent reference-method runs of one molecule
  at 500 K; training and validation frames from all runs but the last, test frames from the last;
* the **corpus** standing in for OC20 is broad and far from equilibrium: the scale's normal-mode
  dataset plus hot (1000–1500 K) reference MD of its molecules, the target's formula left out;
* each **arm** (scratch, fine-tuned) trains several seeds per fine-tuning set size, in epochs, to
  a validation plateau;
* **equal force error by a rule**: a fine-tuned model enters the comparison at its first validation
  that reaches the converged scratch arm's mean validation force MAE
  (:func:`gemrepro.analysis.arms.matched_step`);
* a **pilot** of the scratch arm picks the temperature at which it fails inside the run
  (:func:`gemrepro.analysis.arms.pilot_temperature`), then every model runs many MD seeds there.

Stages, cached under the parameters that make them: ``reference-md`` and ``dataset`` (data),
``arms-pretrained`` (the corpus model), ``arms-models`` (one model: arm, set size, training seed),
``arms-md`` (one batched stability run of one model).
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import torch
from ase import Atoms
from ase.io import read as ase_read
from torch_geometric.data import Batch

from gemrepro.analysis.arms import detectable_ratio, matched_step, pilot_temperature
from gemrepro.analysis.rdf import MDSIM_BINS, MDSIM_MAX_DISTANCE, distance_histogram, histogram_distance
from gemrepro.analysis.survival import stable_times
from gemrepro.cache.artifacts import Artifact, artifact_key, get_or_create, load_artifact
from gemrepro.cache.bundle import file_digest, pack, unpack_shipped
from gemrepro.cache.paths import artifacts_dir, repo_root
from gemrepro.catalog import MD17, dataset_molecules
from gemrepro.config.designs import ArmsDesign
from gemrepro.config.scales import SCALES, Scale
from gemrepro.data import read
from gemrepro.data.build import build_dataset, dataset_params
from gemrepro.data.reference_md import MDRecipe, read_frames, reference_md_frames, reference_md_params
from gemrepro.data.torch_dataset import AtomsDataset, fit_element_references
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md import run_md
from gemrepro.md.runner import one_torch_thread
from gemrepro.md.trajectory import stable_positions
from gemrepro.model import build_model, fit_scale_factors, load_model, save_model
from gemrepro.studies.learning_curve import model_config, recipe
from gemrepro.train import TrainConfig, evaluate
from gemrepro.train.trainer import Trainer

__all__ = [
    "ARMS",
    "ArmsStudy",
    "Corpus",
    "Target",
    "arm_model",
    "arms_study",
    "compute",
    "corpus",
    "corpus_sources",
    "design_for",
    "detectable",
    "distance_histograms",
    "histories",
    "epoch_config",
    "file_source",
    "fresh_model",
    "pretrain",
    "pretrained_model",
    "pretrained_params",
    "ship",
    "stability_run",
    "target",
]

PRETRAIN_STAGE, MODEL_STAGE, MD_STAGE = "arms-pretrained", "arms-models", "arms-md"
STAGE_VERSION = 1  # bump when what these artifacts hold or how they are computed changes
ARMS = ("scratch", "pretrained")  # control, treated
MATCHED_MODEL = "matched_model.pt"


def design_for(scale: Scale) -> ArmsDesign:
    """The arms design of a scale (a one-line error for a scale without one)."""
    if scale.arms is None:
        planned = ", ".join(name for name, s in SCALES.items() if s.arms is not None)
        raise ValueError(f"scale {scale.name!r} has no arms design: expected a Scale with one, as {planned}")
    return scale.arms


def file_source(path, name: str) -> tuple[Path, str]:
    """An input file the user named (``name`` in the one-line error when it is missing) and its
    source tag for cache keys: ``file:`` and the first 16 hex digits of its SHA-256."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"{name}: expected a dataset file that gemrepro.data.read loads, got {str(path)!r}")
    return path, f"file:{file_digest(path)[:16]}"


# ----------------------------------------------------------------------------- the target
@dataclass(frozen=True)
class Target:
    """The fine-tuning molecule: a pool of training/validation frames, a held-out test run, the MD start."""

    name: str
    pool: list[Atoms]  # frames of the training runs
    test: list[Atoms]  # frames of the held-out run
    validation: np.ndarray  # indices into pool
    order: np.ndarray  # indices into pool, validation excluded: a set of size n is the first n
    start: Atoms
    source: str  # artifact keys or a file digest: part of every downstream key
    artifacts: tuple[Artifact, ...] = ()

    @property
    def formula(self) -> str:
        return self.start.get_chemical_formula()

    def train_indices(self, size: int) -> np.ndarray:
        if size > len(self.order):
            raise ValueError(f"train size {size}: the target holds only {len(self.order)} training frames")
        return self.order[:size]


def _split_pool(n: int, design: ArmsDesign, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: design.n_validation]), order[design.n_validation :]


def target(scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", target_file=None, root=None) -> Target:
    """``target_runs`` reference-method runs of the design's MD17 molecule, or ``target_file``.

    A file (a real MD17/rMD17 ``.npz``, or anything :func:`gemrepro.data.read` loads) is one
    trajectory in time order: its last ``n_test`` frames are the held-out segment, and its first
    frame starts the stability MD.
    """
    design = design_for(scale)
    if target_file is not None:
        path, source = file_source(target_file, "target_file")
        frames = read(path)
        needed = design.train_sizes[-1] + design.n_validation + design.n_test
        if len(frames) < needed:
            raise ValueError(f"target_file {path.name}: holds {len(frames)} frames, expected at least {needed}")
        pool, test = frames[: -design.n_test], frames[-design.n_test :]
        validation, order = _split_pool(len(pool), design, seed)
        name = str(frames[0].info.get("name", path.stem))
        return Target(name, pool, test, validation, order, frames[0].copy(), source)
    md_recipe = MDRecipe(
        temperature=design.target_temperature,
        n_frames=design.frames_per_run,
        frame_interval=design.target_frame_interval,
    )
    runs = [
        reference_md_frames(
            MD17[design.molecule], md_recipe, reference, seed * 1000 + k, name=design.molecule, root=root
        )
        for k in range(design.target_runs)
    ]
    pool = [frame for run in runs[:-1] for frame in read_frames(run)]
    test = read_frames(runs[-1])
    if not test or len(pool) < design.train_sizes[-1] + design.n_validation:
        raise ValueError(f"target: the reference MD of {design.molecule} ended early (see the reference-md manifests)")
    validation, order = _split_pool(len(pool), design, seed)
    start = cast(Atoms, ase_read(runs[0].file("start.xyz"), format="extxyz"))
    source = hashlib.sha256(",".join(r.key for r in runs).encode()).hexdigest()[:16]
    return Target(design.molecule, pool, test, validation, order, start, source, tuple(runs))


# ----------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class Corpus:
    """The pretraining configurations and the sources they came from."""

    frames: list[Atoms]
    sources: list[str]
    artifacts: list[Artifact]
    n_excluded: int


def _hot_runs(scale: Scale, seed: int, exclude_formula: str) -> list[tuple[str, str, MDRecipe]]:
    """(name, SMILES, recipe) of every hot reference run of the corpus, in order."""
    design = design_for(scale)
    molecules = dataset_molecules(scale.n_molecules, scale.n_md_molecules, seed)[: design.corpus_molecules]
    kept = [m for m in molecules if Atoms(m.formula).get_chemical_formula() != exclude_formula]
    return [
        (
            m.name,
            m.smiles,
            MDRecipe(
                temperature=temperature,
                n_frames=design.corpus_frames,
                frame_interval=design.corpus_frame_interval,
                equilibration_steps=100,
            ),
        )
        for temperature in design.corpus_temperatures
        for m in kept
    ]


def corpus_sources(scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", exclude_formula: str = "") -> list[str]:
    """The artifact keys the corpus is made of (dataset, then hot runs), known before anything runs:
    a cached or shipped pretrained model is found without rebuilding its corpus."""
    dataset = artifact_key(dataset_params(scale, reference, seed, None, None)[0])
    hot = [
        artifact_key(reference_md_params(smiles, r, reference, seed))
        for _, smiles, r in _hot_runs(scale, seed, exclude_formula)
    ]
    return [dataset, *hot]


def corpus(
    scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", exclude_formula: str = "", corpus_file=None, root=None
) -> Corpus:
    """The normal-mode dataset of the scale plus hot reference MD of its molecules, or ``corpus_file``.

    Configurations with ``exclude_formula`` (the target's) are dropped: pretraining never sees
    the target molecule, nor its isomers. The hot runs' molecules with that formula are not run.
    """
    if corpus_file is not None:
        path, source = file_source(corpus_file, "corpus_file")
        frames, sources, artifacts = read(path), [source], []
    else:
        dataset = build_dataset(scale=scale, reference=reference, seed=seed, progress=False, root=root)
        hot = [
            reference_md_frames(smiles, r, reference, seed, name=name, root=root)
            for name, smiles, r in _hot_runs(scale, seed, exclude_formula)
        ]
        frames = read(dataset.file("qm7x.hdf5"))
        for artifact in hot:
            frames += read_frames(artifact)
        artifacts = [dataset, *hot]
        sources = [a.key for a in artifacts]
    kept = [a for a in frames if a.get_chemical_formula() != exclude_formula]
    if not kept:
        raise ValueError(f"corpus: no configuration left after excluding the target formula {exclude_formula!r}")
    return Corpus(kept, sources, artifacts, len(frames) - len(kept))


# ----------------------------------------------------------------------------- training in epochs
def epoch_config(
    scale: Scale, n_train: int, *, batch_size: int, max_epochs: int, decay_epochs: int, seed: int
) -> TrainConfig:
    """The scale's recipe, counted in epochs: validate and checkpoint once an epoch, stop after
    ``patience_epochs`` epochs without progress, the learning rate falling tenfold every ``decay_epochs``."""
    r, design = recipe(scale), design_for(scale)
    steps_per_epoch = math.ceil(n_train / batch_size)
    return TrainConfig(
        lr=r.lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        max_steps=None,
        warmup_steps=min(r.warmup_steps, steps_per_epoch),
        decay_steps=decay_epochs * steps_per_epoch,
        decay_rate=0.1,
        ema_decay=r.ema_decay,
        energy_weight=r.energy_weight,
        force_weight=r.force_weight,
        patience=design.patience_epochs,
        min_relative_delta=r.min_relative_delta,
        eval_every=steps_per_epoch,
        checkpoint_every=steps_per_epoch,
        seed=seed,
        dtype=r.dtype,
    )


class MatchingTrainer(Trainer):
    """A training run that also keeps the EMA weights of its first validation whose force MAE
    reaches ``match_forces_mae`` (``matched_model.pt`` in the workdir; rewritten identically when a
    killed run repeats that validation)."""

    def __init__(self, *args, match_forces_mae: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.match_forces_mae = match_forces_mae

    @property
    def matched_path(self) -> Path:
        return self.workdir / MATCHED_MODEL

    def validate(self, lr: float) -> None:
        super().validate(lr)
        if self.match_forces_mae is None or self.matched_path.is_file():
            return
        last = self.state.history[-1]
        if last["val_forces_mae"] <= self.match_forces_mae:
            opt = self.optimization
            with opt.ema.average_parameters(opt.model):
                save_model(opt.model, self.matched_path, metadata={"step": int(last["step"])})


def fresh_model(scale: Scale, train_set, config: TrainConfig) -> torch.nn.Module:
    """The scale's GemNet-T, seeded by the config, its scale factors fitted on the first training batch."""
    torch.manual_seed(config.seed)
    model = build_model(model_config(scale, "T")).to(config.torch_dtype)
    fit_scale_factors(model, Batch.from_data_list(train_set.to(config.torch_dtype).graphs[: config.batch_size]))
    return model


_KEPT_METRICS = ("energy_mae", "forces_mae", "forces_rmse", "n")


def _train(
    stage: str,
    params: dict,
    model_factory,
    train_set,
    val_set,
    test_set,
    config: TrainConfig,
    root: Path,
    progress: bool,
    device: str,
    match_forces_mae: float | None = None,
    note: dict | None = None,
) -> Artifact:
    """Train (resumably) and store ``model.pt``, ``history.csv``, errors and, when matching, the matched model."""
    config = TrainConfig.from_dict({**config.to_dict(), "device": device})

    def build(folder: Path, workdir: Path) -> dict:
        trainer = MatchingTrainer(
            model_factory(), train_set, val_set, config, workdir, progress=progress, match_forces_mae=match_forces_mae
        )
        result = trainer.run()
        batch = config.eval_batch_size or 32
        metrics = {"validation": {k: result.best_metrics[k] for k in _KEPT_METRICS}}
        if test_set is not None:
            metrics["test"] = {k: evaluate(result.model, test_set, batch)[k] for k in _KEPT_METRICS}
        save_model(result.model, folder / "model.pt", metadata={"train_config": config.to_dict()})
        result.history.to_csv(folder / "history.csv", index=False)
        extra: dict = {}
        if match_forces_mae is not None:
            step = matched_step(result.history, match_forces_mae)
            extra["matched_step"] = step
            if step is not None:
                shutil.copy(trainer.matched_path, folder / MATCHED_MODEL)
                matched = load_model(folder / MATCHED_MODEL, device="cpu")
                metrics["matched_test"] = {k: evaluate(matched, test_set, batch)[k] for k in _KEPT_METRICS}
        return {
            "metrics": metrics,
            "steps": result.steps,
            "epochs": result.epochs_completed,
            "best_step": result.best_metrics["step"],
            "stop_reason": result.stop_reason,
            "training_wall_time_s": round(result.wall_time_s, 2),
            **extra,
            **(note or {}),
        }

    return get_or_create(stage, params, build, root, resumable=True)


def pretrained_params(scale: Scale, sources: list[str], seed: int = 0, reference: str = "gfn2-xtb") -> dict:
    """The pretrained model's cache parameters: the corpus's sources and the design, nothing that
    needs the corpus read (its size follows from its sources)."""
    design = design_for(scale)
    return {
        "scale": scale.name,
        "seed": int(seed),
        "reference": reference,
        "corpus": list(sources),
        "model": model_config(scale, "T").to_dict(),
        "recipe": asdict(recipe(scale)),
        "epochs": {
            "batch_size": design.pretrain_batch_size,
            "max_epochs": design.pretrain_max_epochs,
            "decay_epochs": design.pretrain_decay_epochs,
            "patience_epochs": design.patience_epochs,
        },
        "validation": "5 % of the corpus, at most 1000",
        "stage_version": STAGE_VERSION,
    }


def pretrain(
    data: Corpus, scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", root=None, progress=False, device="cpu"
) -> Artifact:
    """GemNet-T trained on the corpus in epochs to a validation plateau (5 % validation, at most 1,000)."""
    design, root = design_for(scale), Path(root) if root else artifacts_dir()
    params = pretrained_params(scale, data.sources, seed, reference)
    found = load_artifact(PRETRAIN_STAGE, params, root)
    if found is not None:
        return found
    n_val = min(1000, max(1, len(data.frames) // 20))
    config = epoch_config(
        scale,
        len(data.frames) - n_val,
        batch_size=design.pretrain_batch_size,
        max_epochs=design.pretrain_max_epochs,
        decay_epochs=design.pretrain_decay_epochs,
        seed=seed,
    )
    graphs = AtomsDataset.from_atoms(data.frames, energy_key="atomization_energy")
    order = np.random.default_rng(seed).permutation(len(graphs))
    val_set, train_set = graphs.subset(order[:n_val]), graphs.subset(order[n_val:])
    factory = lambda: fresh_model(scale, train_set, config)  # noqa: E731
    note = {"n_train": len(train_set), "n_validation": n_val, "n_excluded": data.n_excluded}
    return _train(PRETRAIN_STAGE, params, factory, train_set, val_set, None, config, root, progress, device, note=note)


def pretrained_model(
    scale: Scale,
    exclude_formula: str,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    corpus_file=None,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> Artifact:
    """The pretrained model: a cached or shipped one is found by its corpus's keys without reading
    the corpus (tens of thousands of frames); otherwise the corpus is built and the model trained."""
    if corpus_file is None:
        sources = corpus_sources(scale, seed, reference, exclude_formula)
        found = load_artifact(PRETRAIN_STAGE, pretrained_params(scale, sources, seed, reference), root)
        if found is not None:
            return found
    data = corpus(scale, seed, reference, exclude_formula, corpus_file, root)
    return pretrain(data, scale, seed, reference, root, progress, device)


def arm_model(
    data: Target,
    scale: Scale,
    arm: str,
    size: int,
    training_seed: int,
    *,
    pretrained: Artifact | None = None,
    match_forces_mae: float | None = None,
    reference: str = "gfn2-xtb",
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> Artifact:
    """One model of an arm: ``size`` target frames, one training seed, from scratch or from ``pretrained``.

    Both arms share the recipe, the validation frames and the test run. The fine-tuned arm keeps
    the pretrained weights and re-fits only the per-element energy references on its training
    frames. ``match_forces_mae`` (fine-tuned arm) keeps the matched model as well.
    """
    design, root = design_for(scale), Path(root) if root else artifacts_dir()
    if arm not in ARMS:
        raise ValueError(f"arm: expected one of {ARMS}, got {arm!r}")
    if (arm == "pretrained") != (pretrained is not None):
        raise ValueError("pretrained: expected the pretrained model for the fine-tuned arm and None for scratch")
    batch_size = recipe(scale).batch_size
    config = epoch_config(
        scale,
        size,
        batch_size=batch_size,
        max_epochs=design.finetune_max_epochs,
        decay_epochs=design.finetune_decay_epochs,
        seed=1000 * training_seed + size,
    )
    params = {
        "scale": scale.name,
        "arm": arm,
        "size": int(size),
        "training_seed": int(training_seed),
        "reference": reference,
        "target": data.source,
        "n_validation": len(data.validation),
        "init": pretrained.key if pretrained is not None else None,
        "match_forces_mae": None if match_forces_mae is None else round(float(match_forces_mae), 8),
        "model": model_config(scale, "T").to_dict(),
        "train": config.to_dict(),
        "stage_version": STAGE_VERSION,
    }
    found = load_artifact(MODEL_STAGE, params, root)
    if found is not None:
        return found
    pool = AtomsDataset.from_atoms(data.pool, energy_key="atomization_energy")
    train_set, val_set = pool.subset(data.train_indices(size)), pool.subset(data.validation)
    test_set = AtomsDataset.from_atoms(data.test, energy_key="atomization_energy")

    def factory() -> torch.nn.Module:
        if pretrained is None:
            return fresh_model(scale, train_set, config)
        model = load_model(pretrained.file("model.pt"), device="cpu").train()
        model.set_element_energies(fit_element_references(train_set))
        return model

    return _train(
        MODEL_STAGE, params, factory, train_set, val_set, test_set, config, root, progress, device, match_forces_mae
    )


# ----------------------------------------------------------------------------- stability MD
def stability_run(
    model: Artifact,
    start: Atoms,
    temperatures: list[float],
    n_seeds: int,
    time_ps: float,
    *,
    file: str = "model.pt",
    seed: int = 0,
    frame_interval: int = 100,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> Artifact:
    """``n_seeds`` trajectories of ``start`` at each temperature with one model, as one batch.

    MDsim's step (0.5 fs) and bond rule, Langevin at 0.01/fs (the batched engine's thermostat; MDsim
    uses Nosé–Hoover). Holds ``trajectory.h5`` and ``systems.csv`` (temperature, failure).
    """
    root = Path(root) if root else artifacts_dir()
    dt_fs = 0.5
    n_steps = int(round(time_ps * 1000.0 / dt_fs))
    per_system = [float(t) for t in temperatures for _ in range(n_seeds)]
    start_digest = hashlib.sha256(
        np.ascontiguousarray(start.positions).tobytes() + start.numbers.tobytes()
    ).hexdigest()[:16]
    params = {
        "model": model.key,
        "file": file,
        "start": start_digest,
        "temperatures": per_system,
        "n_steps": n_steps,
        "dt_fs": dt_fs,
        "friction_per_fs": 0.01,
        "frame_interval": int(frame_interval),
        "seed": int(seed),
        "stage_version": STAGE_VERSION,
    }

    def build(folder: Path, workdir: Path) -> dict:
        potential = potential_from_checkpoint(model.file(file), device=device)
        summary = run_md(
            potential,
            [start] * len(per_system),
            n_steps=n_steps,
            path=workdir / "trajectory.h5",
            temperatures=per_system,
            seeds=int(seed),
            dt_fs=dt_fs,
            friction=0.01,
            frame_interval=frame_interval,
            checkpoint_interval=max(frame_interval, 2000),
            dtype=torch.float64,
            device=device,
            progress=progress,
        )
        shutil.move(str(workdir / "trajectory.h5"), folder / "trajectory.h5")
        rows = [
            {
                "system": s,
                "temperature": per_system[s],
                "failed": f is not None,
                "failure_step": f.step if f else -1,
                "time_to_failure_ps": f.time_ps if f else float("nan"),
                "failure_rule": f.rule if f else "",
            }
            for s, f in enumerate(summary.failures)
        ]
        pd.DataFrame(rows).to_csv(folder / "systems.csv", index=False)
        return {
            "steps": summary.step,
            "n_failed": sum(r["failed"] for r in rows),
            "md_wall_time_s": round(summary.wall_time_s, 2),
        }

    return get_or_create(MD_STAGE, params, build, root, resumable=True)


def run_table(run: Artifact, time_ps: float) -> pd.DataFrame:
    """``systems.csv`` of a stability run plus ``stable_time_ps`` (failure time, or the run length)."""
    table = pd.read_csv(run.file("systems.csv"), keep_default_na=False, na_values=[""])
    table["failure_rule"] = table["failure_rule"].fillna("")
    table["stable_time_ps"] = stable_times(table, time_ps)
    return table


# ----------------------------------------------------------------------------- the study
@dataclass
class ArmsStudy:
    """Everything the chapter shows, with the artifacts behind it."""

    design: ArmsDesign
    target: Target
    pretrained: Artifact
    models: pd.DataFrame  # arm, size, training_seed, errors, epochs, stop reason, matched step, key
    artifacts: dict[tuple[str, int, int], Artifact]  # (arm, size, training seed) -> model
    pilot: pd.DataFrame  # the scratch arm's pilot trajectories
    temperature: float  # chosen by the pilot rule
    pilot_decided: bool  # False: no pilot temperature put the median inside the run (the hottest is used)
    trajectories: pd.DataFrame  # the matched comparison: arm, training_seed, failed, stable_time_ps, ...
    family: pd.DataFrame  # every converged model: arm, size, test force MAE, median stable time
    runs: list[Artifact]
    matched_runs: dict[str, list[Artifact]]  # the matched comparison's runs of each arm
    pilot_runs: list[Artifact]

    @property
    def horizon_ps(self) -> float:
        return self.design.time_ps

    def errors(self) -> pd.DataFrame:
        """The matched comparison's test errors: converged scratch models, matched fine-tuned models."""
        primary = self.models[self.models["size"] == self.design.primary_size]
        rows = primary.assign(
            forces_mae=np.where(primary["arm"] == "pretrained", primary["matched_forces_mae"], primary["forces_mae"])
        )
        return rows[["arm", "training_seed", "forces_mae", "matched", "matched_step", "epochs", "stop_reason"]]


def _model_row(arm: str, size: int, training_seed: int, artifact: Artifact) -> dict:
    m = artifact.manifest
    matched = m.get("metrics", {}).get("matched_test")
    return {
        "arm": arm,
        "size": size,
        "training_seed": training_seed,
        "validation_forces_mae": m["metrics"]["validation"]["forces_mae"],
        "forces_mae": m["metrics"]["test"]["forces_mae"],
        "energy_mae": m["metrics"]["test"]["energy_mae"],
        "epochs": m["epochs"],
        "stop_reason": m["stop_reason"],
        "matched_step": m.get("matched_step"),
        "matched": matched is not None if arm == "pretrained" else True,
        "matched_forces_mae": matched["forces_mae"] if matched else float("nan"),
        "key": artifact.key,
    }


def arms_study(
    scale: Scale,
    *,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    corpus_file=None,
    target_file=None,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> ArmsStudy:
    """The whole experiment at one scale, every piece cached; the order is the design's.

    Scratch arm at every size; the pilot on the scratch arm's primary models; corpus and
    pretraining; the fine-tuned arm, matched at the primary size to the scratch arm's mean
    validation force MAE; stability runs at the pilot's temperature.
    """
    design, root = design_for(scale), Path(root) if root else artifacts_dir()
    unpack_shipped(scale, root, "arms")
    tgt = target(scale, seed, reference, target_file, root)
    seeds = range(design.training_seeds)
    common = dict(reference=reference, root=root, progress=progress, device=device)
    artifacts: dict[tuple[str, int, int], Artifact] = {}
    for size in design.train_sizes:
        for k in seeds:
            artifacts["scratch", size, k] = arm_model(tgt, scale, "scratch", size, k, **common)
    primary = [artifacts["scratch", design.primary_size, k] for k in seeds]

    pilot_runs = [
        stability_run(
            m,
            tgt.start,
            list(design.pilot_temperatures),
            design.pilot_seeds,
            design.time_ps,
            seed=seed,
            frame_interval=design.md_frame_interval,
            root=root,
            progress=progress,
            device=device,
        )
        for m in primary
    ]
    pilot = pd.concat(
        [run_table(r, design.time_ps).assign(training_seed=k) for k, r in zip(seeds, pilot_runs)], ignore_index=True
    )
    chosen = pilot_temperature(pilot, design.time_ps)
    temperature = chosen if chosen is not None else design.pilot_temperatures[-1]

    pretrained = pretrained_model(scale, tgt.formula, seed, reference, corpus_file, root, progress, device)
    target_mae = float(np.mean([m.manifest["metrics"]["validation"]["forces_mae"] for m in primary]))
    for size in design.train_sizes:
        match = target_mae if size == design.primary_size else None
        for k in seeds:
            artifacts["pretrained", size, k] = arm_model(
                tgt, scale, "pretrained", size, k, pretrained=pretrained, match_forces_mae=match, **common
            )
    models = pd.DataFrame([_model_row(a, s, k, m) for (a, s, k), m in artifacts.items()])

    def run(model: Artifact, n: int, file: str = "model.pt") -> Artifact:
        return stability_run(
            model,
            tgt.start,
            [temperature],
            n,
            design.time_ps,
            file=file,
            seed=seed,
            frame_interval=design.md_frame_interval,
            root=root,
            progress=progress,
            device=device,
        )

    runs, matched_rows = [], []
    matched_runs: dict[str, list[Artifact]] = {arm: [] for arm in ARMS}
    for k in seeds:
        scratch_run = run(artifacts["scratch", design.primary_size, k], design.md_seeds)
        runs.append(scratch_run)
        matched_runs["scratch"].append(scratch_run)
        matched_rows.append(run_table(scratch_run, design.time_ps).assign(arm="scratch", training_seed=k))
        tuned = artifacts["pretrained", design.primary_size, k]
        if tuned.manifest.get("matched_step") is not None:
            tuned_run = run(tuned, design.md_seeds, MATCHED_MODEL)
            runs.append(tuned_run)
            matched_runs["pretrained"].append(tuned_run)
            matched_rows.append(run_table(tuned_run, design.time_ps).assign(arm="pretrained", training_seed=k))
    trajectories = pd.concat(matched_rows, ignore_index=True)

    family_rows = []
    for (arm, size, k), model in artifacts.items():
        n = design.md_seeds if (arm == "scratch" and size == design.primary_size) else design.family_md_seeds
        family_run = run(model, n)
        if family_run.key not in {r.key for r in runs}:  # the scratch arm's primary runs serve both
            runs.append(family_run)
        table = run_table(family_run, design.time_ps)
        family_rows.append(
            {
                "arm": arm,
                "train_size": size,
                "training_seed": k,
                "forces_mae": float(models.loc[models["key"] == model.key, "forces_mae"].iloc[0]),
                "median_stable_time_ps": float(table["stable_time_ps"].median()),
                "failed_fraction": float(table["failed"].mean()),
                "n_trajectories": len(table),
            }
        )
    return ArmsStudy(
        design,
        tgt,
        pretrained,
        models,
        artifacts,
        pilot,
        float(temperature),
        chosen is not None,
        trajectories,
        pd.DataFrame(family_rows),
        runs,
        matched_runs,
        pilot_runs,
    )


# ----------------------------------------------------------------------------- what the chapter draws
def histories(study: ArmsStudy) -> pd.DataFrame:
    """Every model's validation history: arm, size, training_seed, epoch, val_forces_mae, stopped, matched."""
    frames = []
    for (arm, size, k), artifact in study.artifacts.items():
        history = pd.read_csv(artifact.file("history.csv"))
        matched = artifact.manifest.get("matched_step")
        frames.append(
            history[["step", "epoch", "val_forces_mae"]].assign(
                arm=arm,
                size=size,
                training_seed=k,
                stopped=history["step"] == history["step"].max(),
                matched=history["step"] == matched if matched is not None else False,
            )
        )
    return pd.concat(frames, ignore_index=True)


def distance_histograms(study: ArmsStudy) -> pd.DataFrame:
    """h(r) (MDsim's 500 bins up to 10 Å) of the reference MD and of each arm's stable frames, pooled
    over its models; ``distance`` is ∫|h − h_reference| dr, 0 for identical and 2 for disjoint histograms."""
    reference_positions = np.stack([a.positions for a in [*study.target.pool, *study.target.test]])
    reference = distance_histogram(reference_positions, MDSIM_BINS, MDSIM_MAX_DISTANCE)
    curves = {"reference MD": reference}
    for arm, runs in study.matched_runs.items():
        positions = [p for p in (stable_positions(r.file("trajectory.h5")) for r in runs) if len(p)]
        if positions:
            curves[arm] = distance_histogram(np.concatenate(positions), MDSIM_BINS, MDSIM_MAX_DISTANCE)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "source": name,
                    "r": h.r,
                    "h": h.h,
                    "n_frames": h.n_frames,
                    "distance": histogram_distance(h, reference),
                }
            )
            for name, h in curves.items()
        ],
        ignore_index=True,
    )


def detectable(study: ArmsStudy, seed: int = 0) -> float:
    """The smallest median stable-time ratio the matched comparison detects with 80 % power (inf: none),
    simulated from the scratch arm's own failures with the design's models and trajectories."""
    return detectable_ratio(
        study.trajectories,
        "scratch",
        study.horizon_ps,
        n_models=study.design.training_seeds,
        n_trajectories=study.design.md_seeds,
        seed=seed,
    )


# ----------------------------------------------------------------------------- computing and shipping it
def _scratch_arm_and_pilot(scale: Scale, seed: int, reference: str, root: Path) -> float:
    """Every scratch model (the primary size first) and the pilot; the mean validation force MAE."""
    design, tgt = design_for(scale), target(scale, seed, reference, None, root)
    sizes = (design.primary_size, *(n for n in design.train_sizes if n != design.primary_size))
    models = {
        (n, k): arm_model(tgt, scale, "scratch", n, k, reference=reference, root=root)
        for n in sizes
        for k in range(design.training_seeds)
    }
    primary = [models[design.primary_size, k] for k in range(design.training_seeds)]
    for model in primary:
        stability_run(model, tgt.start, list(design.pilot_temperatures), design.pilot_seeds, design.time_ps,
                      seed=seed, frame_interval=design.md_frame_interval, root=root)  # fmt: skip
    return float(np.mean([m.manifest["metrics"]["validation"]["forces_mae"] for m in primary]))


def _pretrained(scale: Scale, seed: int, reference: str, root: Path) -> Artifact:
    return pretrained_model(scale, target(scale, seed, reference, None, root).formula, seed, reference, root=root)


def _finetuned(scale: Scale, size: int, k: int, match: float | None, seed: int, reference: str, root: Path) -> str:
    tgt = target(scale, seed, reference, None, root)
    pretrained = _pretrained(scale, seed, reference, root)  # cached by then: found by key, the corpus unread
    model = arm_model(
        tgt, scale, "pretrained", size, k, pretrained=pretrained, match_forces_mae=match, reference=reference, root=root
    )
    return model.key


def _in_one_thread(function, *args):
    """Run a task of :func:`compute` in a worker with one torch thread (bit-reproducible on CPU)."""
    with one_torch_thread():
        return function(*args)


def compute(scale: Scale, *, seed: int = 0, reference: str = "gfn2-xtb", root=None, workers: int = 2) -> ArmsStudy:
    """The whole study of a scale with ``workers`` processes, each single-threaded, then :func:`arms_study`.

    The scratch arm and its pilot run beside the corpus and pretraining; the fine-tuned models
    and the stability runs are then shared out. Each task is a cached, resumable stage, so a
    killed :func:`compute` continues where it stopped and its results are those of one process.
    """
    root = Path(root) if root else artifacts_dir()
    design = design_for(scale)
    # Spawned, not forked: a fork of a process whose OpenMP threads have run can hang.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        scratch = pool.submit(_in_one_thread, _scratch_arm_and_pilot, scale, seed, reference, root)
        pretrained = pool.submit(_in_one_thread, _pretrained, scale, seed, reference, root)
        target_mae, _ = scratch.result(), pretrained.result()
        tuned = [
            pool.submit(
                _in_one_thread, _finetuned, scale, n, k, target_mae if n == design.primary_size else None, seed,
                reference, root,
            )
            for n in design.train_sizes
            for k in range(design.training_seeds)
        ]  # fmt: skip
        for task in tuned:
            task.result()
    # The stability runs follow from the models and the pilot: arms_study runs what is missing.
    with one_torch_thread():
        return arms_study(scale, seed=seed, reference=reference, root=root)


def ship(scale: Scale, root=None, *, seed: int = 0, reference: str = "gfn2-xtb", workers: int = 2) -> tuple[Path, int]:
    """Compute (where missing) the study of a scale and bundle what the chapter reads into
    ``<repo>/models/<scale>-arms.tar.xz``: the target runs, every model, the pretrained model and
    every stability run. The corpus is left out: the pretrained model is found by its sources' keys."""
    checkout = repo_root()
    if checkout is None:
        raise ValueError("ship: no checkout found (models/<scale>-arms.tar.xz lives in the repository)")
    root = Path(root) if root else artifacts_dir()
    study = compute(scale, seed=seed, reference=reference, root=root, workers=workers)
    entries = sorted(
        {f"reference-md/{a.key}" for a in study.target.artifacts}
        | {f"{MODEL_STAGE}/{a.key}" for a in study.artifacts.values()}
        | {f"{PRETRAIN_STAGE}/{study.pretrained.key}"}
        | {f"{MD_STAGE}/{r.key}" for r in [*study.runs, *study.pilot_runs]}
    )
    return pack(entries, checkout / "models" / f"{scale.name}-arms.tar.xz", scale.name, root), len(entries)
