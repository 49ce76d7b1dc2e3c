"""The field's stability scores (:mod:`gemrepro.analysis.scores`) for the potential under audit.

MDsim's bond criterion and MLIPAudit's stability score are read off the audit's own Langevin
trajectories; LAMBench's energy drift needs a short NVE run and MLIP Arena's score a heating ramp,
one trajectory per molecule each. The audit freezes a trajectory when one of its rules fires, so
the frames these scores see after a failure hold the geometry it failed in: a score whose criterion
had not fired by then is counted as stable from there on (``censored`` in the tables). A trajectory
that failed at step 0 never took a step: every score counts it unstable at 0 ps (MLIPAudit: 0),
never stable and never censored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ase import Atoms, units

from gemrepro.analysis import scores
from gemrepro.analysis.stability import StabilityCriteria
from gemrepro.md import run_md
from gemrepro.md.queue import read_trajectory
from gemrepro.md.runner import checkpoint_path_for
from gemrepro.md.state import Potential
from gemrepro.md.trajectory import read_system

__all__ = ["FieldProtocol", "FieldScores", "SOURCES", "audit_scores", "heating_ramp_scores", "nve_scores"]

SOURCES: dict[str, str] = {
    "mdsim": 'MDsim: Fu et al., "Forces are Not Enough", TMLR 2023, arXiv:2210.07237 (github.com/kyonofx/MDsim)',
    "mlipaudit": "MLIPAudit stability benchmark: InstaDeep, github.com/instadeepai/mlipaudit (mlipaudit 0.1.8)",
    "lambench": "LAMBench NVE MD: github.com/deepmodeling/LAMBench (tasks/calculator/nve_md, metrics_calculations.py)",
    "mlip_arena": "MLIP Arena stability (heating): github.com/atomind-ai/mlip-arena (tasks/stability/flow.py)",
}
NVE_TEMPERATURE_K = 300.0  # LAMBench
NVE_DT_FS = 1.0  # LAMBench
ENERGY_LIMIT_EV = 1e10  # LAMBench stops a run whose total energy passes it


@dataclass(frozen=True)
class FieldProtocol:
    """Lengths of the extra runs: LAMBench's NVE (10 ps there) and MLIP Arena's ramp (10 ps there)."""

    nve_ps: float
    ramp_ps: float

    def __post_init__(self) -> None:
        for name in ("nve_ps", "ramp_ps"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive duration in ps, got {value!r}")


@dataclass
class FieldScores:
    """One row per audit trajectory (MDsim, MLIPAudit), per molecule (LAMBench, MLIP Arena)."""

    trajectories: pd.DataFrame
    nve: pd.DataFrame
    ramp: pd.DataFrame
    protocol: FieldProtocol

    def lines(self) -> dict[str, str]:
        """One line per score, with its n, in the order of :data:`SOURCES`."""
        t, nve, ramp = self.trajectories, self.nve, self.ramp
        drift = nve["drift_ev_atom_ps"].dropna()
        fired = ramp["first_failure_K"].dropna()
        return {
            "mdsim": f"MDsim (bond deviation > 0.5 Å): {int(t['mdsim_unstable'].sum())} of {len(t)} trajectories "
            f"unstable, median stable time {np.median(t['mdsim_stable_ps']):.4g} ps "
            f"({int(t['mdsim_censored'].sum())} censored)",
            "mlipaudit": f"MLIPAudit stability score: {t['mlipaudit_score'].mean():.3f} (mean of n={len(t)}; "
            f"{int((t['mlipaudit_explosion_frame'] >= 0).sum())} explosions, "
            f"{int((t['mlipaudit_drift_frame'] >= 0).sum())} drifting hydrogens, "
            f"{int(t['mlipaudit_censored'].sum())} censored)",
            "lambench": f"LAMBench NVE ({self.protocol.nve_ps:g} ps, {NVE_DT_FS:g} fs, {NVE_TEMPERATURE_K:g} K): "
            f"instability {nve['lambench_instability'].mean():.3f} (0 best, 5 worst, on LAMBench's drift "
            f"convention; n={len(nve)}), "
            + (f"median drift {np.median(drift):.3g} eV/atom/ps" if len(drift) else "no drift fitted"),
            "mlip_arena": f"MLIP Arena heating {scores.ARENA_START_K:g} -> {scores.ARENA_STOP_K:g} K "
            f"({self.protocol.ramp_ps:g} ps): fraction of steps completed "
            f"{ramp['arena_fraction'].mean():.3f} (mean of n={len(ramp)}); the audit's rules fired in "
            f"{len(fired)} of {len(ramp)}" + (f", at median {np.median(fired):.0f} K" if len(fired) else ""),
        }

    def as_dict(self) -> dict:
        return {
            "protocol": {
                "nve_ps": self.protocol.nve_ps,
                "nve_dt_fs": NVE_DT_FS,
                "nve_temperature_K": NVE_TEMPERATURE_K,
                "ramp_ps": self.protocol.ramp_ps,
                "ramp_K": [scores.ARENA_START_K, scores.ARENA_STOP_K],
            },
            "scores": {key: {"line": line, "source": SOURCES[key]} for key, line in self.lines().items()},
            "trajectories": json.loads(self.trajectories.to_json(orient="records")),
            "nve": json.loads(self.nve.to_json(orient="records")),
            "ramp": json.loads(self.ramp.to_json(orient="records")),
        }


def frozen_frames(data: dict, failure: dict | None, n_steps: int, interval: int) -> dict[str, np.ndarray]:
    """The frames of one audit trajectory at every ``interval`` steps to ``n_steps``, as the engine
    froze it: from its failure step on, the failed geometry and temperature (the run may have
    stopped, or stored its last frame, before that)."""
    steps = np.arange(0, n_steps + 1, interval)
    stored = {int(s): k for k, s in enumerate(data["step"])}
    positions, temperatures = [], []
    for step in steps:
        if failure is not None and step >= failure["step"]:
            positions.append(failure["positions"])
            temperatures.append(failure["temperature"])
        else:
            k = stored[int(step)]
            positions.append(data["positions"][k])
            temperatures.append(data["temperature_kin"][k])
    return {"step": steps, "positions": np.stack(positions), "temperature": np.asarray(temperatures)}


def audit_scores(
    trajectories: pd.DataFrame, path: Path, failures: Mapping[int, dict], *, n_steps: int, interval: int, dt_fs: float
) -> pd.DataFrame:
    """MDsim and MLIPAudit on every audit trajectory (a failure captured by
    :class:`~gemrepro.stress.audit.FailureCapture`, with its kinetic temperature)."""
    rows = []
    for row in trajectories.itertuples():
        data = read_trajectory(path, int(row.system))
        failure = failures.get(int(row.system))
        frames = frozen_frames(data, failure, n_steps, interval)
        reference = data["reference_positions"]
        unstable = scores.mdsim_unstable_frame(data["numbers"], frames["positions"], reference_positions=reference)
        step = n_steps if unstable < 0 else int(frames["step"][unstable])
        if failure is not None and unstable >= 0:
            step = min(step, failure["step"])  # the failed geometry belongs to its own step
        audit = scores.mlipaudit_stability(
            data["numbers"],
            frames["positions"],
            frames["temperature"],
            float(row.temperature),
            n_expected_frames=n_steps // interval,
            reference_positions=reference,
        )
        crashed = row.rule == "nonfinite"  # MLIPAudit scores a simulation that raised as 0
        if failure is not None and failure["step"] == 0:  # never took a step: nothing was stable
            unstable, step, crashed = 0, 0, True
        rows.append(
            {
                "system": int(row.system),
                "molecule": row.molecule,
                "temperature": float(row.temperature),
                "seed": int(row.seed),
                "mdsim_unstable": unstable >= 0,
                "mdsim_stable_ps": step * dt_fs / 1000.0,
                "mdsim_censored": unstable < 0 and failure is not None,
                "mlipaudit_explosion_frame": audit["explosion_frame"],
                "mlipaudit_drift_frame": audit["drift_frame"],
                "mlipaudit_score": 0.0 if crashed else audit["score"],
                "mlipaudit_censored": failure is not None and not crashed and audit["score"] == 1.0,
            }
        )
    return pd.DataFrame(rows)


def _reset(potential: Potential) -> None:
    """A calculator potential keeps per-system state (failures, start structures) of its last batch."""
    if hasattr(potential, "reset"):
        potential.reset()


def _seed(seed: int, tag: str, name: str) -> int:
    # Imported here: an import cycle (stress.audit imports this module at its top).
    from gemrepro.stress.audit import system_seed

    return system_seed(seed, f"{tag}:{name}", NVE_TEMPERATURE_K, 0)


def nve_scores(
    potential: Potential,
    molecules: Mapping[str, Atoms],
    workdir: Path,
    *,
    nve_ps: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """LAMBench's NVE run per molecule: velocity Verlet, 1 fs, from 300 K, energy logged every
    ``n_steps // 100`` steps; a run stops counting when its numbers turn non-finite."""
    n_steps = max(1, int(round(nve_ps * 1000.0 / NVE_DT_FS)))
    interval = max(1, n_steps // 100)
    names = list(molecules)
    path = Path(workdir) / "nve.h5"
    checkpoint_path_for(path).unlink(missing_ok=True)
    _reset(potential)
    summary = run_md(
        potential,
        [molecules[n] for n in names],
        n_steps=n_steps,
        path=path,
        temperatures=NVE_TEMPERATURE_K,
        seeds=[_seed(seed, "nve", n) for n in names],
        dt_fs=NVE_DT_FS,
        integrator="verlet",
        frame_interval=interval,
        checkpoint_interval=n_steps,
        criteria=StabilityCriteria(rules=("nonfinite",)),
        device=device,
        progress=progress,
    )
    rows = []
    for s, (name, failure) in enumerate(zip(names, summary.failures, strict=True)):
        data = read_system(path, s)
        n_atoms = len(data["numbers"])
        dof = max(3 * n_atoms - 3, 1)
        total = data["energy"] + 0.5 * dof * units.kB * data["temperature_kin"]
        # LAMBench logs every ``interval`` steps: a last frame off that grid (run_md stores one) stays out
        live = (data["step"] < (failure.step if failure is not None else np.inf)) & (data["step"] % interval == 0)
        completed = failure is None and bool(np.all(total[live] < ENERGY_LIMIT_EV))
        drift = scores.lambench_energy_drift(
            data["step"][live], total[live], dt_fs=NVE_DT_FS, n_atoms=n_atoms, n_steps=n_steps
        )
        reported = None if drift is None else drift * scores.LAMBENCH_TIME_FACTOR
        rows.append(
            {
                "molecule": name,
                "n_atoms": n_atoms,
                "n_steps": n_steps,
                "completed": completed,
                "drift_ev_atom_ps": drift,
                "lambench_reported_drift": reported,
                "lambench_instability": scores.lambench_instability(reported, completed),
            }
        )
    return pd.DataFrame(rows)


class _FrozenStep:
    """MD callback: the first step at which each system stopped being integrated (non-finite)."""

    def __init__(self) -> None:
        self.steps: dict[int, int] = {}

    def __call__(self, state) -> None:
        for s in (~state.alive).nonzero().flatten().tolist():
            self.steps.setdefault(s, int(state.step))


def heating_ramp_scores(
    potential: Potential,
    molecules: Mapping[str, Atoms],
    workdir: Path,
    *,
    ramp_ps: float,
    dt_fs: float,
    friction_per_fs: float,
    seed: int = 0,
    criteria: StabilityCriteria | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """MLIP Arena's heating ramp per molecule (Langevin here, Nosé–Hoover there): the fraction of steps
    completed before the numbers turn non-finite; failed systems go on (``after_failure="continue"``),
    so the audit's own rules also say at which ramp temperature they first fire."""
    n_steps = max(1, int(round(ramp_ps * 1000.0 / dt_fs)))
    schedule = scores.heating_ramp(n_steps)
    names = list(molecules)
    path = Path(workdir) / "ramp.h5"
    checkpoint_path_for(path).unlink(missing_ok=True)
    frozen = _FrozenStep()
    _reset(potential)
    summary = run_md(
        potential,
        [molecules[n] for n in names],
        n_steps=n_steps,
        path=path,
        temperatures=float(schedule[0]),
        seeds=[_seed(seed, "ramp", n) for n in names],
        dt_fs=dt_fs,
        friction=friction_per_fs,
        frame_interval=max(1, n_steps // 100),
        checkpoint_interval=n_steps,
        criteria=criteria,
        device=device,
        progress=progress,
        callback=frozen,
        after_failure="continue",
        temperature_schedule=schedule,
    )
    rows = []
    for s, (name, failure) in enumerate(zip(names, summary.failures, strict=True)):
        # the state at the step it froze is the first non-finite one; the step before was whole
        final = n_steps if s not in frozen.steps else max(frozen.steps[s] - 1, 0)
        rows.append(
            {
                "molecule": name,
                "n_steps": n_steps,
                "final_step": final,
                "arena_fraction": scores.mlip_arena_fraction(final, n_steps),
                "first_failure_rule": "" if failure is None else failure.rule,
                "first_failure_K": np.nan if failure is None else float(schedule[failure.step]),
            }
        )
    return pd.DataFrame(rows)
