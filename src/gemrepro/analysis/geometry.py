"""Is a structure a molecule one can simulate? Checked on input, before any step is taken.

A start structure with non-finite coordinates, or with two atoms on top of each other, is bad
input: fed to MD it breaks the run at step 0, and the stability rules would then report the
*model* as failed (rule ``nonfinite`` or ``clash`` at 0 ps). The threshold is the clash rule's
(:class:`~gemrepro.analysis.stability.StabilityCriteria`, half the sum of covalent radii), so a
structure is accepted exactly when the detector would call its first frame intact.
"""

from __future__ import annotations

import numpy as np
from ase.data import chemical_symbols

from gemrepro.analysis.stability import StabilityCriteria, closest_pair

#: Atoms closer than this fraction of the sum of their covalent radii make a structure unusable.
MIN_DISTANCE_FACTOR = StabilityCriteria().clash_factor


def element_list(numbers) -> str:
    """``"H, C, F"``: the chemical symbols of atomic numbers, each once, by atomic number."""
    return ", ".join(chemical_symbols[z] for z in sorted({int(z) for z in numbers}))


def geometry_problem(numbers, positions, min_distance_factor: float = MIN_DISTANCE_FACTOR) -> str | None:
    """What makes ``positions`` (Å) unusable as a molecule, in words naming the atoms; None if nothing.

    Atoms are numbered from 0 as in the file. Checks: shapes agree, every coordinate is finite,
    no pair of atoms is closer than ``min_distance_factor`` times the sum of their covalent radii.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (len(numbers), 3):
        return f"positions have shape {positions.shape}, expected ({len(numbers)}, 3)"
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if len(bad):
        shown = ", ".join(str(int(i)) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        return f"non-finite coordinates (NaN or inf) at atom(s) {shown}"
    ratio, pair = closest_pair(numbers, positions)
    if float(ratio) < min_distance_factor:
        i, j = (int(k) for k in pair)
        distance = float(np.linalg.norm(positions[i] - positions[j]))
        return (
            f"atoms {i} ({chemical_symbols[numbers[i]]}) and {j} ({chemical_symbols[numbers[j]]}) are "
            f"{distance:.3f} Å apart, closer than {min_distance_factor:g} x the sum of their covalent radii"
        )
    return None


def check_geometry(numbers, positions, source: str, min_distance_factor: float = MIN_DISTANCE_FACTOR) -> None:
    """Raise a one-line ``ValueError`` naming ``source`` (the input, and the frame) if the structure is unusable."""
    problem = geometry_problem(numbers, positions, min_distance_factor)
    if problem is not None:
        raise ValueError(f"{source}: {problem}; not a structure to simulate")
