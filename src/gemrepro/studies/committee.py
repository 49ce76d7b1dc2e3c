"""Committees of learning-curve models and their disagreement along the cached MD trajectories.

A committee is ``n_members`` models of one training size that differ only in the seed of their
initialisation and batch order (:func:`gemrepro.studies.learning_curve.member_seed`); member 0
is the learning-curve model that drove the MD, so its trajectories are reused as they are.

Stage ``committee-disagreement`` holds, per MD run and committee, ``disagreement.csv``: every
stored frame up to the first dead one, with the committee's max per-atom force disagreement
(eV/Å) and energy spread (eV) (:func:`gemrepro.md.committee.disagreement`). Evaluating after the
run costs a few batched forward passes per model, and leaves the trajectories untouched.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from gemrepro.cache.artifacts import Artifact, get_or_create
from gemrepro.cache.paths import artifacts_dir
from gemrepro.config.designs import CommitteeDesign
from gemrepro.config.scales import Scale
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md import run_md
from gemrepro.md.committee import CommitteePotential, UncertaintyStop, disagreement
from gemrepro.md.runner import system_seeds
from gemrepro.md.state import batch_inputs
from gemrepro.studies.holes import seeds_study
from gemrepro.studies.learning_curve import resolve_variant, train_scale_model
from gemrepro.studies.sweep import load_frames, sweep_systems, temperature_sweep

__all__ = [
    "CommitteeStudy",
    "committee_models",
    "committee_study",
    "disagreement_table",
    "frame_disagreement",
    "stop_on_uncertainty_run",
]

STAGE = "committee-disagreement"
MD_STAGE = "md-committee"
STAGE_VERSION = 1  # bump when what a disagreement artifact holds or how it is computed changes


def committee_models(
    scale: Scale,
    train_size: int,
    n_members: int,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    variant: str | None = None,
    root=None,
    progress: bool = False,
    device: str = "cpu",
    data=None,
) -> list[Artifact]:
    """The ``n_members`` model artifacts of one committee (trained when missing; member 0 reused)."""
    if isinstance(n_members, bool) or int(n_members) != n_members or n_members < 2:
        raise ValueError(f"n_members: expected at least 2 members per committee, got {n_members!r}")
    return [
        train_scale_model(scale, train_size, seed, reference, variant, root, progress, device, data, member=m)
        for m in range(int(n_members))
    ]


def _frames_to_evaluate(alive: np.ndarray, positions_finite: np.ndarray, stride: int = 1) -> np.ndarray:
    """Every ``stride``-th stored frame up to the first one no longer integrated (always included), with
    finite coordinates."""
    last = int(np.argmin(alive)) if not alive.all() else len(alive) - 1
    chosen = np.zeros(len(alive), dtype=bool)
    chosen[: last + 1 : stride] = True
    chosen[last] = True
    return np.flatnonzero(chosen & positions_finite)


def frame_disagreement(
    models: Sequence[Artifact], md: Artifact, root=None, device: str = "cpu", frame_stride: int = 1, chunk: int = 256
) -> Artifact:
    """The committee of ``models`` evaluated on the stored frames of the MD run ``md``; cached.

    ``disagreement.csv``: system, frame, step, time_ps, alive, force_disagreement (eV/Å),
    energy_spread (eV), for every ``frame_stride``-th frame of each system up to the first frame it
    was no longer integrated in (always included; ``alive`` false there). The seeds runs freeze a
    system at its stop; the sweep's runs continue failed trajectories, so their frames after a
    failure are evaluated too (the warning analysis looks only before the failure time).
    ``chunk`` structures go through a model at once.
    """
    if len(models) < 2:
        raise ValueError(f"models: expected at least two committee members, got {len(models)}")
    root = Path(root) if root else artifacts_dir()
    if isinstance(frame_stride, bool) or int(frame_stride) != frame_stride or frame_stride < 1:
        raise ValueError(f"frame_stride: expected a positive integer, got {frame_stride!r}")
    params = {
        "models": [m.key for m in models],
        "md": md.key,
        "frame_stride": int(frame_stride),
        "stage_version": STAGE_VERSION,
    }

    def build(folder: Path) -> dict:
        with h5py.File(md.file("trajectory.h5"), "r") as f:
            offsets = f["systems/atom_offset"][()]
            numbers_all = f["systems/numbers"][()]
            positions_all = f["frames/positions"][()]
            alive, steps, times = f["frames/alive"][()], f["frames/step"][()], f["frames/time_ps"][()]
        jobs = []  # (system, frame, numbers, positions)
        for s in range(len(offsets) - 1):
            a, b = int(offsets[s]), int(offsets[s + 1])
            finite = np.isfinite(positions_all[:, a:b]).all(axis=(1, 2))
            for k in _frames_to_evaluate(alive[:, s], finite, int(frame_stride)):
                jobs.append((s, int(k), numbers_all[a:b], positions_all[int(k), a:b]))
        potentials = [potential_from_checkpoint(m.file("model.pt"), device=device) for m in models]
        force_dis, energy_spread = [], []
        for start in range(0, len(jobs), chunk):
            part = jobs[start : start + chunk]
            positions, numbers, index = batch_inputs([j[3] for j in part], [j[2] for j in part])
            results = [p(positions, numbers, index) for p in potentials]
            f_dis, e_spread = disagreement(
                torch.stack([e for e, _ in results]), torch.stack([f for _, f in results]), index, len(part)
            )
            force_dis.append(f_dis.numpy())
            energy_spread.append(e_spread.numpy())
        table = pd.DataFrame(
            {
                "system": [j[0] for j in jobs],
                "frame": [j[1] for j in jobs],
                "step": [int(steps[j[1]]) for j in jobs],
                "time_ps": [float(times[j[1]]) for j in jobs],
                "alive": [bool(alive[j[1], j[0]]) for j in jobs],
                "force_disagreement": np.concatenate(force_dis) if jobs else [],
                "energy_spread": np.concatenate(energy_spread) if jobs else [],
            }
        )
        table.to_csv(folder / "disagreement.csv", index=False)
        return {"n_frames": len(table), "n_members": len(models)}

    return get_or_create(STAGE, params, build, root)


def disagreement_table(artifact: Artifact) -> pd.DataFrame:
    """The ``disagreement.csv`` of a :func:`frame_disagreement` artifact."""
    return pd.read_csv(artifact.file("disagreement.csv"))


@dataclass
class CommitteeStudy:
    """Committee disagreement along the temperature-sweep and seeds trajectories of one scale."""

    design: CommitteeDesign
    committees: dict[int, list[Artifact]]
    artifacts: list[Artifact]  # the disagreement artifacts, for provenance
    disagreement: pd.DataFrame  # one row per stored frame: study, train_size, system, time_ps, ...
    trajectories: pd.DataFrame  # one row per trajectory: study, train_size, system, failed, time_to_failure_ps, ...
    frames: pd.DataFrame  # relabelled sweep frames with the disagreement at each (true error vs proxy)
    horizon_ps: float
    sweep: object  # the temperature sweep (gemrepro.studies.sweep.Sweep) the committees were evaluated on


def committee_study(
    scale: Scale,
    *,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    variant: str | None = None,
    design: CommitteeDesign | None = None,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> CommitteeStudy:
    """Train (or load) the committees and evaluate them on the sweep's and the seeds study's runs.

    The two studies' trajectories are stacked with a ``study`` column ("sweep", "seeds"); their
    models, runs and labels come from the same cached functions as their own chapters.
    """
    design = design or scale.committee
    if design is None:
        raise ValueError(f"scale {scale.name!r} has no committee design (Scale.committee); pass design=")
    unknown = [n for n in design.train_sizes if n not in scale.train_sizes]
    if unknown:
        raise ValueError(f"design.train_sizes: {unknown} are not {scale.name} training sizes {list(scale.train_sizes)}")
    root = Path(root) if root else artifacts_dir()
    variant = resolve_variant(scale, variant)
    sweep = temperature_sweep(
        scale=scale, seed=seed, reference=reference, variant=variant, root=root, progress=progress, device=device
    )
    seeds = seeds_study(
        scale=scale, seed=seed, reference=reference, variant=variant, root=root, progress=progress, device=device
    )
    committees = {
        n: committee_models(scale, n, design.n_members, seed, reference, variant, root, progress, device)
        for n in design.train_sizes
    }
    keep = ["system", "molecule", "temperature", "failed", "time_to_failure_ps", "failure_rule"]
    tables, trajectories, artifacts = [], [], []
    for study, runs, table in (("sweep", sweep.md, sweep.trajectories), ("seeds", seeds.md, seeds.trajectories)):
        for n in design.train_sizes:
            artifact = frame_disagreement(committees[n], runs[n], root, device, design.frame_stride)
            artifacts.append(artifact)
            tables.append(disagreement_table(artifact).assign(study=study, train_size=n))
            rows = table[table["train_size"] == n][keep]
            trajectories.append(rows.assign(study=study, train_size=n))
    disagreement = pd.concat(tables, ignore_index=True)
    frames = []
    for n in design.train_sizes:
        labelled = load_frames(sweep.labels[n]).assign(study="sweep", train_size=n)
        frames.append(
            labelled.merge(disagreement, on=["study", "train_size", "system", "frame"], suffixes=("", "_committee"))
        )
    return CommitteeStudy(
        design,
        committees,
        artifacts,
        disagreement,
        pd.concat(trajectories, ignore_index=True),
        pd.concat(frames, ignore_index=True),
        sweep.protocol.md_time_ps,
        sweep,
    )


def stop_on_uncertainty_run(
    models: Sequence[Artifact],
    study,
    train_size: int,
    systems: Sequence[int],
    threshold: float,
    root=None,
    device: str = "cpu",
) -> Artifact:
    """Rerun ``systems`` of the temperature sweep's run of ``train_size`` with the committee driving
    the dynamics and stopping a system once its force disagreement exceeds ``threshold`` (eV/Å); cached.

    ``study`` is the :class:`~gemrepro.studies.sweep.Sweep`; each system starts from the same
    structure, temperature and Langevin seed as in the sweep. The geometric rules stay on, so a
    system the committee does not stop in time fails by its usual rule. ``systems.csv``: system,
    molecule, temperature, stopped, stop_time_ps, stop_rule.
    """
    if len(models) < 2:
        raise ValueError(f"models: expected at least two committee members, got {len(models)}")
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold: expected a positive force disagreement in eV/Å, got {threshold!r}")
    protocol, run = study.protocol, study.md[train_size]
    all_systems = sweep_systems(study.starts, protocol)
    systems = [int(s) for s in systems]
    if not systems or any(not 0 <= s < len(all_systems) for s in systems):
        raise ValueError(f"systems: expected indices of the sweep's {len(all_systems)} systems, got {systems}")
    seeds = system_seeds(int(run.manifest["params"]["seed"]), len(all_systems))
    root = Path(root) if root else artifacts_dir()
    params = {
        "models": [m.key for m in models],
        "md": run.key,
        "systems": systems,
        "threshold": float(threshold),
        "stage_version": STAGE_VERSION,
    }

    def build(folder: Path) -> dict:
        committee = CommitteePotential([potential_from_checkpoint(m.file("model.pt"), device=device) for m in models])
        work = folder / "work"
        summary = run_md(
            committee,
            [all_systems[s][0] for s in systems],
            n_steps=protocol.n_steps,
            path=work / "trajectory.h5",
            temperatures=[all_systems[s][1] for s in systems],
            seeds=[seeds[s] for s in systems],
            dt_fs=protocol.dt_fs,
            friction=protocol.friction_per_fs,
            frame_interval=protocol.frame_interval,
            checkpoint_interval=max(protocol.frame_interval, 1000),
            dtype=torch.float64,
            device=device,
            progress=False,
            stop=UncertaintyStop(committee, float(threshold)),
        )
        shutil.move(str(work / "trajectory.h5"), folder / "trajectory.h5")
        shutil.rmtree(work)
        rows = [
            {
                "system": s,
                "molecule": all_systems[s][0].info.get("name", all_systems[s][0].get_chemical_formula()),
                "temperature": all_systems[s][1],
                "stopped": failure is not None,
                "stop_time_ps": failure.time_ps if failure else float("nan"),
                "stop_rule": failure.rule if failure else "",
            }
            for s, failure in zip(systems, summary.failures)
        ]
        pd.DataFrame(rows).to_csv(folder / "systems.csv", index=False)
        return {"steps": summary.step, "md_wall_time_s": round(summary.wall_time_s, 2)}

    return get_or_create(MD_STAGE, params, build, root)
