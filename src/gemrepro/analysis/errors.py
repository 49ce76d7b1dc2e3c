"""Errors of a model on the frames it visited, and what the reference method made of them.

Stocker et al. (Fig. 2b-d) sample 72 frames uniformly from each MD trajectory, relabel them
with the reference method and report, per trajectory, the mean absolute error of the model's
atomization energy (eV) and forces (eV/Å), plus the share of reference calculations that
converged. A frame whose reference calculation failed has no label: it counts against the
converged fraction and is left out of the MAEs (as the paper could only compare converged DFT).

Input tables have one row per relabelled frame with at least ``energy_error`` (model minus
reference atomization energy, eV), ``forces_mae`` (eV/Å) and ``converged``; grouping columns
(``train_size``, ``molecule``, ``temperature``) are chosen by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gemrepro.analysis.stability import reference_bonds

TRAJECTORY = ("train_size", "molecule", "temperature")
"""Columns that name one trajectory of the temperature sweep."""


def force_mae(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute error over all force components (eV/Å), the papers' force metric."""
    predicted, reference = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    if predicted.shape != reference.shape or predicted.ndim != 2 or predicted.shape[-1] != 3:
        raise ValueError(
            f"forces: expected two (atoms, 3) arrays of equal shape, got {predicted.shape} and {reference.shape}"
        )
    return float(np.abs(predicted - reference).mean())


def _require(frames: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frames.columns]
    if missing:
        raise ValueError(f"frames: missing column(s) {missing}; expected a relabelled-frames table")


def trajectory_errors(frames: pd.DataFrame, by: Sequence[str] = TRAJECTORY) -> pd.DataFrame:
    """Per group (default: per trajectory): frames, converged frames and fraction, AE and force MAE.

    MAEs use converged frames with finite errors only; a group without any is NaN, not zero.
    """
    by = list(by)
    _require(frames, [*by, "energy_error", "forces_mae", "converged"])
    usable = frames["converged"].astype(bool) & np.isfinite(frames["energy_error"]) & np.isfinite(frames["forces_mae"])
    work = frames.assign(
        _usable=usable,
        _abs_energy=frames["energy_error"].abs().where(usable),
        _forces=frames["forces_mae"].where(usable),
    )
    grouped = work.groupby(by, sort=True)
    table = pd.DataFrame(
        {
            "n_frames": grouped.size(),
            "n_converged": grouped["converged"].sum().astype(int),
            "energy_mae": grouped["_abs_energy"].mean(),
            "forces_mae": grouped["_forces"].mean(),
        }
    )
    table["converged_fraction"] = table["n_converged"] / table["n_frames"]
    return table.reset_index()


def converged_percent(frames: pd.DataFrame, by: Sequence[str] = ("train_size", "temperature")) -> pd.DataFrame:
    """Per group: reference calculations, converged ones and their percentage (Fig. 2d)."""
    by = list(by)
    _require(frames, [*by, "converged"])
    grouped = frames.groupby(by, sort=True)["converged"]
    table = pd.DataFrame({"calculations": grouped.size(), "converged": grouped.sum().astype(int)})
    table["converged_percent"] = 100.0 * table["converged"] / table["calculations"]
    return table.reset_index()


def mean_over_molecules(
    trajectories: pd.DataFrame,
    by: Sequence[str] = ("train_size", "temperature"),
    columns: Sequence[str] = ("energy_mae", "forces_mae"),
) -> pd.DataFrame:
    """Mean of per-trajectory values over molecules (the opaque lines of Fig. 2b, c); NaNs skipped."""
    by = list(by)
    _require(trajectories, [*by, *columns])
    return trajectories.groupby(by, sort=True)[list(columns)].mean().reset_index()


def stable_fraction(trajectories: pd.DataFrame, by: Sequence[str] = ("train_size", "temperature")) -> pd.DataFrame:
    """Per group: trajectories, stable ones (no failure) and their fraction."""
    by = list(by)
    _require(trajectories, [*by, "failed"])
    grouped = trajectories.assign(_stable=~trajectories["failed"].astype(bool)).groupby(by, sort=True)["_stable"]
    table = pd.DataFrame({"trajectories": grouped.size(), "stable": grouped.sum().astype(int)})
    table["stable_fraction"] = table["stable"] / table["trajectories"]
    return table.reset_index()


def frame_geometry(
    numbers: np.ndarray, positions: np.ndarray, reference_positions: np.ndarray, covalent_factor: float = 1.2
) -> dict[str, float]:
    """How stretched or squeezed a frame is: shortest and longest start-structure bond, closest pair.

    Bonds are those of the start structure (covalent radii, as in the stability bond rule), so a
    dissociated bond shows as a long "bond"; ``min_distance`` is over all atom pairs and catches
    atoms pushed into each other, a classic reason for an SCF to fail.
    """
    positions = np.asarray(positions, dtype=float)
    if not np.all(np.isfinite(positions)):
        nan = float("nan")
        return {"shortest_bond": nan, "longest_bond": nan, "max_bond_deviation": nan, "min_distance": nan}
    bonds, lengths0 = reference_bonds(numbers, reference_positions, covalent_factor)
    lengths = np.linalg.norm(positions[bonds[:, 0]] - positions[bonds[:, 1]], axis=-1)
    i, j = np.triu_indices(len(positions), k=1)
    distances = np.linalg.norm(positions[i] - positions[j], axis=-1)
    return {
        "shortest_bond": float(lengths.min()) if len(lengths) else float("nan"),
        "longest_bond": float(lengths.max()) if len(lengths) else float("nan"),
        "max_bond_deviation": float(np.abs(lengths - lengths0).max()) if len(lengths) else float("nan"),
        "min_distance": float(distances.min()) if len(distances) else float("nan"),
    }
