"""The learning-curve stage (Stocker et al., Fig. 1): one GemNet per training-set size, one test set.

Each model is an artifact of stage ``models`` keyed by the dataset artifact, the split (scale,
seed, size), the model configuration and the training recipe. Training runs in a work folder
``<artifacts>/models-work/<key>/`` that outlives a killed process, so a second call resumes
from the last checkpoint; only the finished model becomes an artifact (atomically).

Budgets are counted in optimizer *steps*, never wall time, so a run is a pure function of its
parameters and nbval can compare its numbers: bit for bit within a process on one CPU thread;
across processes float32 CPU reductions may differ in the last bits, which the smallest
training sets amplify to ~0.5 % of their error.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Batch

from gemrepro.cache.artifacts import Artifact, get_or_create, load_artifact
from gemrepro.cache.bundle import shipped_artifact, unpack_shipped
from gemrepro.cache.paths import artifacts_dir
from gemrepro.config.designs import Recipe
from gemrepro.config.scales import SCALES, Scale
from gemrepro.data import read
from gemrepro.data.build import build_dataset
from gemrepro.data.splits import Splits, make_splits
from gemrepro.data.torch_dataset import AtomsDataset
from gemrepro.model import build_model, fit_scale_factors, preset_config, resolve_device, save_model
from gemrepro.train import TrainConfig, evaluate, load_checkpoint, train_model

__all__ = [
    "ConvergenceStatus",
    "convergence_status",
    "SanityCheck",
    "ScaleData",
    "learning_curve",
    "learning_curves",
    "load_scale_data",
    "member_seed",
    "model_params",
    "model_artifacts",
    "model_config",
    "recipe",
    "resolve_variant",
    "sanity_check_real_data",
    "seed_spread",
    "train_config",
    "train_scale_model",
]

STAGE = "models"
STAGE_VERSION = 2  # bump when what a model artifact holds or how it is trained changes


def recipe(scale: Scale) -> Recipe:
    """The training recipe of a scale (``scale.recipe``; a one-line error for a scale without one)."""
    if scale.recipe is None:
        planned = ", ".join(name for name, s in SCALES.items() if s.recipe is not None)
        raise ValueError(f"scale {scale.name!r} has no training recipe: expected a Scale with one, as {planned}")
    return scale.recipe


def resolve_variant(scale: Scale, variant: str | None = None) -> str:
    """``variant`` as "T" or "Q" (case-insensitive); ``None`` means the scale's ``default_variant``."""
    if variant is None:
        return scale.default_variant
    resolved = str(variant).strip().upper()
    if resolved not in ("T", "Q"):
        raise ValueError(f"variant: expected 'T' or 'Q' (or None for the scale's default), got {variant!r}")
    return resolved


def _size_index(scale: Scale, train_size: int) -> int:
    sizes = scale.train_sizes
    if train_size not in sizes:
        raise ValueError(f"train_size {train_size!r}: expected one of the {scale.name} sizes {list(sizes)}")
    return sizes.index(train_size)


def member_seed(seed: int, member: int = 0) -> int:
    """The initialisation and batch-order seed of committee ``member`` (member 0: ``seed`` itself).

    A committee varies only this seed, never the dataset seed, so all members see the same data.
    """
    if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or member < 0:
        raise ValueError(f"member: expected a non-negative integer, got {member!r}")
    if member == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1, np.uint32)[0] >> 1)


def train_config(scale: Scale, train_size: int, seed: int = 0, *, device: str = "cpu", member: int = 0):
    """The ``TrainConfig`` for one model of the learning curve (``member``: see :func:`member_seed`)."""
    r = recipe(scale)
    steps = r.max_steps[_size_index(scale, train_size)]
    return TrainConfig(
        lr=r.lr,
        batch_size=min(r.batch_size, train_size),
        max_steps=steps,
        warmup_steps=r.warmup_steps,
        decay_steps=r.decay_steps,
        decay_rate=r.decay_rate,
        ema_decay=r.ema_decay,
        energy_weight=r.energy_weight,
        force_weight=r.force_weight,
        patience=r.patience,
        min_relative_delta=r.min_relative_delta,
        eval_every=r.eval_every,
        checkpoint_every=r.checkpoint_every,
        seed=member_seed(seed, member),
        device=device,
        dtype=r.dtype,
    )


def model_config(scale: Scale, variant: str | None = "T"):
    """The GemNet configuration of a scale: its preset plus the recipe's overrides (``None``: default variant)."""
    variant = resolve_variant(scale, variant)
    return preset_config(scale.model_preset, variant=variant, **dict(recipe(scale).model_overrides))


@dataclass(frozen=True)
class ScaleData:
    """A scale's labelled dataset in memory with its splits: loaded once, shared by all sizes."""

    artifact: Artifact
    graphs: AtomsDataset
    splits: Splits


def _dataset_artifact(scale: Scale, reference: str, seed: int, root) -> Artifact:
    return build_dataset(scale=scale, reference=reference, seed=seed, progress=False, root=root)


def load_scale_data(
    scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", root=None, *, artifact: Artifact | None = None
) -> ScaleData:
    """The scale's dataset (built if missing) as graphs, with nested train/val splits and one test set."""
    artifact = artifact or _dataset_artifact(scale, reference, seed, root)
    graphs = AtomsDataset.from_atoms(read(artifact.file("qm7x.hdf5")), energy_key="atomization_energy")
    splits = make_splits(len(graphs), scale.train_sizes, scale.test_size, seed)
    return ScaleData(artifact, graphs, splits)


def model_params(
    scale: Scale, train_size: int, seed: int, reference: str, variant: str, dataset_key: str, member: int = 0
) -> dict:
    """Cache parameters of one learning-curve model (what its artifact key hashes; the scale by its name)."""
    config = train_config(scale, train_size, seed, device="cpu", member=member)
    params = {
        "scale": scale.name,
        "seed": seed,
        "reference": reference,
        "dataset": dataset_key,
        "split": {
            "train_size": train_size,
            "train_sizes": scale.train_sizes,
            "test_size": scale.test_size,
            "validation_fraction": 0.25,
            "max_validation": recipe(scale).max_validation,
        },
        "model": model_config(scale, variant).to_dict(),
        "train": config.to_dict(),
        "stage_version": STAGE_VERSION,
    }
    if member != 0:  # only committee members get the key; learning-curve keys stay as they were
        params["member"] = int(member)
    return params


def _from_shipped(scale: Scale, params: dict, root: Path) -> Artifact | None:
    """The model of ``params`` from the scale's committed bundle, if it holds it."""
    return shipped_artifact(scale, STAGE, params, root)


def _validation_subset(indices: np.ndarray, cap: int | None) -> np.ndarray:
    """The first ``cap`` validation structures (the split is already random)."""
    return indices if cap is None else indices[:cap]


def train_scale_model(
    scale: Scale,
    train_size: int,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    variant: str | None = None,
    root=None,
    progress: bool = True,
    device: str = "cpu",
    data: ScaleData | None = None,
    member: int = 0,
    shipped: bool = True,
) -> Artifact:
    """The trained model of one learning-curve point: loaded when cached, trained (or resumed) otherwise.

    With ``shipped`` a model missing from the cache is first looked up in the scale's committed
    bundle (:func:`~gemrepro.cache.paths.shipped_models`), which holds artifacts of this very
    function under the same keys; ``shipped=False`` trains from scratch (the test that the bundle
    is what the code produces).

    The artifact holds ``model.pt`` (``load_model``), ``history.csv`` and, in its
    manifest, ``metrics`` (``validation`` and ``test`` errors, eV and eV/Å), steps and the
    training wall time summed over resumed runs. ``data`` passes an already loaded
    ``ScaleData`` so the four sizes read the dataset once. ``variant`` is "T" or "Q"; ``None``
    means the scale's default. ``member`` > 0 trains another committee member on the same data:
    only its initialisation and batch-order seed differ (:func:`member_seed`); member 0 is the
    learning-curve model itself.
    """
    _size_index(scale, train_size)
    variant = resolve_variant(scale, variant)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    root = Path(root) if root else artifacts_dir()
    device = str(resolve_device(device))
    dataset = data.artifact if data is not None else _dataset_artifact(scale, reference, seed, root)
    # The key does not depend on the device: a GPU-trained model serves a CPU chapter.
    member_seed(int(seed), member)  # validates ``member`` before any work
    params = model_params(scale, train_size, int(seed), reference, variant, dataset.key, int(member))
    found = load_artifact(STAGE, params, root)
    if found is None and shipped:
        found = _from_shipped(scale, params, root)
    if found is not None:
        return found
    data = data or load_scale_data(scale, seed, reference, root, artifact=dataset)
    config = replace(train_config(scale, train_size, int(seed), member=int(member)), device=device)
    train_set = data.graphs.subset(data.splits.train[train_size])
    val_set = data.graphs.subset(_validation_subset(data.splits.validation[train_size], recipe(scale).max_validation))
    test_set = data.graphs.subset(data.splits.test)

    def build(folder: Path, workdir: Path) -> dict:
        torch.manual_seed(config.seed)
        model = build_model(model_config(scale, variant)).to(config.torch_dtype)
        first = train_set.to(config.torch_dtype).graphs[: config.batch_size]
        fit_scale_factors(model, Batch.from_data_list(first))
        result = train_model(model, train_set, val_set, config, workdir, progress=progress)
        test = evaluate(result.model, test_set, config.eval_batch_size or 32)
        wall = float(load_checkpoint(workdir / "checkpoint.pt")["state"]["total_wall_time_s"])
        save_model(
            result.model,
            folder / "model.pt",
            metadata={"train_config": config.to_dict(), "best_metrics": result.best_metrics},
        )
        result.history.to_csv(folder / "history.csv", index=False)
        keep = ("energy_mae", "forces_mae", "forces_rmse", "n")
        return {
            "metrics": {
                "validation": {k: result.best_metrics[k] for k in keep},
                "test": {k: test[k] for k in keep},
            },
            "train_size": train_size,
            "validation_size": len(val_set),
            "steps": result.steps,
            "best_step": result.best_metrics["step"],
            "stop_reason": result.stop_reason,
            "training_wall_time_s": round(wall, 2),
            "resumed_from_step": result.resumed_from_step,
            "device": device,
        }

    return get_or_create(STAGE, params, build, root, resumable=True)


def _curve_row(artifact: Artifact, size: int, variant: str, member: int) -> dict:
    """One row of a learning curve from a model artifact's manifest (errors in eV and eV/Å)."""
    m = artifact.manifest
    return {
        "train_size": size,
        "member": member,
        "energy_mae": m["metrics"]["test"]["energy_mae"],
        "forces_mae": m["metrics"]["test"]["forces_mae"],
        "val_energy_mae": m["metrics"]["validation"]["energy_mae"],
        "val_forces_mae": m["metrics"]["validation"]["forces_mae"],
        "test_size": m["metrics"]["test"]["n"],
        "steps": m["steps"],
        "best_step": m["best_step"],
        "stop_reason": m["stop_reason"],
        "training_wall_time_s": m["training_wall_time_s"],
        "key": artifact.key,
        "variant": variant,
    }


def learning_curve(
    scale: Scale,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    variant: str | None = None,
    root=None,
    progress: bool = True,
    device: str = "cpu",
    members: int | None = 1,
) -> pd.DataFrame:
    """One row per (training size, training seed): test-set energy and force MAE (eV, eV/Å), steps, key.

    Every model is evaluated on the same test set, so the rows differ only in training data and,
    across ``member`` (0 .. ``members`` - 1; ``None``: the scale's ``n_training_seeds``), in the
    initialisation and batch order (:func:`member_seed`). Member 0 is the model the later chapters
    run MD with. The dataset is read once, and only when a model is missing from the cache.
    ``variant`` ("T" or "Q"; ``None``: the scale's default) is repeated in a ``variant`` column.
    """
    variant = resolve_variant(scale, variant)
    n_members = scale.n_training_seeds if members is None else members
    if isinstance(n_members, bool) or not isinstance(n_members, (int, np.integer)) or n_members < 1:
        raise ValueError(f"members: expected a positive number of training seeds or None, got {members!r}")
    root = Path(root) if root else artifacts_dir()
    dataset = _dataset_artifact(scale, reference, seed, root)
    unpack_shipped(scale, root)
    data: ScaleData | None = None
    rows = []
    for member in range(int(n_members)):
        for size in scale.train_sizes:
            params = model_params(scale, size, seed, reference, variant, dataset.key, member)
            if load_artifact(STAGE, params, root) is None and data is None:
                data = load_scale_data(scale, seed, reference, root, artifact=dataset)
            artifact = train_scale_model(
                scale, size, seed, reference, variant, root, progress, device, data, member=member
            )
            rows.append(_curve_row(artifact, size, variant, member))
    table = pd.DataFrame(rows)
    table.attrs["dataset"] = dataset
    return table


@dataclass(frozen=True)
class ConvergenceStatus:
    """How the models of a learning curve stopped: on a plateau (converged) or on a limit (not)."""

    n_models: int
    n_converged: int
    capped: tuple[tuple[int, int, int], ...]  # (train size, seed, steps) of every model that hit a limit

    @property
    def all_converged(self) -> bool:
        return self.n_converged == self.n_models

    @property
    def sentence(self) -> str:
        """What the chapter prints: how many models converged, and which did not."""
        head = (
            f"{self.n_converged} of {self.n_models} models stopped because their validation loss "
            "stopped improving (early stopping)"
        )
        if self.all_converged:
            return head + "; none hit the step cap."
        hit = ", ".join(f"{n:,} configurations seed {k} ({steps:,} steps)" for n, k, steps in self.capped)
        return f"{head}; NOT CONVERGED, stopped by the step cap: {hit}."


def convergence_status(curve: pd.DataFrame) -> ConvergenceStatus:
    """Which models of ``curve`` (rows of :func:`learning_curve`) converged, i.e. stopped early."""
    converged = curve["stop_reason"] == "early_stopping"
    capped = tuple((int(r.train_size), int(r.member), int(r.steps)) for r in curve[~converged].itertuples())
    return ConvergenceStatus(len(curve), int(converged.sum()), capped)


def seed_spread(curve: pd.DataFrame, columns: tuple[str, ...] = ("energy_mae", "forces_mae")) -> pd.DataFrame:
    """Per (variant, training size): the mean, minimum and maximum of ``columns`` over training seeds, and n."""
    keys = [k for k in ("variant", "train_size") if k in curve]
    grouped = curve.groupby(keys, sort=True)
    out = grouped.size().rename("n_seeds").to_frame()
    for column in columns:
        out[f"{column}_mean"] = grouped[column].mean()
        out[f"{column}_min"] = grouped[column].min()
        out[f"{column}_max"] = grouped[column].max()
    return out.reset_index()


def learning_curves(
    scale: Scale,
    variants: tuple[str, ...] | None = None,
    *,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    root=None,
    progress: bool = True,
    device: str = "cpu",
    members: int | None = 1,
) -> pd.DataFrame:
    """:func:`learning_curve` of each variant (default: the scale's ``learning_curve_variants``), stacked.

    Both variants see the same dataset, splits and test set, so their rows differ only in the model.
    """
    chosen = scale.learning_curve_variants if variants is None else variants
    if isinstance(chosen, str) or not chosen:
        raise ValueError(f"variants: expected a non-empty sequence of 'T'/'Q', got {variants!r}")
    resolved = list(dict.fromkeys(resolve_variant(scale, v) for v in chosen))
    tables = [learning_curve(scale, seed, reference, v, root, progress, device, members=members) for v in resolved]
    table = pd.concat(tables, ignore_index=True)
    table.attrs["dataset"] = tables[0].attrs["dataset"]
    return table


def model_artifacts(table: pd.DataFrame, root=None) -> list[Artifact]:
    """The model artifacts behind the rows of ``learning_curve`` (for provenance lines)."""
    base = (Path(root) if root else artifacts_dir()) / STAGE
    return [Artifact(base / key, json.loads((base / key / "manifest.json").read_text())) for key in table["key"]]


# ----------------------------------------------------------------------------- real data
@dataclass(frozen=True)
class SanityCheck:
    """A short fit on real frames: test errors next to trivial baselines."""

    artifact: Artifact
    table: pd.DataFrame


def sanity_check_real_data(
    path: str | Path,
    *,
    energy_unit: str = "kcal/mol",
    n_train: int = 70,
    n_validation: int = 10,
    n_test: int = 20,
    steps: int = 100,
    seed: int = 0,
    scale: Scale,
    root=None,
    progress: bool = False,
) -> SanityCheck:
    """Fit the scale's GemNet on a real file for a fixed number of steps; compare with baselines.

    The baselines are the mean training energy (energy) and zero forces (forces): a model
    that has learned anything must beat both on the held-out frames.
    """
    path = Path(path)
    frames = read(path, energy_unit=energy_unit)
    needed = n_train + n_validation + n_test
    if min(n_train, n_validation, n_test) < 1 or needed > len(frames):
        raise ValueError(
            f"{path.name}: holds {len(frames)} frames; expected positive n_train/n_validation/n_test "
            f"summing to at most that, got {n_train}/{n_validation}/{n_test}"
        )
    r = recipe(scale)
    config = TrainConfig(
        lr=r.lr,
        batch_size=min(r.batch_size, n_train),
        max_steps=steps,
        warmup_steps=min(r.warmup_steps, steps),
        decay_steps=steps,
        decay_rate=0.1,
        energy_weight=r.energy_weight,
        force_weight=r.force_weight,
        patience=r.patience,
        eval_every=max(1, steps // 5),
        checkpoint_every=max(1, steps // 5),
        seed=seed,
        dtype=r.dtype,
    )
    params = {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        "energy_unit": energy_unit,
        "split": [n_train, n_validation, n_test],
        "seed": seed,
        "scale": scale.name,
        "model": model_config(scale).to_dict(),
        "train": config.to_dict(),
        "stage_version": STAGE_VERSION,
    }

    def build(folder: Path) -> dict:
        graphs = AtomsDataset.from_atoms(frames, energy_key="atomization_energy")
        order = np.random.default_rng(seed).permutation(len(graphs))
        train = graphs.subset(order[:n_train])
        val = graphs.subset(order[n_train : n_train + n_validation])
        test = graphs.subset(order[n_train + n_validation : needed])
        torch.manual_seed(seed)
        model = build_model(model_config(scale)).to(config.torch_dtype)
        fit_scale_factors(model, Batch.from_data_list(train.to(config.torch_dtype).graphs[: config.batch_size]))
        result = train_model(model, train, val, config, folder / "work", progress=progress)
        metrics = evaluate(result.model, test)
        mean_energy = float(np.mean([float(g.energy) for g in train.graphs]))
        baseline_energy = float(np.mean([abs(float(g.energy) - mean_energy) for g in test.graphs]))
        baseline_forces = float(torch.cat([g.forces.reshape(-1) for g in test.graphs]).abs().mean())
        save_model(result.model, folder / "model.pt", metadata={"train_config": config.to_dict()})
        shutil.rmtree(folder / "work")
        return {
            "molecule": frames[0].get_chemical_formula(),
            "errors": {
                "model": {"energy_mae": metrics["energy_mae"], "forces_mae": metrics["forces_mae"]},
                "baseline": {"energy_mae": baseline_energy, "forces_mae": baseline_forces},
            },
            "steps": result.steps,
        }

    artifact = get_or_create("sanity-fit", params, build, root)
    errors = artifact.manifest["errors"]
    table = pd.DataFrame(
        {
            "energy MAE (eV)": [errors["model"]["energy_mae"], errors["baseline"]["energy_mae"]],
            "force MAE (eV/Å)": [errors["model"]["forces_mae"], errors["baseline"]["forces_mae"]],
        },
        index=[f"GemNet-T ({artifact.manifest['steps']} steps)", "baseline (mean energy, zero forces)"],
    )
    return SanityCheck(artifact, table)
