"""D4 dispersion of GFN2-xTB split into atom pairs, to ask which part lies beyond a model's cutoff.

A local model (GemNet: every energy term built from neighbours within a cutoff) cannot see the
dispersion between atoms farther apart than its receptive field. To measure that part we need
the dispersion energy *per pair*, which tblite does not report; the ``dftd4`` library does, with
GFN2-xTB's own damping parameters (s6, s8, a1, a2, s9, read from tblite's parameter set).

This is an approximation of GFN2-xTB's dispersion: inside GFN2-xTB the D4 term is
self-consistent (its C6 coefficients follow the tight-binding Mulliken charges), whereas
``dftd4`` scales them with electronegativity-equilibration charges. The totals agree to a few
per cent on organic molecules; the exact total without D4 comes from ``GFN2xTB(dispersion=False)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from ase.units import Bohr, Hartree
from dftd4.interface import DampingParam, DispersionModel

from gemrepro.reference.xtb import gfn2_parameters

__all__ = ["d4_energy", "d4_pair_energies", "dispersion_beyond", "gfn2_d4_damping"]


@lru_cache(maxsize=1)
def _damping() -> tuple[tuple[str, float], ...]:
    d4 = gfn2_parameters()["dispersion"]["d4"]
    return tuple((name, float(d4[name])) for name in ("s6", "s8", "a1", "a2", "s9"))


def gfn2_d4_damping() -> dict[str, float]:
    """GFN2-xTB's rational-damping D4 parameters (s6, s8, a1, a2, s9) as tblite ships them."""
    return dict(_damping())


def _checked(numbers: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(numbers)
    r = np.asarray(positions, dtype=np.float64)
    if z.ndim != 1 or z.size == 0 or not np.issubdtype(z.dtype, np.integer):
        raise ValueError(f"numbers: expected a non-empty 1-d integer array, got shape {z.shape}, dtype {z.dtype}")
    if r.shape != (z.size, 3) or not np.all(np.isfinite(r)):
        raise ValueError(f"positions: expected finite coordinates of shape ({z.size}, 3) in Å, got shape {r.shape}")
    return z.astype(np.int32), r


def d4_pair_energies(numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> np.ndarray:
    """Symmetric (atoms, atoms) matrix of D4 pair energies (eV) with GFN2-xTB's damping.

    Two-body terms and the pairwise share of the three-body (ATM) term together; the matrix sums
    to the D4 energy of the molecule. Atoms on their own have no dispersion energy.
    """
    z, r = _checked(numbers, positions)
    model = DispersionModel(z, r / Bohr, charge=float(charge))
    pairs = model.get_pairwise_dispersion(DampingParam(**gfn2_d4_damping()))
    return (np.asarray(pairs["additive pairwise energy"]) + np.asarray(pairs["non-additive pairwise energy"])) * Hartree


def d4_energy(numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> float:
    """D4 dispersion energy (eV, negative) of one structure with GFN2-xTB's damping."""
    return float(d4_pair_energies(numbers, positions, charge).sum())


def dispersion_beyond(
    numbers: np.ndarray, positions: np.ndarray, distances: list[float] | tuple[float, ...], charge: int = 0
) -> np.ndarray:
    """D4 energy (eV) of the atom pairs farther apart than each of ``distances`` (Å), one value each.

    With ``distances`` = (a model's cutoff, its receptive field) this is the dispersion the model
    cannot represent directly, and cannot represent at all.
    """
    cut = np.asarray(distances, dtype=np.float64)
    if cut.ndim != 1 or cut.size == 0 or not np.all(cut > 0):
        raise ValueError(f"distances: expected positive distances in Å, got {distances!r}")
    pairs = d4_pair_energies(numbers, positions, charge)
    r = np.asarray(positions, dtype=np.float64)
    separation = np.linalg.norm(r[:, None, :] - r[None, :, :], axis=-1)
    return np.array([float(pairs[separation > c].sum()) for c in cut])
