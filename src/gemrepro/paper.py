"""The papers' published numbers (``../shared/PAPER.md``), printed beside ours, never plotted as ours.

Everything here is a value reported by Stocker et al. (2022), Maheshwari et al. (2025) or the
QM7-X paper, with its source; chapters label these as "paper".
"""

from __future__ import annotations

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
