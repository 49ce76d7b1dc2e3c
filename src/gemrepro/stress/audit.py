"""The book's robustness protocol applied to any batched potential.

Every (molecule, temperature, seed) is one system of a single batched Langevin run
(:func:`gemrepro.md.run_md`); the engine's stability rules (the MDsim bond rule, hydrogen loss,
clashing atoms, exploding or non-finite forces) give each trajectory its time to failure. Frames sampled
uniformly up to the end of the run — or up to the failure — are relabelled with a reference
method, so a reader sees how the error grows before a trajectory breaks.

Energies of an arbitrary potential may have any zero (total or atomization energy), so the
energy error of a frame is measured relative to the start structure of its trajectory:
``(E_model - E_ref)(t) - (E_model - E_ref)(0)``. Forces need no such care.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ase import Atoms

from gemrepro.analysis.errors import force_mae
from gemrepro.analysis.geometry import check_geometry
from gemrepro.analysis.origin import failure_origin
from gemrepro.analysis.stability import StabilityCriteria
from gemrepro.md import run_md
from gemrepro.md.queue import CHECKPOINT_NAME, QueueSummary, failure_frame, read_trajectory, run_queue
from gemrepro.md.runner import MDSummary, checkpoint_path_for
from gemrepro.md.state import Potential, kinetic_temperature
from gemrepro.stress.field import FieldProtocol, FieldScores, audit_scores, heating_ramp_scores, nve_scores
from gemrepro.studies.sweep import Protocol, label_frames, sample_frames

__all__ = ["AuditResult", "Verdict", "check_inputs", "run_audit", "system_seed"]


@dataclass(frozen=True)
class Verdict:
    """Did every trajectory stay stable for at least ``min_stable_ps``?"""

    passed: bool
    min_stable_ps: float
    shortest_stable_ps: float
    n_failed_early: int
    n_trajectories: int

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "min_stable_ps": self.min_stable_ps,
            "shortest_stable_ps": self.shortest_stable_ps,
            "n_failed_early": self.n_failed_early,
            "n_trajectories": self.n_trajectories,
        }


@dataclass
class AuditResult:
    """The outcome of :func:`run_audit`: one row per trajectory, one row per relabelled frame."""

    protocol: Protocol
    trajectories: pd.DataFrame
    frames: pd.DataFrame
    trajectory_path: Path
    reference: str | None
    failure_positions: dict[int, np.ndarray]  # system -> its failed geometry (Å), frame -1
    field: FieldScores | None = None  # the field's stability scores, when asked for

    @property
    def horizon_ps(self) -> float:
        """Length of the run (ps): the stable time of a trajectory that never failed."""
        return self.protocol.n_steps * self.protocol.dt_fs / 1000.0

    def verdict(self, min_stable_ps: float) -> Verdict:
        """The CI gate: every trajectory must be stable for ``min_stable_ps`` (≤ the run length)."""
        if not (np.isfinite(min_stable_ps) and 0 < min_stable_ps <= self.horizon_ps + 1e-12):
            raise ValueError(
                f"--min-stable-ps: expected a time in (0, {self.horizon_ps:g}] ps (the run length), "
                f"got {min_stable_ps!r}"
            )
        times = self.trajectories["stable_time_ps"].to_numpy(dtype=float)
        early = int(np.sum(times < min_stable_ps - 1e-12))
        return Verdict(early == 0, float(min_stable_ps), float(times.min()), early, len(times))

    def worst_frames(self, n: int = 4) -> pd.DataFrame:
        """The ``n`` relabelled frames with the largest force error (failure frames first when unlabelled)."""
        if self.frames.empty:
            return self.frames
        ranked = self.frames.assign(_key=self.frames["forces_mae"].fillna(np.inf))
        ranked = ranked.sort_values(["_key", "time_ps"], ascending=[False, False], kind="stable")
        return ranked[ranked["frame"] != 0].head(n).drop(columns="_key")

    def atoms_of(self, system: int, frame: int) -> Atoms:
        """The structure of ``system`` in stored ``frame``; frame -1 is the geometry it failed in."""
        data = read_trajectory(self.trajectory_path, int(system))
        if int(frame) == -1:
            if int(system) not in self.failure_positions:
                raise ValueError(f"frame: system {system} did not fail, so it has no failure geometry (frame -1)")
            return Atoms(numbers=data["numbers"], positions=self.failure_positions[int(system)])
        return Atoms(numbers=data["numbers"], positions=data["positions"][int(frame)])


def system_seed(seed: int, molecule: str, temperature_K: float, replica: int) -> int:
    """A 63-bit seed that depends on this system alone, so batch composition never changes it."""
    key = [int(seed), zlib.crc32(molecule.encode()), int(round(temperature_K * 1000)), int(replica)]
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1)


def check_inputs(molecules: Mapping[str, Atoms], n_seeds: int, potential: Potential, reference: str | None) -> None:
    """What :func:`run_audit` refuses, before any compute. Periodic structures need a potential that
    takes a cell, and a molecular reference cannot relabel a crystal (a molecule in a vacuum box,
    ``info["box_A"]``, it can)."""
    if not molecules:
        raise ValueError("molecules: expected at least one molecule")
    for name, atoms in molecules.items():
        if not isinstance(atoms, Atoms) or len(atoms) == 0:
            raise ValueError(f"molecules: {name!r} is not a non-empty ase.Atoms")
        if atoms.pbc.any() and not hasattr(potential, "set_cells"):
            raise ValueError(
                f"molecules: {name!r} is periodic, but the potential ({type(potential).__name__}) is for "
                "isolated molecules and takes no cell"
            )
        if atoms.pbc.any() and "box_A" not in atoms.info and reference is not None:
            raise ValueError(
                f"reference: {reference} relabels isolated molecules, but {name!r} is periodic (its own cell); "
                "audit it with reference 'none' (--reference none)"
            )
        check_geometry(atoms.numbers, atoms.positions, f"molecules: {name!r}")
    if isinstance(n_seeds, bool) or int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"n_seeds: expected a positive number of seeds per molecule and temperature, got {n_seeds!r}")


def run_audit(
    potential: Potential,
    molecules: Mapping[str, Atoms],
    protocol: Protocol,
    workdir: str | Path,
    *,
    n_seeds: int = 1,
    seed: int = 0,
    reference: str | None = "gfn2-xtb",
    criteria: StabilityCriteria | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    field: FieldProtocol | None = None,
    slots: int | None = None,
) -> AuditResult:
    """Hot batched MD of every (molecule, temperature, seed), failures, and relabelled frames.

    ``molecules`` maps names to start structures (Å). ``potential`` is any batched potential;
    when it has an ``errors`` mapping (as :class:`~gemrepro.stress.calculators.CalculatorPotential`
    does) the reason a calculator failed a system is reported in the ``detail`` column.
    ``reference=None`` skips the relabelling. The trajectory is written to ``workdir``. With a
    ``field`` protocol the field's stability scores are computed too (:mod:`gemrepro.stress.field`:
    MDsim and MLIPAudit on these trajectories, plus one NVE run and one heating ramp per molecule).
    With ``slots`` the trajectories run on that many batch slots, refilled as trajectories fail
    (:func:`gemrepro.md.queue.run_queue`; one file per trajectory in ``workdir/trajectories``):
    the same trajectories, with no failed replica left idle in the batch. For batched model
    potentials only: a calculator's error details are kept per batch position.
    """
    check_inputs(molecules, n_seeds, potential, reference)
    systems = [(name, float(t), k) for name in molecules for t in protocol.temperatures for k in range(int(n_seeds))]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    capture = FailureCapture()
    settings: dict[str, Any] = dict(
        n_steps=protocol.n_steps,
        temperatures=[t for _, t, _ in systems],
        seeds=[system_seed(seed, name, t, k) for name, t, k in systems],
        dt_fs=protocol.dt_fs,
        friction=protocol.friction_per_fs,
        frame_interval=protocol.frame_interval,
        checkpoint_interval=max(protocol.n_steps, 1),
        criteria=criteria,
        device=device,
        progress=progress,
    )
    starts = [molecules[name] for name, _, _ in systems]
    if slots is None:
        path = workdir / "trajectory.h5"
        checkpoint_path_for(path).unlink(missing_ok=True)  # an audit always starts fresh
        summary: MDSummary | QueueSummary = run_md(potential, starts, path=path, callback=capture, **settings)
    else:
        if hasattr(potential, "errors"):
            raise ValueError("slots: refilled slots are for batched model potentials (--model), not calculators")
        path = workdir / "trajectories"
        (path / CHECKPOINT_NAME).unlink(missing_ok=True)  # an audit always starts fresh
        summary = run_queue(potential, starts, folder=path, slots=slots, overwrite=True, **settings)
        capture.frames = {s: failure_frame(path, s) for s, f in enumerate(summary.failures) if f is not None}
    horizon = protocol.n_steps * protocol.dt_fs / 1000.0
    errors = getattr(potential, "errors", {}) or {}
    rows = []
    for s, ((name, temperature, k), failure) in enumerate(zip(systems, summary.failures, strict=True)):
        atoms = molecules[name]
        rows.append(
            {
                "system": s,
                "molecule": name,
                "formula": atoms.get_chemical_formula(),
                "n_atoms": len(atoms),
                "temperature": temperature,
                "seed": k,
                "failed": failure is not None,
                "time_to_failure_ps": np.nan if failure is None else failure.time_ps,
                "stable_time_ps": horizon if failure is None else min(failure.time_ps, horizon),
                "rule": "" if failure is None else failure.rule,
                "atoms": "" if failure is None else " ".join(map(str, failure.atoms)),
                "detail": errors.get(s, ""),
            }
        )
    trajectories = pd.DataFrame(rows)
    frames = _relabel(path, trajectories, capture.frames, protocol.n_sampled_frames, reference)
    if reference is not None:
        trajectories = trajectories.join(failure_origins(trajectories, frames), on="system")
    failure_positions = {s: f["positions"] for s, f in capture.frames.items()}
    scores = None
    if field is not None:
        scores = FieldScores(
            audit_scores(
                trajectories,
                path,
                capture.frames,
                n_steps=protocol.n_steps,
                interval=protocol.frame_interval,
                dt_fs=protocol.dt_fs,
            ),
            nve_scores(potential, molecules, workdir, nve_ps=field.nve_ps, seed=seed, device=device, progress=progress),
            heating_ramp_scores(
                potential,
                molecules,
                workdir,
                ramp_ps=field.ramp_ps,
                dt_fs=protocol.dt_fs,
                friction_per_fs=protocol.friction_per_fs,
                seed=seed,
                criteria=criteria,
                device=device,
                progress=progress,
            ),
            field,
        )
    return AuditResult(protocol, trajectories, frames, path, reference, failure_positions, scores)


class FailureCapture:
    """MD callback that keeps each system's geometry, energy, forces and kinetic temperature at the step it failed.

    Stored frames are sparse and a run stops when every system has failed, so the failed
    geometry — the "hole" the audit most wants relabelled — is often never written to disk.
    """

    def __init__(self) -> None:
        self.frames: dict[int, dict] = {}

    def __call__(self, state) -> None:
        dead = (~state.alive).nonzero().flatten().tolist()
        new = [s for s in dead if s not in self.frames]
        if not new:
            return
        offsets = state.atom_offsets().tolist()
        temperatures = kinetic_temperature(state).detach().cpu().double().numpy()
        for s in new:
            atoms = slice(offsets[s], offsets[s + 1])
            self.frames[s] = {
                "step": int(state.failure_step[s]),
                "positions": state.positions[atoms].detach().cpu().double().numpy().copy(),
                "forces": state.forces[atoms].detach().cpu().double().numpy().copy(),
                "energy": float(state.energy[s]),
                "temperature": float(temperatures[s]),
            }


def _relabel(
    path: Path, trajectories: pd.DataFrame, failures: dict[int, dict], n_frames: int, reference: str | None
) -> pd.DataFrame:
    """Relabelled frames of every trajectory: its start (frame 0), up to ``n_frames`` stored frames
    while it was alive and, for a failed one, the failed geometry (frame -1)."""
    columns = [
        "system",
        "molecule",
        "temperature",
        "seed",
        "frame",
        "step",
        "time_ps",
        "failure_frame",
        "model_energy",
        "reference_energy",
        "energy_error",
        "forces_mae",
        "max_force_error",
        "converged",
        "error",
    ]
    if reference is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for trajectory in trajectories.itertuples():
        data = read_trajectory(path, trajectory.system)
        n_alive = int(np.argmin(data["alive"])) if not data["alive"].all() else len(data["alive"])
        chosen = np.unique(np.concatenate([[0], sample_frames(np.ones(max(n_alive, 1), bool), n_frames)]))
        if trajectory.system in failures:  # the last frame before the failure: what failure_origin compares with
            chosen = np.unique(np.append(chosen, max(n_alive - 1, 0)))
        samples = [
            (
                int(k),
                int(data["step"][k]),
                float(data["time_ps"][k]),
                data["positions"][k],
                data["forces"][k],
                float(data["energy"][k]),
            )
            for k in chosen
        ]
        if trajectory.system in failures:
            f = failures[trajectory.system]
            samples.append(
                (-1, f["step"], float(trajectory.time_to_failure_ps), f["positions"], f["forces"], f["energy"])
            )
        labels = label_frames(reference, {}, data["numbers"], [sample[3] for sample in samples])
        offset = np.nan
        for (k, step, time_ps, _, model_forces, model_energy), label in zip(samples, labels, strict=True):
            difference = np.linalg.norm(model_forces - label["forces"], axis=-1)
            gap = model_energy - label["energy"]
            if k == 0:
                offset = gap
            rows.append(
                {
                    "system": trajectory.system,
                    "molecule": trajectory.molecule,
                    "temperature": trajectory.temperature,
                    "seed": trajectory.seed,
                    "frame": k,
                    "step": step,
                    "time_ps": time_ps,
                    "failure_frame": k == -1,
                    "model_energy": model_energy,
                    "reference_energy": label["energy"],
                    "energy_error": gap - offset,
                    "forces_mae": force_mae(model_forces, label["forces"]),
                    "max_force_error": float(np.max(difference)),
                    "converged": label["converged"],
                    "error": label["error"],
                }
            )
    return pd.DataFrame(rows, columns=columns)


def failure_origins(trajectories: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Hole or chemistry (:func:`gemrepro.analysis.origin.failure_origin`) of every failed trajectory, by system.

    Compares the failed geometry (frame -1) with the last relabelled frame before the failure;
    ``origin`` is empty for a trajectory that did not fail, ``undetermined`` where a reference
    calculation did not converge or no frame precedes the failure.
    """
    rows = {}
    for trajectory in trajectories.itertuples():
        if not trajectory.failed:
            rows[trajectory.system] = {"origin": "", "origin_excess_eV": np.nan}
            continue
        mine = frames[frames["system"] == trajectory.system]
        after = mine[mine["frame"] == -1]
        before = mine[(mine["frame"] >= 0) & (mine["time_ps"] < trajectory.time_to_failure_ps)].sort_values("step")
        if after.empty or before.empty:
            rows[trajectory.system] = {"origin": "undetermined", "origin_excess_eV": np.nan}
            continue
        b, a = before.iloc[-1], after.iloc[0]
        energy = {k: float(v["reference_energy"]) if bool(v["converged"]) else np.nan for k, v in (("b", b), ("a", a))}
        origin = failure_origin(
            model_before=float(b["model_energy"]),
            model_after=float(a["model_energy"]),
            reference_before=energy["b"],
            reference_after=energy["a"],
            temperature_K=float(trajectory.temperature),
        )
        rows[trajectory.system] = {"origin": origin.verdict, "origin_excess_eV": origin.excess_eV}
    return pd.DataFrame.from_dict(rows, orient="index")
