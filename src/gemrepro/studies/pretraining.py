"""Pretraining and MD stability (Maheshwari et al., arXiv:2506.14850): same force error, longer stable MD?

Cached stages, each a pure function of its inputs:

``reference-md`` (:mod:`gemrepro.data.reference_md`)
    the fine-tuning target in MD17 style — frames of one MD17 molecule from Langevin MD at 500 K
    on the reference method — and the high-temperature samples of the pretraining corpus.
``pretrained``
    GemNet-T trained on the corpus: the scale's QM7-X-style dataset plus the hot samples, or any
    file :func:`gemrepro.data.read` loads (OC20 as extended XYZ, SPICE, ...). Configurations with
    the target molecule's formula are left out, so pretraining never sees the target.
``md17-models``
    two models with the same architecture and training recipe on the same target frames: one from
    scratch, one starting from the pretrained weights; test errors on the same held-out frames.
``stability-md``
    MDsim's protocol (500 K, 0.5 fs, the 0.5 Å bond rule) with many seeds of one model in one
    batched run; the trajectory and a table of each seed's failure.

Deviation from MDsim, stated in the chapter: the thermostat is Langevin (the batched engine's),
not Nosé–Hoover.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import torch
from ase import Atoms
from ase.io import read as ase_read

from gemrepro.analysis.rdf import MDSIM_BINS, MDSIM_MAX_DISTANCE, distance_histogram, histogram_distance
from gemrepro.analysis.survival import stable_times
from gemrepro.cache.artifacts import Artifact, get_or_create, load_artifact
from gemrepro.cache.paths import artifacts_dir
from gemrepro.catalog import MD17, MD_MOLECULES
from gemrepro.catalog.molecules import molecule_from_smiles
from gemrepro.config.designs import Plan, StabilityProtocol
from gemrepro.config.scales import SCALES, Scale
from gemrepro.data import read
from gemrepro.data.build import build_dataset
from gemrepro.data.reference_md import MDRecipe, read_frames, reference_md_frames
from gemrepro.data.torch_dataset import AtomsDataset, fit_element_references
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md import run_md
from gemrepro.md.trajectory import stable_positions as trajectory_stable_positions
from gemrepro.model import load_model, save_model
from gemrepro.studies.learning_curve import learning_curve, model_artifacts, model_config, recipe
from gemrepro.studies.pretraining_arms import file_source, fresh_model
from gemrepro.train import TrainConfig, evaluate, train_model

__all__ = [
    "MODELS",
    "Corpus",
    "PretrainingStudy",
    "Target",
    "distance_histograms",
    "finetuning_target",
    "hot_samples",
    "plan_for",
    "pretrain_model",
    "pretraining_corpus",
    "pretraining_study",
    "stability_run",
    "stability_table",
    "stable_positions",
    "train_target_model",
]

PRETRAIN_STAGE, MODEL_STAGE, MD_STAGE = "pretrained", "md17-models", "stability-md"
STAGE_VERSION = 3  # bump when what these artifacts hold or how they are computed changes
MODELS = ("scratch", "pretrained")


def plan_for(scale: Scale) -> Plan:
    """The pretraining plan of a scale (``scale.pretraining``; a one-line error for a scale without one)."""
    if scale.pretraining is None:
        planned = ", ".join(name for name, s in SCALES.items() if s.pretraining is not None)
        raise ValueError(f"scale {scale.name!r} has no pretraining plan: expected a Scale with one, as {planned}")
    return scale.pretraining


# ----------------------------------------------------------------------------- the target
@dataclass(frozen=True)
class Target:
    """The fine-tuning molecule: labelled frames, their split, the MD start and where they came from."""

    name: str
    frames: list[Atoms]
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    start: Atoms
    source: str  # artifact key or file digest: part of every downstream key
    artifact: Artifact | None = None

    @property
    def formula(self) -> str:
        return self.start.get_chemical_formula()


def _split(n: int, plan: Plan, seed: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if plan.n_target_frames > n:
        raise ValueError(
            f"{name}: holds {n} frames, expected at least {plan.n_target_frames} "
            f"({plan.n_train} train + {plan.n_validation} validation + {plan.n_test} test)"
        )
    order = np.random.default_rng(seed).permutation(n)
    a, b = plan.n_train, plan.n_train + plan.n_validation
    return order[:a], order[a:b], order[b : plan.n_target_frames]


def finetuning_target(scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", target_file=None, root=None) -> Target:
    """The MD17-style frames to fine-tune on: reference-method MD of the plan's molecule (cached), or
    ``target_file`` (a real MD17/rMD17 ``.npz`` or any file :func:`gemrepro.data.read` loads).

    A real file's frames are split the same way; its first frame starts the stability MD.
    """
    plan = plan_for(scale)
    if target_file is not None:
        path, source = file_source(target_file, "target_file")
        frames = read(path)
        name = str(frames[0].info.get("name", path.stem)) if frames else path.stem
        train, validation, test = _split(len(frames), plan, seed, f"target_file {path.name}")
        return Target(name, frames, train, validation, test, frames[0].copy(), source)
    recipe = MDRecipe(
        temperature=plan.target_temperature, n_frames=plan.n_target_frames, frame_interval=plan.target_frame_interval
    )
    artifact = reference_md_frames(MD17[plan.molecule], recipe, reference, seed, name=plan.molecule, root=root)
    frames = read_frames(artifact)
    train, validation, test = _split(len(frames), plan, seed, f"reference MD of {plan.molecule}")
    start = cast(Atoms, ase_read(artifact.file("start.xyz"), format="extxyz"))  # no index: the last image
    return Target(plan.molecule, frames, train, validation, test, start, artifact.key, artifact)


# ----------------------------------------------------------------------------- the corpus
def hot_samples(
    scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", exclude_formula: str = "", root=None
) -> list[Artifact]:
    """High-temperature reference-MD frames of the first molecules of the MD list (one artifact each).

    Molecules with ``exclude_formula`` (the fine-tuning target's) are skipped.
    """
    plan = plan_for(scale)
    recipe = MDRecipe(
        temperature=plan.hot_temperature, n_frames=plan.hot_frames, frame_interval=5, equilibration_steps=100
    )
    chosen = [
        (name, smiles)
        for name, smiles in MD_MOLECULES.items()
        if Atoms(molecule_from_smiles(smiles).formula).get_chemical_formula() != exclude_formula
    ]
    return [
        reference_md_frames(smiles, recipe, reference, seed, name=name, root=root)
        for name, smiles in chosen[: plan.hot_molecules]
    ]


@dataclass(frozen=True)
class Corpus:
    """The pretraining configurations and the sources they came from (artifact keys or file digests)."""

    frames: list[Atoms]
    sources: list[str]
    artifacts: list[Artifact]
    n_excluded: int


def pretraining_corpus(
    scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", corpus_file=None, exclude_formula: str = "", root=None
) -> Corpus:
    """The scale's QM7-X-style dataset plus hot samples of many molecules, or ``corpus_file``.

    Configurations whose formula is ``exclude_formula`` are dropped (the target must stay unseen).
    """
    if corpus_file is not None:
        path, source = file_source(corpus_file, "corpus_file")
        frames, sources, artifacts = read(path), [source], []
    else:
        dataset = build_dataset(scale=scale, reference=reference, seed=seed, progress=False, root=root)
        hot = hot_samples(scale, seed, reference, exclude_formula, root)
        frames = read(dataset.file("qm7x.hdf5"))
        for artifact in hot:
            frames += read_frames(artifact)
        artifacts = [dataset, *hot]
        sources = [a.key for a in artifacts]
    kept = [a for a in frames if a.get_chemical_formula() != exclude_formula]
    if not kept:
        raise ValueError(f"corpus: no configuration left after excluding the target formula {exclude_formula!r}")
    return Corpus(kept, sources, artifacts, len(frames) - len(kept))


# ----------------------------------------------------------------------------- training
def _train_config(scale: Scale, steps: int, seed: int):
    """The learning-curve recipe of the scale with ``steps`` updates: both target models share it."""
    r = recipe(scale)
    return TrainConfig(
        lr=r.lr,
        batch_size=r.batch_size,
        max_steps=steps,
        warmup_steps=r.warmup_steps,
        decay_steps=steps,
        decay_rate=r.decay_rate,
        ema_decay=r.ema_decay,
        energy_weight=r.energy_weight,
        force_weight=r.force_weight,
        patience=r.patience,
        eval_every=r.eval_every,
        checkpoint_every=r.checkpoint_every,
        seed=seed,
        dtype=r.dtype,
    )


def _model_config(scale: Scale):
    return model_config(scale, "T")  # the second paper's GemNet-T at every scale


def _train(
    stage: str,
    params: dict,
    scale: Scale,
    model_factory,
    train_set,
    val_set,
    test_set,
    config,
    root: Path,
    progress: bool,
    device: str,
) -> Artifact:
    """Train (resumably, in a work folder) and store ``model.pt``, ``history.csv`` and the errors."""
    config = replace(config, device=device)

    def build(folder: Path, workdir: Path) -> dict:
        result = train_model(model_factory(), train_set, val_set, config, workdir, progress=progress)
        keep = ("energy_mae", "forces_mae", "forces_rmse", "n")
        metrics = {"validation": {k: result.best_metrics[k] for k in keep}}
        if test_set is not None:
            test = evaluate(result.model, test_set, config.eval_batch_size or 32)
            metrics["test"] = {k: test[k] for k in keep}
        save_model(result.model, folder / "model.pt", metadata={"train_config": config.to_dict()})
        result.history.to_csv(folder / "history.csv", index=False)
        return {
            "metrics": metrics,
            "steps": result.steps,
            "best_step": result.best_metrics["step"],
            "stop_reason": result.stop_reason,
            "training_wall_time_s": round(result.wall_time_s, 2),
        }

    return get_or_create(stage, params, build, root, resumable=True)


def pretrain_model(
    corpus: Corpus,
    scale: Scale,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> Artifact:
    """GemNet-T trained on the corpus (a random 4:1 train/validation split; validation capped as in the
    learning curves). Stands in for the OC20-pretrained GemNet-T of the paper."""
    plan, root = plan_for(scale), Path(root) if root else artifacts_dir()
    config = _train_config(scale, plan.pretrain_steps, seed)
    n_val = max(1, len(corpus.frames) // 5)
    max_validation = recipe(scale).max_validation
    if max_validation is not None:
        n_val = min(n_val, max_validation)
    params = {
        "scale": scale.name,
        "seed": int(seed),
        "reference": reference,
        "corpus": corpus.sources,
        "n_excluded": corpus.n_excluded,
        "n_validation": n_val,
        "model": _model_config(scale).to_dict(),
        "train": config.to_dict(),
        "stage_version": STAGE_VERSION,
    }
    found = load_artifact(PRETRAIN_STAGE, params, root)
    if found is not None:
        return found
    graphs = AtomsDataset.from_atoms(corpus.frames, energy_key="atomization_energy")
    order = np.random.default_rng(seed).permutation(len(graphs))
    val_set, train_set = graphs.subset(order[:n_val]), graphs.subset(order[n_val:])
    return _train(
        PRETRAIN_STAGE,
        params,
        scale,
        lambda: fresh_model(scale, train_set, config),
        train_set,
        val_set,
        None,
        config,
        root,
        progress,
        device,
    )


def train_target_model(
    target: Target,
    scale: Scale,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    init: Artifact | None = None,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> Artifact:
    """A model of the target molecule: from scratch (``init=None``) or fine-tuned from ``init``.

    Both use the same recipe, steps and split; the fine-tuned one keeps the pretrained weights and
    re-fits only the per-element energy references on the target's training frames (an MD17 file's
    total energies differ from the corpus's atomization energies by a constant per element).
    """
    plan, root = plan_for(scale), Path(root) if root else artifacts_dir()
    config = _train_config(scale, plan.finetune_steps, seed)
    params = {
        "scale": scale.name,
        "seed": int(seed),
        "reference": reference,
        "target": target.source,
        "split": [len(target.train), len(target.validation), len(target.test)],
        "init": init.key if init is not None else None,
        "model": _model_config(scale).to_dict(),
        "train": config.to_dict(),
        "stage_version": STAGE_VERSION,
    }
    found = load_artifact(MODEL_STAGE, params, root)
    if found is not None:
        return found
    graphs = AtomsDataset.from_atoms(target.frames, energy_key="atomization_energy")
    train_set, val_set, test_set = (graphs.subset(i) for i in (target.train, target.validation, target.test))

    def factory():
        if init is None:
            return fresh_model(scale, train_set, config)
        model = load_model(init.file("model.pt"), device="cpu").train()
        model.set_element_energies(fit_element_references(train_set))
        return model

    return _train(MODEL_STAGE, params, scale, factory, train_set, val_set, test_set, config, root, progress, device)


# ----------------------------------------------------------------------------- stability MD
def stability_run(
    model: Artifact,
    target: Target,
    protocol: StabilityProtocol,
    seed: int = 0,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> Artifact:
    """``protocol.n_seeds`` trajectories of the target's start structure with one model, as one batch.

    Holds ``trajectory.h5`` and ``systems.csv`` (system, failed, failure step/time/rule). Each seed
    draws its own velocities and noise, so a trajectory does not depend on the others.
    """
    root = Path(root) if root else artifacts_dir()
    start_digest = hashlib.sha256(
        np.ascontiguousarray(target.start.positions).tobytes() + target.start.numbers.tobytes()
    ).hexdigest()[:16]
    params = {
        "model": model.key,
        "start": start_digest,
        "target": target.source,
        "protocol": asdict(protocol),
        "seed": int(seed),
        "stage_version": STAGE_VERSION,
    }

    def build(folder: Path, workdir: Path) -> dict:
        potential = potential_from_checkpoint(model.file("model.pt"), device=device)
        summary = run_md(
            potential,
            [target.start] * protocol.n_seeds,
            n_steps=protocol.n_steps,
            path=workdir / "trajectory.h5",
            temperatures=protocol.temperature,
            seeds=int(seed),
            dt_fs=protocol.dt_fs,
            friction=protocol.friction_per_fs,
            frame_interval=protocol.frame_interval,
            checkpoint_interval=max(protocol.frame_interval, 1000),
            dtype=torch.float64,
            device=device,
            progress=progress,
        )
        shutil.move(str(workdir / "trajectory.h5"), folder / "trajectory.h5")
        rows = [
            {
                "system": s,
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
            "n_frames": summary.n_frames,
            "n_failed": sum(r["failed"] for r in rows),
            "md_wall_time_s": round(summary.wall_time_s, 2),
        }

    return get_or_create(MD_STAGE, params, build, root, resumable=True)


def stability_table(run: Artifact, horizon_ps: float) -> pd.DataFrame:
    """``systems.csv`` of a stability run plus ``stable_time_ps`` (failure time, or the run length)."""
    table = pd.read_csv(run.file("systems.csv"), keep_default_na=False, na_values=[""])
    table["failure_rule"] = table["failure_rule"].fillna("")
    table["stable_time_ps"] = stable_times(table, horizon_ps)
    return table


def stable_positions(run: Artifact) -> np.ndarray:
    """Positions (frames, atoms, 3) of every stored frame in which its trajectory was still stable
    (before its failure, also in a run that continued failed trajectories)."""
    return trajectory_stable_positions(run.file("trajectory.h5"))


# ----------------------------------------------------------------------------- the study
@dataclass
class PretrainingStudy:
    """Everything the chapter shows, with the artifacts behind it."""

    plan: Plan
    target: Target
    corpus_sources: list[str]
    corpus_size: int
    corpus_artifacts: list[Artifact]
    pretrained: Artifact
    models: dict[str, Artifact]  # "scratch", "pretrained" (fine-tuned)
    runs: dict[str, Artifact]  # the stability runs of every model, learning-curve ones included
    errors: pd.DataFrame  # model, energy_mae, forces_mae on the target's test frames
    trajectories: pd.DataFrame  # model, system, failed, time_to_failure_ps, stable_time_ps, ...
    models_overview: pd.DataFrame  # every model: kind, test force MAE, median stable time

    @property
    def horizon_ps(self) -> float:
        return self.plan.stability.time_ps


def _test_errors(artifact: Artifact) -> dict:
    return artifact.manifest["metrics"]["test"]


def pretraining_study(
    scale: Scale,
    *,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    corpus_file=None,
    target_file=None,
    learning_curve_models: bool = True,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> PretrainingStudy:
    """The whole experiment of the second paper at one scale; every piece cached.

    ``learning_curve_models`` adds the learning-curve models of the scale (their own QM7-X-style
    test force MAE, their stable time on the same protocol) for the force-MAE-vs-stability scatter.
    """
    plan, root = plan_for(scale), Path(root) if root else artifacts_dir()
    target = finetuning_target(scale, seed, reference, target_file, root)
    corpus = pretraining_corpus(scale, seed, reference, corpus_file, target.formula, root)
    pretrained = pretrain_model(corpus, scale, seed, reference, root, progress, device)
    models = {
        "scratch": train_target_model(target, scale, seed, reference, None, root, progress, device),
        "pretrained": train_target_model(target, scale, seed, reference, pretrained, root, progress, device),
    }
    runs = {name: stability_run(m, target, plan.stability, seed, root, progress, device) for name, m in models.items()}
    errors = pd.DataFrame([{"model": name, **_test_errors(m)} for name, m in models.items()])

    overview = [
        {
            "model": name,
            "kind": f"{target.name} ({'fine-tuned' if name == 'pretrained' else 'from scratch'})",
            "forces_mae": _test_errors(m)["forces_mae"],
            "test_set": f"{target.name} MD frames",
        }
        for name, m in models.items()
    ]
    if learning_curve_models:
        curve = learning_curve(scale=scale, seed=seed, reference=reference, root=root, progress=progress, device=device)
        for (_, row), artifact in zip(curve.iterrows(), model_artifacts(curve, root=root)):
            name = f"QM7-X-style {int(row['train_size']):,}"
            runs[name] = stability_run(artifact, target, plan.stability, seed, root, progress, device)
            overview.append(
                {
                    "model": name,
                    "kind": "learning curve",
                    "forces_mae": float(row["forces_mae"]),
                    "test_set": "QM7-X-style test set",
                }
            )
    trajectories = pd.concat(
        [stability_table(run, plan.stability.time_ps).assign(model=name) for name, run in runs.items()],
        ignore_index=True,
    )
    medians = trajectories.groupby("model")["stable_time_ps"].median()
    fractions = trajectories.groupby("model")["failed"].mean()
    overview = pd.DataFrame(overview)
    overview["median_stable_time_ps"] = overview["model"].map(medians)
    overview["failed_fraction"] = overview["model"].map(fractions)
    return PretrainingStudy(
        plan,
        target,
        corpus.sources,
        len(corpus.frames),
        corpus.artifacts,
        pretrained,
        models,
        runs,
        errors,
        trajectories,
        overview,
    )


def distance_histograms(
    study: PretrainingStudy,
    models: tuple[str, ...] = MODELS,
    n_bins: int | None = None,
    max_distance: float | None = None,
) -> pd.DataFrame:
    """h(r) of the reference MD and of each model's stable frames (MDsim: 500 bins up to 10 Å).

    Long form: source, r (Å), h (1/Å), plus ``distance`` — ∫|h − h_reference| dr — per source.
    """
    n_bins = n_bins or MDSIM_BINS
    max_distance = max_distance or MDSIM_MAX_DISTANCE
    reference = distance_histogram(np.stack([a.positions for a in study.target.frames]), n_bins, max_distance)
    curves = {"reference MD": reference}
    for name in models:
        positions = stable_positions(study.runs[name])
        if len(positions):
            curves[name] = distance_histogram(positions, n_bins, max_distance)
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
