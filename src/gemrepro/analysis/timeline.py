"""What happens along one trajectory: the bond-criterion signal and the errors frame by frame.

Stocker et al. (Fig. 2e) plot the atomization-energy error of a sparse model against simulation
time: flat for ~700 ps, then above 20 eV once a bond dissociates. The bond signal here is the
quantity the MDsim stability rule thresholds: the largest deviation of any start-structure bond
from its start length (Å); a trajectory is unstable from the first frame where it exceeds the
tolerance (0.5 Å). Putting both on one time axis shows that the error jumps when the geometry
leaves the bonded topology the model was trained on, not gradually.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gemrepro.analysis.stability import bond_deviation, reference_bonds

__all__ = ["bond_signal", "error_jump", "hole_onset", "trajectory_timeline"]


def bond_signal(
    numbers: np.ndarray, reference_positions: np.ndarray, positions: np.ndarray, covalent_factor: float = 1.2
) -> np.ndarray:
    """Largest ``|bond length - start length|`` (Å) per frame of ``positions (frames, atoms, 3)``.

    Bonds are those of ``reference_positions`` by covalent radii (the stability rule's bonds). A
    frame with a non-finite coordinate gets ``inf``: it is as broken as a frame can be.
    """
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 3 or positions.shape[1:] != (len(np.asarray(numbers)), 3):
        raise ValueError(f"positions: expected shape (frames, {len(np.asarray(numbers))}, 3), got {positions.shape}")
    bonds, lengths = reference_bonds(numbers, reference_positions, covalent_factor)
    if len(bonds) == 0:
        return np.zeros(len(positions))
    deviation = bond_deviation(positions, bonds, lengths).max(axis=-1)
    return np.where(np.isfinite(positions).all(axis=(1, 2)), deviation, np.inf)


def hole_onset(times_ps: np.ndarray, signal: np.ndarray, tolerance: float = 0.5) -> float:
    """First time (ps) at which ``signal`` exceeds ``tolerance``; ``nan`` when it never does."""
    times_ps, signal = np.asarray(times_ps, dtype=float), np.asarray(signal, dtype=float)
    if times_ps.ndim != 1 or times_ps.shape != signal.shape:
        raise ValueError(
            f"times_ps, signal: expected two 1-d arrays of equal length, got {times_ps.shape} and {signal.shape}"
        )
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance: expected a positive bond tolerance in Å, got {tolerance!r}")
    above = np.flatnonzero(signal > tolerance)
    return float(times_ps[above[0]]) if len(above) else float("nan")


def trajectory_timeline(
    trajectory: dict, labels: pd.DataFrame | None = None, covalent_factor: float = 1.2
) -> pd.DataFrame:
    """One row per stored frame: ``frame``, ``time_ps``, ``max_bond_deviation`` (Å), ``alive`` (still
    integrated), ``after_failure`` (at or after the failure the run recorded; when ``trajectory``
    has ``failed``), and, where ``labels`` (a relabelled-frames table with ``frame``) has the frame,
    its ``energy_error`` (eV), ``forces_mae`` (eV/Å) and ``converged``.

    ``trajectory`` is one system as :func:`gemrepro.md.trajectory.read_system` returns it.
    """
    missing = [k for k in ("numbers", "reference_positions", "positions", "time_ps", "alive") if k not in trajectory]
    if missing:
        raise ValueError(f"trajectory: missing field(s) {missing}; expected gemrepro.md.read_system output")
    signal = bond_signal(
        trajectory["numbers"], trajectory["reference_positions"], trajectory["positions"], covalent_factor
    )
    table = pd.DataFrame(
        {
            "frame": np.arange(len(signal)),
            "time_ps": np.asarray(trajectory["time_ps"], dtype=float),
            "max_bond_deviation": signal,
            "alive": np.asarray(trajectory["alive"], dtype=bool),
        }
    )
    if "failed" in trajectory:
        table["after_failure"] = np.asarray(trajectory["failed"], dtype=bool)
    if labels is None:
        return table
    columns = [c for c in ("energy_error", "forces_mae", "converged") if c in labels.columns]
    if "frame" not in labels.columns or not columns:
        raise ValueError("labels: expected a relabelled-frames table with 'frame' and 'energy_error' / 'forces_mae'")
    return table.merge(labels[["frame", *columns]], on="frame", how="left")


def error_jump(timeline: pd.DataFrame, failure_ps: float, column: str = "energy_error") -> dict[str, float]:
    """How the error changes at a failure: ``before``, the median |error| of the labelled frames
    before ``failure_ps``, and ``after``, the largest |error| from it on (NaN where no frame is).

    Frames whose reference calculation did not converge carry no error and are left out. The
    median before and the maximum after compare "typical while fine" with "how deep the hole is".
    """
    if column not in timeline.columns or "time_ps" not in timeline.columns:
        raise ValueError(f"timeline: expected columns 'time_ps' and {column!r} (trajectory_timeline with labels)")
    if not np.isfinite(failure_ps):
        raise ValueError(f"failure_ps: expected the finite time of a failure in ps, got {failure_ps!r}")
    usable = timeline[np.isfinite(timeline[column].astype(float))]
    if "converged" in usable.columns:
        usable = usable[usable["converged"].eq(True)]
    errors = usable[column].abs()
    before, after = errors[usable["time_ps"] < failure_ps], errors[usable["time_ps"] >= failure_ps]
    return {
        "before": float(before.median()) if len(before) else float("nan"),
        "after": float(after.max()) if len(after) else float("nan"),
    }
