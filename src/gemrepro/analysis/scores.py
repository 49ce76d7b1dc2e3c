"""The field's stability scores, each from its published definition, on one trajectory at a time.

Four groups publish a number for "does MD with this potential stay physical"; each is computed
here from its own definition so ``gemrepro stress`` can print them next to its survival curves:

* **MDsim** (Fu et al., "Forces are Not Enough: Benchmark and Critical Evaluation for Machine
  Learning Force Fields with Molecular Simulations", TMLR 2023, arXiv:2210.07237; code
  github.com/kyonofx/MDsim): a simulation becomes unstable at the first time ``T`` with
  ``max_(i,j) in B | ||x_i(T) - x_j(T)|| - b_ij | > 0.5 Å`` over the bonds ``B`` with equilibrium
  lengths ``b_ij``; its *stability* is that time. MD17 protocol: 300 ps, 500 K, Nosé–Hoover, 0.5 fs.
* **MLIPAudit** (InstaDeep, github.com/instadeepai/mlipaudit, ``benchmarks/stability`` and
  ``utils/stability.py``): an *explosion* frame (kinetic temperature above target + 10 000 K, else
  the first frame whose temperature is over 100 times the previous one), and, only when it did not
  explode, a *drifting-hydrogen* frame (a hydrogen whose bond to a heavy atom broke, > 2.5 Å, and
  that from then on stays > 2.5 Å from every heavy atom). Score per structure (mlipaudit 0.1.8):
  1 when neither, ``0.5 + 0.5 min(drift/n, 1)`` for a drift, ``0.5 min(explosion/n, 1)`` for an
  explosion, ``n = num_steps // snapshot_interval`` the expected frames; 0 for a run that crashed;
  the benchmark score is the mean. Protocol: 100 000 steps, a frame every 100, 300 K.
* **LAMBench** (deepmodeling/LAMBench, ``tasks/calculator/nve_md/nve_md.py`` and
  ``metrics/vishelper/metrics_calculations.py``): NVE velocity Verlet, 10 000 steps of 1 fs from
  300 K; the total energy, logged every ``n_steps // 100`` steps, is fitted by least squares
  after a 20 % warm-up, and the drift is ``|slope| / n_atoms``, reported as eV/atom/ps. Instability
  error per system: 5 when the run did not finish, else ``clip(log10(drift / 5e-4), 0, None)``,
  5 again from ``log10(...) >= 5``; averaged over systems (0 best, 5 worst).
* **MLIP Arena** (atomind-ai/mlip-arena, ``tasks/stability/flow.py``, ``tasks/md.py``,
  ``tasks/stability/analysis.py``): NVT heating from 300 K to 3000 K over 10 ps, the thermostat
  target interpolated linearly per step (``T_k = 300 + 2700 k / n_steps``), 0.5 fs steps for
  systems with hydrogen (2 fs otherwise), Nosé–Hoover with a 25 fs time constant; the metric is the
  fraction of the target steps completed, ``final_step / target_steps``, with ``final_step`` the
  last frame whose energy is finite (a crashed or NaN run stops counting).

``tests/field_scores_reference.json`` holds numbers the packages' own code produced (mlipaudit
0.1.8, mlip-arena 0.2.0, LAMBench's ``nve_simulation_single``) on trajectories stored beside them;
``tests/stress/test_scores.py`` checks these functions against them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import units

from gemrepro.analysis.stability import bond_deviation, hydrogen_heavy_distance, reference_bonds

MDSIM_TOLERANCE_A = 0.5
MLIPAUDIT_CUTOFF_A = 2.5
MLIPAUDIT_TEMPERATURE_MARGIN_K = 10_000.0
MLIPAUDIT_JUMP_FACTOR = 100.0
LAMBENCH_LAMBDA_0 = 5e-4  # eV/atom/ps, LAMBench's drift scale
LAMBENCH_WORST = 5.0
LAMBENCH_WARMUP = 0.2
LAMBENCH_TIME_FACTOR = 1.0 / units.fs
"""LAMBench fits the energy against ``steps * timestep * ase.units.fs``, which is time in ASE units
(1 ASE unit = 10.18 fs), and multiplies the slope by 1000 to "eV/atom/ps"; the number it reports is
therefore ``1 / ase.units.fs`` (10.18) times the drift in true eV/atom/ps."""
ARENA_START_K = 300.0
ARENA_STOP_K = 3000.0


def _positions(positions: Any) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions: expected shape (frames, atoms, 3), got {positions.shape}")
    return positions


def mdsim_unstable_frame(
    numbers: Any,
    positions: Any,
    *,
    reference_positions: Any = None,
    tolerance: float = MDSIM_TOLERANCE_A,
    covalent_factor: float = 1.2,
) -> int:
    """First frame whose largest bond-length deviation exceeds ``tolerance`` (MDsim), or -1.

    Bonds and their equilibrium lengths come from ``reference_positions`` (default: frame 0) by
    covalent radii; MDsim takes them from the reference data set. Non-finite lengths count as
    deviating: a NaN geometry is not stable.
    """
    positions = _positions(positions)
    reference = positions[0] if reference_positions is None else reference_positions
    bonds, lengths = reference_bonds(numbers, reference, covalent_factor)
    if len(bonds) == 0 or len(positions) == 0:
        return -1
    deviation = np.nan_to_num(bond_deviation(positions, bonds, lengths), nan=np.inf).max(axis=-1)
    unstable = deviation > tolerance
    return int(np.argmax(unstable)) if unstable.any() else -1


def mlipaudit_explosion_frame(temperatures: Any, target_K: float) -> int:
    """MLIPAudit's explosion frame: the first frame hotter than ``target_K`` + 10 000 K, else the
    first frame more than 100 times hotter than the one before, else -1 (``find_explosion_frame``)."""
    temps = np.asarray(temperatures, dtype=np.float64)
    if temps.ndim != 1:
        raise ValueError(f"temperatures: expected one kinetic temperature per frame, got shape {temps.shape}")
    hot = np.flatnonzero(temps > target_K + MLIPAUDIT_TEMPERATURE_MARGIN_K)
    if len(hot):
        return int(hot[0])
    jumps = np.flatnonzero(temps[1:] > MLIPAUDIT_JUMP_FACTOR * temps[:-1])
    return int(jumps[0] + 1) if len(jumps) else -1


def mlipaudit_drift_frame(
    numbers: Any,
    positions: Any,
    *,
    reference_positions: Any = None,
    cutoff: float = MLIPAUDIT_CUTOFF_A,
    covalent_factor: float = 1.2,
) -> int:
    """MLIPAudit's drifting-hydrogen frame, or -1 (``detect_hydrogen_drift``).

    A hydrogen bonded to a heavy atom in the start structure (covalent radii here; MLIPAudit reads
    the bonds from a PDB topology) whose bond exceeds ``cutoff`` in some frame is *drifting* in a
    frame where it is farther than ``cutoff`` from every heavy atom; its drift frame is the start of
    the final run of drifting frames that lasts to the end of the trajectory. The result is the
    earliest such frame over all hydrogens.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = _positions(positions)
    reference = positions[0] if reference_positions is None else reference_positions
    bonds, _ = reference_bonds(numbers, reference, covalent_factor)
    heavy_h = bonds[(numbers[bonds[:, 0]] == 1) != (numbers[bonds[:, 1]] == 1)] if len(bonds) else bonds
    if len(heavy_h) == 0:
        return -1
    lengths = np.linalg.norm(positions[:, heavy_h[:, 0]] - positions[:, heavy_h[:, 1]], axis=-1)
    broken = (lengths > cutoff).any(axis=0)
    if not broken.any():
        return -1
    pairs = heavy_h[broken]
    candidates = np.unique(np.where(numbers[pairs[:, 0]] == 1, pairs[:, 0], pairs[:, 1]))
    hydrogens, nearest = hydrogen_heavy_distance(numbers, positions)
    drifting = nearest[:, np.isin(hydrogens, candidates)] > cutoff  # (frames, candidates)
    to_the_end = np.logical_and.accumulate(drifting[::-1], axis=0)[::-1]
    if not to_the_end.any():
        return -1
    first = np.where(to_the_end.any(axis=0), np.argmax(to_the_end, axis=0), len(positions))
    return int(first.min())


def mlipaudit_score(explosion_frame: int, drift_frame: int, n_expected_frames: int) -> float:
    """MLIPAudit's per-structure score (``StabilityBenchmark._calculate_score``, mlipaudit 0.1.8): 1 when
    stable, ``0.5 + 0.5 min(drift / n, 1)`` after a hydrogen drift, ``0.5 min(explosion / n, 1)`` after an
    explosion, with ``n`` the frames the run was meant to write (``num_steps // snapshot_interval``)."""
    if not n_expected_frames > 0:
        raise ValueError(f"n_expected_frames: expected a positive number of frames, got {n_expected_frames!r}")
    if explosion_frame == -1 and drift_frame == -1:
        return 1.0
    if explosion_frame == -1:
        return 0.5 + 0.5 * min(drift_frame / n_expected_frames, 1.0)
    return 0.5 * min(explosion_frame / n_expected_frames, 1.0)


def mlipaudit_stability(
    numbers: Any,
    positions: Any,
    temperatures: Any,
    target_K: float,
    *,
    n_expected_frames: int,
    reference_positions: Any = None,
) -> dict:
    """Explosion frame, drift frame (checked only without an explosion, as MLIPAudit does) and score."""
    positions = _positions(positions)
    explosion = mlipaudit_explosion_frame(temperatures, target_K)
    drift = -1
    if explosion == -1:
        drift = mlipaudit_drift_frame(numbers, positions, reference_positions=reference_positions)
    score = mlipaudit_score(explosion, drift, n_expected_frames)
    return {"explosion_frame": explosion, "drift_frame": drift, "score": score}


def lambench_energy_drift(
    steps: Any, total_energies: Any, *, dt_fs: float, n_atoms: int, n_steps: int, warmup: float = LAMBENCH_WARMUP
) -> float | None:
    """LAMBench's NVE energy drift in true eV/atom/ps (``nve_simulation_single``), or ``None``.

    A least-squares line through the total energies of the frames at or after the warm-up step
    (``int(warmup * n_steps)`` rounded down to LAMBench's log interval ``max(1, n_steps // 100)``);
    ``None`` with fewer than two such frames. Multiply by :data:`LAMBENCH_TIME_FACTOR` for the number
    LAMBench's code prints.
    """
    steps = np.asarray(steps, dtype=np.float64)
    energies = np.asarray(total_energies, dtype=np.float64)
    if steps.shape != energies.shape or steps.ndim != 1:
        raise ValueError(
            f"steps/total_energies: expected two 1-d arrays of one length, got {steps.shape} and {energies.shape}"
        )
    if not (int(n_atoms) > 0 and int(n_steps) > 0 and dt_fs > 0):
        raise ValueError(f"n_atoms/n_steps/dt_fs: expected positive values, got {n_atoms!r}, {n_steps!r}, {dt_fs!r}")
    interval = max(1, int(n_steps) // 100)
    start = (int(warmup * int(n_steps)) // interval) * interval
    keep = steps >= start
    if keep.sum() < 2:
        return None
    times_ps = steps[keep] * dt_fs / 1000.0
    slope = np.polyfit(times_ps, energies[keep], 1)[0]
    return float(abs(slope) / int(n_atoms))


def lambench_instability(
    reported_drift: float | None, completed: bool, *, lambda_0: float = LAMBENCH_LAMBDA_0
) -> float:
    """LAMBench's instability error of one NVE run (``_calculate_instability_error``), 0 best, 5 worst.

    ``reported_drift`` is the number LAMBench's code reports (true eV/atom/ps times
    :data:`LAMBENCH_TIME_FACTOR`); ``completed`` says whether the run reached all its steps.
    """
    if not completed or reported_drift is None or not np.isfinite(reported_drift):
        return LAMBENCH_WORST
    if reported_drift <= 0:
        return 0.0
    error = float(np.log10(reported_drift / lambda_0))
    return LAMBENCH_WORST if error >= LAMBENCH_WORST else max(error, 0.0)


def heating_ramp(n_steps: int, start_K: float = ARENA_START_K, stop_K: float = ARENA_STOP_K) -> np.ndarray:
    """MLIP Arena's linear thermostat schedule, one target per step ``0..n_steps`` (K)."""
    if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 1):
        raise ValueError(f"n_steps: expected a positive integer, got {n_steps!r}")
    return start_K + (stop_K - start_K) * np.arange(n_steps + 1) / n_steps


def final_valid_step(steps: Any, energies: Any) -> int:
    """The last step whose energy is finite, as MLIP Arena reads a trajectory (0 when none is)."""
    steps = np.asarray(steps, dtype=np.int64)
    valid = np.isfinite(np.asarray(energies, dtype=np.float64))
    return int(steps[valid][-1]) if valid.any() else 0


def mlip_arena_fraction(final_step: int, target_steps: int) -> float:
    """MLIP Arena's stability metric: the fraction of the target steps completed."""
    if not target_steps > 0:
        raise ValueError(f"target_steps: expected a positive number of steps, got {target_steps!r}")
    if not 0 <= final_step <= target_steps:
        raise ValueError(f"final_step: expected a step in [0, {target_steps}], got {final_step!r}")
    return final_step / target_steps
