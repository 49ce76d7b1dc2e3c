"""Long hot stability runs of the sparsest and the densest model: time for a hole to open.

The temperature sweep runs one trajectory per molecule and temperature. Stocker et al. saw a
sparse model stay accurate for hundreds of picoseconds before it fell into a hole, and whether it
falls within a run is a matter of chance, so the first paper's thesis is also tested on replicas:
several Langevin seeds per molecule at the hottest temperature. These are stability runs in
the MDsim sense (a failed replica is dropped, not continued): every MD molecule at one hot
temperature, several Langevin seeds each, run on refilled slots (:func:`gemrepro.md.queue.run_queue`)
to the design's length or the first failure.

Stage ``md-long`` (one artifact per model) holds a trajectory file per system, ``campaign.json``
and ``systems.csv`` (system, molecule, replica, temperature, failed, failure_step,
time_to_failure_ps, failure_rule, steps). At ``tiny`` the two runs take about 40 minutes of one
core, more than the book may, so they are shipped with the scale's models
(``models/tiny.tar.xz``) and a test reruns the first picosecond of one and matches it bit for bit.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gemrepro.analysis.stability import StabilityCriteria
from gemrepro.cache.artifacts import Artifact, get_or_create, load_artifact
from gemrepro.cache.bundle import pack, shipped_artifact
from gemrepro.cache.paths import artifacts_dir, repo_root
from gemrepro.config.designs import DEFAULT_DT_FS, LongRunDesign
from gemrepro.config.scales import Scale
from gemrepro.data.build import SHIPPED_PART as LABELS_PART
from gemrepro.data.build import dataset_params, label_molecules
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md.queue import run_queue
from gemrepro.md.runner import DEFAULT_FRICTION_PER_FS, one_torch_thread
from gemrepro.studies.holes import SEEDS_STAGE, SHIPPED_PART, seeds_study
from gemrepro.studies.learning_curve import STAGE as MODEL_STAGE
from gemrepro.studies.learning_curve import learning_curve, learning_curves, model_artifacts, resolve_variant
from gemrepro.studies.sweep import (
    LABEL_STAGE,
    MD_STAGE,
    dft_convergence,
    n_md_molecules,
    start_images,
    start_structures,
    temperature_sweep,
)

__all__ = ["LongRuns", "long_run", "long_runs", "long_runs_table", "ship"]

STAGE = "md-long"
STAGE_VERSION = 1  # bump when what a long run holds or how it is computed changes
SEED_BASE = 11
"""Langevin seeds are :func:`gemrepro.md.runner.system_seeds` of ``SEED_BASE + seed``: a fixed base
unlike the sweep's per-system seeds, so these are new replicas, not the sweep's trajectories again."""


def _params(scale: Scale, model: Artifact, starts: Artifact, design: LongRunDesign, seed: int) -> dict:
    return {
        "scale": scale.name,
        "model": model.key,
        "starts": starts.key,
        "design": asdict(design),
        "seed": int(seed),
        "dt_fs": DEFAULT_DT_FS,
        "friction_per_fs": DEFAULT_FRICTION_PER_FS,
        "criteria": repr(StabilityCriteria()),
        "stage_version": STAGE_VERSION,
    }


def long_run(
    scale: Scale,
    model: Artifact,
    starts: Artifact,
    design: LongRunDesign,
    seed: int = 0,
    root=None,
    progress: bool = False,
    device: str = "cpu",
    shipped: bool = True,
) -> Artifact:
    """The long run of ``model`` on every start structure x ``design.n_seeds``; cached, shipped at ``tiny``.

    ``shipped=False`` computes it even when the scale's bundle holds it (the test that the bundle is
    what this code produces). One torch thread, so the run is the same on every machine's CPU.
    """
    root = Path(root) if root else artifacts_dir()
    params = _params(scale, model, starts, design, seed)
    found = load_artifact(STAGE, params, root)
    if found is None and shipped:
        found = shipped_artifact(scale, STAGE, params, root)
    if found is not None:
        return found
    images = start_images(starts)
    systems = [atoms.copy() for atoms in images for _ in range(design.n_seeds)]

    def build(folder: Path, workdir: Path) -> dict:
        with one_torch_thread():
            potential = potential_from_checkpoint(model.file("model.pt"), device=device)
            summary = run_queue(
                potential,
                systems,
                n_steps=design.n_steps,
                folder=workdir / "runs",
                slots=len(systems),
                temperatures=design.temperature,
                seeds=SEED_BASE + int(seed),
                frame_interval=design.frame_interval,
                checkpoint_interval=design.checkpoint_interval,
                device=device,
                progress=progress,
            )
        rows = []
        for k, (atoms, steps, failure) in enumerate(zip(systems, summary.steps, summary.failures, strict=True)):
            rows.append(
                {
                    "system": k,
                    "molecule": atoms.info["name"],
                    "replica": k % design.n_seeds,
                    "temperature": design.temperature,
                    "failed": failure is not None,
                    "failure_step": -1 if failure is None else failure.step,
                    "time_to_failure_ps": np.nan if failure is None else failure.time_ps,
                    "failure_rule": "" if failure is None else failure.rule,
                    "steps": steps,
                }
            )
        shutil.move(str(workdir / "runs"), folder / "runs")
        pd.DataFrame(rows).to_csv(folder / "systems.csv", index=False)
        return {
            "n_systems": len(rows),
            "n_failed": int(sum(r["failed"] for r in rows)),
            "system_steps": summary.system_steps,
            "md_wall_time_s": round(summary.wall_time_s, 2),
        }

    return get_or_create(STAGE, params, build, root, resumable=True)


def long_runs_table(run: Artifact) -> pd.DataFrame:
    """The ``systems.csv`` of a long run (one row per trajectory)."""
    table = pd.read_csv(run.file("systems.csv"), keep_default_na=False, na_values=["", "nan", "NaN"])
    table["failure_rule"] = table["failure_rule"].fillna("")
    return table


@dataclass
class LongRuns:
    """The long runs of one scale: the sparsest and the densest model, and their trajectories in one table."""

    design: LongRunDesign
    models: dict[int, Artifact]
    runs: dict[int, Artifact]
    trajectories: pd.DataFrame  # one row per (train_size, system)


def long_runs(
    scale: Scale,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    variant: str | None = None,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> LongRuns:
    """The scale's long runs of its sparsest and densest learning-curve models (seed ``seed``)."""
    root = Path(root) if root else artifacts_dir()
    design = scale.long_runs
    if design is None:
        raise ValueError(f"scale {scale.name!r} has no long-run design (Scale.long_runs)")
    curve = learning_curve(
        scale=scale,
        seed=seed,
        reference=reference,
        variant=resolve_variant(scale, variant),
        root=root,
        progress=progress,
        device=device,
    )
    models = dict(zip((int(n) for n in curve["train_size"]), model_artifacts(curve, root=root)))
    chosen = {n: models[n] for n in (min(models), max(models))}
    starts = start_structures(n_md_molecules(scale), seed, root)
    runs = {n: long_run(scale, model, starts, design, seed, root, progress, device) for n, model in chosen.items()}
    trajectories = pd.concat([long_runs_table(run).assign(train_size=n) for n, run in runs.items()], ignore_index=True)
    return LongRuns(design, chosen, runs, trajectories)


def ship(scale: Scale, root=None, progress: bool = True, extra: Sequence[str] = ()) -> tuple[Path, int]:
    """Compute (where missing) what a scale's book ships and bundle it into ``<repo>/models/<scale>.tar.xz``.

    Every learning-curve model of the scale (all variants, all training seeds), the temperature
    sweep's runs, the long runs of its sparsest and densest models, the seeds study's runs (in
    the ``seeds`` part, which keeps each file under 5 MB), the dataset's xTB labels (the ``labels`` part),
    the PBE0 single points of the convergence chapter
    and the ``extra`` ``stage/key`` entries (the CLI adds the stress chapter's audits), under the keys the chapters
    ask for (:func:`~gemrepro.cache.paths.shipped_models`); the chapters look there before computing.
    """
    checkout = repo_root()
    if checkout is None:
        raise ValueError("ship: no checkout found (models/<scale>.tar.xz lives in the repository)")
    root = Path(root) if root else artifacts_dir()
    curve = learning_curves(scale, root=root, progress=progress, members=None)
    swept = temperature_sweep(scale, root=root, progress=progress)
    runs = long_runs(scale, root=root, progress=progress)
    seeds = seeds_study(scale, root=root, progress=progress)  # two chapters wait on these runs otherwise
    # The convergence chapter's PBE0 single points (tens of minutes on two cores); a test recomputes a sample.
    pbe0 = dft_convergence(swept, scale, root=root).attrs["labels"]
    entries = (
        [f"{MODEL_STAGE}/{key}" for key in curve["key"]]
        + [f"{MD_STAGE}/{run.key}" for run in swept.md.values()]
        + [f"{STAGE}/{run.key}" for run in runs.runs.values()]
        + [f"{LABEL_STAGE}/{labels.key}" for labels in pbe0.values()]
        + list(extra)
    )
    output = pack(entries, checkout / "models" / f"{scale.name}.tar.xz", scale.name, root)
    seeds_entries = [f"{SEEDS_STAGE}/{run.key}" for run in seeds.md.values()]
    pack(seeds_entries, checkout / "models" / f"{scale.name}-{SHIPPED_PART}.tar.xz", scale.name, root)
    # The dataset's labels (the slowest minutes of two chapters): their own part keeps each file under 5 MB.
    _, tasks = dataset_params(scale)
    label_entries = [f"labels/{labels.key}" for labels in label_molecules(tasks, progress=progress, root=root)]
    pack(label_entries, checkout / "models" / f"{scale.name}-{LABELS_PART}.tar.xz", scale.name, root)
    return output, len(entries) + len(seeds_entries) + len(label_entries)
