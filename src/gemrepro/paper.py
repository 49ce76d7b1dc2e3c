"""The papers' published numbers (``../shared/PAPER.md``), printed beside ours, never plotted as ours.

Everything here is a value reported by Stocker et al. (2022), Maheshwari et al. (2025) or the
QM7-X paper, with its source; chapters label these as "paper".
"""

from __future__ import annotations

from typing import Any

import pandas as pd

# QM7-X as described in Stocker et al. (2022), Sec. "Methods", and the QM7-X paper.
QM7X = {
    "configurations": 4_200_000,
    "molecules (formulas)": 6_950,
    "equilibrium structures": 41_500,
    "non-equilibrium structures per equilibrium structure": 100,
    "atoms per molecule": (4, 23),
    "max heavy atoms": 7,
    "elements": ("H", "C", "N", "O", "S", "Cl"),
    "reference method": "PBE0+MBD",
}

# Free-atom reference energies of QM7-X (PBE0+MBD, eV).
QM7X_FREE_ATOMS_EV = {
    1: -13.641404161,
    6: -1027.592489146,
    7: -1484.274819088,
    8: -2039.734879322,
    16: -10828.707468187,
    17: -12516.444619523,
}

# Splits of Stocker et al.: test set and (train, validation) sizes.
SPLITS = {"test": 10_100, "train": (3_200, 32_000, 320_000, 3_200_000), "validation": (800, 8_000, 80_000, 800_000)}

# Fig. 1 (GemNet on QM7-X test set, eV and eV/Å) and its peer.
LEARNING_CURVE = {
    "3.2M": {"forces_mae": 0.0043, "energy_mae": 0.01},
    "3.2k": {"forces_mae": 0.035, "energy_mae": 0.05},
    "SpookyNet (4.2M)": {"forces_mae": 0.015},
}

# Training-set sizes behind the labels of ``LEARNING_CURVE`` (Stocker et al., Fig. 1).
LEARNING_CURVE_SIZES = {"3.2k": 3_200, "3.2M": 3_200_000}


def learning_curve_points() -> pd.DataFrame:
    """The GemNet points of Fig. 1 as a table: ``train_size``, ``energy_mae`` (eV), ``forces_mae`` (eV/Å)."""
    rows = [
        {"label": label, "train_size": size, **LEARNING_CURVE[label]} for label, size in LEARNING_CURVE_SIZES.items()
    ]
    return pd.DataFrame(rows).sort_values("train_size", ignore_index=True)


# Fig. 2b-d of Stocker et al.: 1 ns NVT of 20 molecules at 300 / 600 / 1200 K, 72 frames per
# trajectory relabelled with PBE0+MBD. Errors in eV (AE) and eV/Å (forces).
TEMPERATURE_SWEEP: dict[str, Any] = {
    "3.2k AE MAE at 300 K (lower bound)": 10.0,  # "> 10 eV already at 300 K"
    "3.2M AE MAE at 1200 K": 0.0284,
    "shape": "exhaustive models (320k, 3.2M) rise only slightly with T; sparse ones (3.2k, 32k) dramatically",
}
DFT_CONVERGENCE = {
    "320k": {"converged_percent": 100.0},
    "3.2M": {"converged_percent": 100.0},
    "3.2k at 1200 K": {"converged_percent": 50.0},  # "about half"
}


def temperature_sweep_points() -> pd.DataFrame:
    """Fig. 2b's stated numbers: ``quantity``, ``temperature`` (K), ``value`` (eV), ``label``, ``bound``."""
    return pd.DataFrame(
        [
            {"quantity": "energy_mae", "temperature": 300.0, "value": 10.0, "label": "3.2k (> 10 eV)", "bound": ">"},
            {"quantity": "energy_mae", "temperature": 1200.0, "value": 0.0284, "label": "3.2M", "bound": ""},
        ]
    )


def dft_convergence_points() -> pd.DataFrame:
    """Fig. 2d's stated numbers: ``model`` label, ``temperature`` (K), ``converged_percent``."""
    rows = [
        {"model": m, "temperature": t, "converged_percent": 100.0}
        for m in ("320k", "3.2M")
        for t in (300.0, 600.0, 1200.0)
    ]
    rows.append({"model": "3.2k", "temperature": 1200.0, "converged_percent": 50.0})
    return pd.DataFrame(rows)


# Fig. 2e of Stocker et al.: the 3.2k model at 600 K stays accurate for ~700 ps of a 1 ns
# trajectory, then a bond dissociates and the AE error exceeds 20 eV.
HOLES = {
    "model": "3.2k",
    "temperature": 600.0,
    "time before the hole (ps)": 700.0,
    "trajectory length (ps)": 1000.0,
    "AE error after the hole (eV, lower bound)": 20.0,
}

# Cross-trajectory comparison of Stocker et al.: one molecule at 1200 K, the 3.2k model's force
# MAE (eV/Å) on its own trajectory vs on the 3.2M model's trajectory.
CROSS_TRAJECTORY = {"own trajectory": 6.8, "exhaustive model's trajectory": 0.16}

# Fig. 3 of Stocker et al.: the 3.2M model on four larger molecules, 1 ns at 1200 K.
OUT_OF_SAMPLE: dict[str, Any] = {
    "molecules": ("paracetamol", "4H-furo[2,3-c]pyrrol-6-amine", "histidine", "Ser-Trp-Leu"),
    "heavy atoms": (9, 29),
    "temperature": 1200.0,
    "tripeptide mean AE shift (eV)": 0.47,
    "std of AE error (eV)": 0.045,
    "R2": 0.998,
    "force MAE range (eV/Å)": (0.012, 0.036),
    "AE errors": "systematically positive",
    "instabilities": 0,
    "trajectory length (ps)": 1000.0,
    "cause": "missing long-range interactions (dispersion, electrostatics) beyond the cutoff",
}

# Maheshwari et al. (arXiv:2506.14850), from the abstract (the seed): GemNet-T on MD17 (10k) from
# scratch vs pretrained on OC20 and fine-tuned on MD17 (10k). The abstract names no molecule,
# temperature, thermostat, run length or failure rule: nothing below MDSIM is theirs.
PRETRAINING: dict[str, Any] = {
    "force MAE, both models (eV/Å)": 0.005,
    "stable-time ratio, pretrained / scratch (up to)": 3.0,
    "fine-tuning frames": 10_000,
}

# The MD stability protocol of MDsim: Fu et al., "Forces are Not Enough" (TMLR 2023). These values
# are Fu et al.'s. The book adopts them for the pretraining experiment as its own choice; the
# seed does not say that Maheshwari et al. used them.
MDSIM = {
    "temperature": 500.0,
    "dt (fs)": 0.5,
    "trajectory length (ps)": 300.0,
    "bond deviation (Å)": 0.5,
    "h(r) bins, max distance (Å)": (500, 10.0),
}

# Computational scale of Stocker et al.
CAMPAIGN = {"MD (ns)": 245.0, "MD steps": 500_000_000, "training": "several GPU weeks"}
