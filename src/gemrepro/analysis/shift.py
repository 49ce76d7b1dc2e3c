"""The systematic atomization-energy shift on molecules larger than the training data, and its cause.

Stocker et al. (Fig. 3) find that on molecules larger than anything in QM7-X the model's
atomization energies (AE) are off by a nearly constant amount — positive, 0.47 eV for a
tripeptide — while fluctuations are tracked closely (std 0.045 eV, R² = 0.998). They blame
interactions beyond the cutoff, dispersion first: a local model cannot see them.

Sign convention: the shift is model minus reference AE. A model that misses a binding
(negative) dispersion energy ``D`` predicts an AE too high by ``-D``, so ``-D`` is the shift
that dispersion can explain, and ``-D / shift`` the share it explains.

Input tables have one row per relabelled frame (:func:`gemrepro.studies.out_of_sample.out_of_sample`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["dispersion_share", "molecule_errors", "r_squared"]


def _require(table: pd.DataFrame, columns: Sequence[str], name: str = "frames") -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected an out-of-sample frames table")


def r_squared(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Squared Pearson correlation of model and reference energies.

    A constant shift leaves it unchanged: it measures how well the model follows the energy
    along the trajectory, which is how a paper can report R² = 0.998 beside a 0.47 eV shift.
    NaN for fewer than three pairs or a constant series.
    """
    x, y = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"energies: expected two 1-d arrays of equal length, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def molecule_errors(frames: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """Fig. 3's numbers per molecule, over its converged frames.

    Columns: ``molecule``, ``n_atoms``, ``n_frames``, ``mean_shift`` (mean AE error, eV),
    ``shift_std`` (its standard deviation, eV), ``r2`` (:func:`r_squared`), ``forces_mae``
    (eV/Å, over every force component) and ``stable`` (the trajectory did not fail).
    """
    _require(
        frames,
        (
            "molecule",
            "n_atoms",
            "model_energy",
            "reference_atomization_energy",
            "energy_error",
            "forces_mae",
            "converged",
        ),
    )
    _require(trajectories, ("molecule", "failed"), "trajectories")
    rows = []
    for molecule, group in frames[frames["converged"].astype(bool)].groupby("molecule", sort=False):
        rows.append(
            {
                "molecule": molecule,
                "n_atoms": int(group["n_atoms"].iloc[0]),
                "n_frames": len(group),
                "mean_shift": float(group["energy_error"].mean()),
                "shift_std": float(group["energy_error"].std(ddof=1)) if len(group) > 1 else float("nan"),
                "r2": r_squared(group["model_energy"].to_numpy(), group["reference_atomization_energy"].to_numpy()),
                # every frame of one molecule has the same atoms, so the mean of per-frame MAEs is the component MAE
                "forces_mae": float(group["forces_mae"].mean()),
            }
        )
    table = pd.DataFrame(
        rows, columns=["molecule", "n_atoms", "n_frames", "mean_shift", "shift_std", "r2", "forces_mae"]
    )
    failed = trajectories.groupby("molecule")["failed"].any()
    table["stable"] = [not bool(failed.get(m, True)) for m in table["molecule"]]
    return table.sort_values("n_atoms", ignore_index=True)


def dispersion_share(frames: pd.DataFrame) -> pd.DataFrame:
    """How much of each molecule's mean AE shift the dispersion it misses can explain.

    Columns: ``molecule``, ``n_atoms``, ``mean_shift`` (eV) and, for each dispersion part, the
    shift it explains (``missing_*``, eV, positive when it pushes the model's AE up) and its
    share of the mean shift (``share_*``):

    * ``total`` — the whole dispersion of the reference AE (with minus without the dispersion
      term): what a model that learned no dispersion at all would miss; an upper bound.
    * ``beyond_cutoff`` — D4 pairs farther apart than the model's cutoff: no single message
      of the model spans them.
    * ``beyond_receptive_field`` — pairs beyond what any chain of messages reaches: invisible
      to the model by construction.

    The model learned, on its small training molecules, the dispersion that such molecules have
    at these distances (little); a share near 1 means the missing pairs explain the shift.
    """
    parts = {
        "total": "dispersion_energy",
        "beyond_cutoff": "d4_beyond_cutoff",
        "beyond_receptive_field": "d4_beyond_receptive_field",
    }
    _require(frames, ("molecule", "n_atoms", "energy_error", "converged", *parts.values()))
    rows = []
    for molecule, group in frames[frames["converged"].astype(bool)].groupby("molecule", sort=False):
        shift = float(group["energy_error"].mean())
        row = {"molecule": molecule, "n_atoms": int(group["n_atoms"].iloc[0]), "mean_shift": shift}
        for part, column in parts.items():
            missing = -float(group[column].mean())
            row[f"missing_{part}"] = missing
            row[f"share_{part}"] = missing / shift if shift != 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).sort_values("n_atoms", ignore_index=True)
