"""A scale's whole computation as a graph of cached tasks, run on Dask.

Every labelled molecule, the dataset, every training run, every MD run and every relabelling
batch of a scale is a :class:`Task` named by its inputs and identified by the artifact it
produces — the same key :mod:`gemrepro.studies` computes when a chapter asks for it, so work
done by a campaign is what the chapters load, and the reverse. A task whose artifact exists is
skipped. Artifacts are written atomically, so a campaign killed mid-way and started again
finishes the remaining tasks without redoing or losing finished ones (an interrupted training or
MD run even resumes from its checkpoint in its work folder).

Dependencies (labels → dataset → models → MD → relabelling) are edges of the Dask task graph:
each pending task is submitted with the futures of its pending dependencies as arguments, so the
scheduler starts it only when they have finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.std import tqdm

from gemrepro.cache.artifacts import Artifact, artifact_key, load_artifact
from gemrepro.cache.paths import artifacts_dir
from gemrepro.catalog import MD_MOLECULES_COVER_ALL_ELEMENTS
from gemrepro.config.scales import Scale
from gemrepro.data.build import build_dataset, dataset_params, label_molecules
from gemrepro.reference import get_method
from gemrepro.studies.learning_curve import STAGE as MODEL_STAGE
from gemrepro.studies.learning_curve import model_params, train_scale_model
from gemrepro.studies.sweep import (
    LABEL_STAGE,
    MD_STAGE,
    START_STAGE,
    label_params,
    md_params,
    protocol_for,
    relabel,
    run_sweep_md,
    sampled_frames,
    start_params,
    start_structures,
)

__all__ = [
    "Campaign",
    "CampaignRun",
    "Task",
    "dataset_params",
    "describe",
    "md_params",
    "plan_campaign",
    "run_campaign",
    "start_params",
    "summarize",
]


@dataclass(frozen=True)
class Task:
    """One unit of a campaign: ``run()`` builds (or loads) its artifact; ``locate()`` finds it.

    ``inputs`` name what the task is keyed by (scale, model, molecules, temperature, seed ...)
    for people; ``locate`` answers with the artifact whose key hashes the full parameters, or
    ``None``. Both must be picklable (module-level functions and ``functools.partial``) because
    ``run`` executes on a Dask worker.
    """

    name: str
    stage: str
    inputs: dict
    run: Callable[[], Any]
    locate: Callable[[], Artifact | None]
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Campaign:
    """An ordered list of tasks whose dependencies come before them."""

    scale: str  # the scale's name (a record; the tasks hold the Scale)
    tasks: tuple[Task, ...]
    root: Path = field(default_factory=artifacts_dir)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for task in self.tasks:
            if task.name in seen:
                raise ValueError(f"tasks: the name {task.name!r} appears twice; expected unique task names")
            missing = [d for d in task.depends_on if d not in seen]
            if missing:
                raise ValueError(f"task {task.name!r}: depends on {missing}, which must be listed before it")
            seen.add(task.name)

    def status(self) -> pd.DataFrame:
        """One row per task: name, stage, done (its artifact exists), key (when known), inputs."""
        rows = []
        for task in self.tasks:
            found = task.locate()
            rows.append(
                {
                    "task": task.name,
                    "stage": task.stage,
                    "done": found is not None,
                    "key": found.key if found is not None else "",
                    "inputs": task.inputs,
                }
            )
        return pd.DataFrame(rows, columns=["task", "stage", "done", "key", "inputs"])


@dataclass(frozen=True)
class CampaignRun:
    """What one call of :func:`run_campaign` did."""

    skipped: tuple[str, ...]  # already done before the call
    finished: dict[str, str]  # task -> artifact key, built or loaded during the call
    failed: dict[str, str]  # task -> one-line error (dependents of a failed task fail too)

    @property
    def ok(self) -> bool:
        return not self.failed


def _execute(run: Callable[[], Any], *dependencies: Any) -> str:
    """Worker side: run one task after its dependencies (their results only order the call)."""
    result = run()
    return result.key if isinstance(result, Artifact) else str(result)


def run_campaign(campaign: Campaign, client, progress: bool = True) -> CampaignRun:
    """Run the pending tasks of ``campaign`` on the Dask ``client``; finished work is never redone.

    Every pending task is submitted at once with its pending dependencies' futures as arguments;
    the scheduler runs whatever is ready on whichever worker is free. A task that raises is
    reported (with every task depending on it) instead of stopping the others.
    """
    # Imported here: dask.distributed is slow to import and only a cluster run needs it.
    from distributed import as_completed

    status = campaign.status()
    done = dict(zip(status["task"], status["done"]))
    pending = [t for t in campaign.tasks if not done[t.name]]
    token = uuid.uuid4().hex[:8]
    futures: dict[str, Any] = {}
    for task in pending:
        upstream = [futures[d] for d in task.depends_on if d in futures]
        futures[task.name] = client.submit(_execute, task.run, *upstream, key=f"{task.name}-{token}", pure=False)
    names = {future.key: name for name, future in futures.items()}
    finished, failed = {}, {}
    with tqdm(
        total=len(campaign.tasks),
        initial=len(campaign.tasks) - len(pending),
        desc=f"campaign {campaign.scale}",
        unit="task",
        disable=not progress or not pending,
    ) as bar:
        for future in as_completed(futures.values()):
            name = names[future.key]
            if future.status == "finished":
                finished[name] = future.result()
            else:
                error = future.exception()
                failed[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            bar.set_postfix_str(name, refresh=False)
            bar.update()
    skipped = tuple(t.name for t in campaign.tasks if done[t.name])
    return CampaignRun(skipped, finished, failed)


# ----------------------------------------------------------------------------- the scale's plan
def _find_labels(md_stage_params: dict, reference: str, n_frames: int, root: str) -> Artifact | None:
    """The relabelling of an MD run's sampled frames, if both the run and its labels exist."""
    md = load_artifact(MD_STAGE, md_stage_params, root)
    if md is None:
        return None
    params, _ = label_params(md, sampled_frames(md, n_frames), get_method(reference))
    return load_artifact(LABEL_STAGE, params, root)


# Worker-side task bodies: each calls the public function a chapter calls, so keys agree.
def _label_molecule(task, root: str) -> Artifact:
    return label_molecules([task], n_workers=1, progress=False, root=root)[0]


def _build_dataset(scale: Scale, reference: str, seed: int, root: str) -> Artifact:
    return build_dataset(scale=scale, reference=reference, seed=seed, n_workers=1, progress=False, root=root)


def _train(scale: Scale, train_size: int, seed: int, reference: str, variant: str, root: str, device: str) -> Artifact:
    return train_scale_model(scale, train_size, seed, reference, variant, root, progress=False, device=device)


def _starts(n_molecules: int, seed: int, root: str) -> Artifact:
    return start_structures(n_molecules, seed, root)


def _md(
    scale: Scale, train_size: int, seed: int, reference: str, variant: str, n_molecules: int, root: str, device: str
) -> Artifact:
    model = _train(scale, train_size, seed, reference, variant, root, device)
    return run_sweep_md(
        model, _starts(n_molecules, seed, root), protocol_for(scale), seed, root, device=device, scale=scale
    )


def _relabel(
    scale: Scale, train_size: int, seed: int, reference: str, variant: str, n_molecules: int, root: str, device: str
) -> Artifact:
    """Relabel one run's sampled frames. On a Dask worker the frames fan out over the same
    cluster; the task steps out of its worker slot meanwhile, so it cannot starve the labels."""
    md = _md(scale, train_size, seed, reference, variant, n_molecules, root, device)
    frames = sampled_frames(md, protocol_for(scale).n_sampled_frames)
    try:
        # Imported here: dask.distributed is slow to import and only a cluster run needs it.
        from distributed import get_worker, rejoin, secede

        scheduler = get_worker().scheduler.address
    except (ImportError, ValueError):
        return relabel(md, frames, reference, root=root)
    secede()
    try:
        return relabel(md, frames, reference, root=root, scheduler=scheduler)
    finally:
        rejoin()


def plan_campaign(scale: Scale, seed: int = 0, reference: str = "gfn2-xtb", root=None, device: str = "cpu") -> Campaign:
    """Every task of a scale: labels per molecule, the dataset, the models of every variant the
    book draws, the MD start structures, one MD run and one relabelling per default-variant model
    (what :func:`~gemrepro.studies.sweep.temperature_sweep` computes)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    root = str(Path(root) if root else artifacts_dir())
    protocol = protocol_for(scale)
    data_params, molecule_tasks = dataset_params(scale, reference, seed)
    dataset_key = artifact_key(data_params)
    tasks: list[Task] = []
    label_names = []
    for molecule in molecule_tasks:
        name = f"labels/{molecule.smiles}"
        label_names.append(name)
        tasks.append(
            Task(
                name,
                "labels",
                {"molecule": molecule.smiles, "seed": seed, "reference": reference},
                partial(_label_molecule, molecule, root),
                partial(load_artifact, "labels", molecule.params(), root),
            )
        )
    tasks.append(
        Task(
            "dataset",
            "dataset",
            {"scale": scale.name, "seed": seed, "reference": reference},
            partial(_build_dataset, scale, reference, seed, root),
            partial(load_artifact, "dataset", data_params, root),
            tuple(label_names),
        )
    )

    variants = tuple(dict.fromkeys((*scale.learning_curve_variants, scale.default_variant)))
    model_keys = {}
    for variant in variants:
        for size in scale.train_sizes:
            params = model_params(scale, size, seed, reference, variant, dataset_key)
            model_keys[variant, size] = artifact_key(params)
            tasks.append(
                Task(
                    f"model/{variant}/{size}",
                    MODEL_STAGE,
                    {"scale": scale.name, "variant": variant, "train_size": size, "seed": seed},
                    partial(_train, scale, size, seed, reference, variant, root, device),
                    partial(load_artifact, MODEL_STAGE, params, root),
                    ("dataset",),
                )
            )

    n_molecules = max(scale.n_md_molecules, MD_MOLECULES_COVER_ALL_ELEMENTS)
    starts = start_params(n_molecules, seed)
    tasks.append(
        Task(
            "md-start",
            START_STAGE,
            {"molecules": n_molecules, "seed": seed},
            partial(_starts, n_molecules, seed, root),
            partial(load_artifact, START_STAGE, starts, root),
        )
    )
    variant = scale.default_variant
    for size in scale.train_sizes:
        params = md_params(model_keys[variant, size], artifact_key(starts), protocol, seed)
        sweep_inputs = {
            "model": f"{variant}/{size}",
            "molecules": n_molecules,
            "temperatures": list(protocol.temperatures),
            "md_time_ps": protocol.md_time_ps,
            "seed": seed,
        }
        args = (scale, size, seed, reference, variant, n_molecules, root, device)
        tasks.append(
            Task(
                f"md/{variant}/{size}",
                "md-sweep",
                sweep_inputs,
                partial(_md, *args),
                partial(load_artifact, "md-sweep", params, root),
                (f"model/{variant}/{size}", "md-start"),
            )
        )
        tasks.append(
            Task(
                f"relabel/{variant}/{size}",
                "md-labels",
                {**sweep_inputs, "frames": protocol.n_sampled_frames, "reference": reference},
                partial(_relabel, *args),
                partial(_find_labels, params, reference, protocol.n_sampled_frames, root),
                (f"md/{variant}/{size}",),
            )
        )
    return Campaign(scale.name, tuple(tasks), Path(root))


def summarize(status: pd.DataFrame) -> pd.DataFrame:
    """Done and pending tasks per stage, in the order the stages first appear."""
    order = list(dict.fromkeys(status["stage"]))
    table = status.groupby("stage", sort=False)["done"].agg(done="sum", total="count").reindex(order)
    table["pending"] = table["total"] - table["done"]
    return table.reset_index()[["stage", "done", "pending", "total"]]


def describe(status: pd.DataFrame, limit: int = 8) -> list[str]:
    """Lines for a dry run: every task with done/pending (the first ``limit`` of a large stage)."""
    lines = []
    for stage, group in status.groupby("stage", sort=False):
        for row in group.head(limit).itertuples(index=False):
            mark = f"done    {row.key}" if row.done else "pending"
            lines.append(f"  {mark:<24} {row.task}")
        if len(group) > limit:
            more = group.iloc[limit:]
            lines.append(f"  ... {len(more)} more {stage} tasks ({int(more['done'].sum())} done)")
    return lines
