"""Free-atom energies and atomization energies, as QM7-X defines its ``eAT`` labels.

Models learn atomization energies (total energy minus isolated atoms of the same method), so
each free atom is computed once per method and settings and cached as its own artifact:
adding an element to the chemistry never recomputes the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from gemrepro.cache.artifacts import get_or_create
from gemrepro.reference.method import ReferenceMethod, describe_element

STAGE = "free-atoms"
PAYLOAD = "energy.json"

#: Spin multiplicity of each atom's ground state (Hund's rules), H to Ar plus Br and I.
GROUND_STATE_MULTIPLICITY: dict[int, int] = {
    1: 2,
    2: 1,
    3: 2,
    4: 1,
    5: 2,
    6: 3,
    7: 4,
    8: 3,
    9: 2,
    10: 1,
    11: 2,
    12: 1,
    13: 2,
    14: 3,
    15: 4,
    16: 3,
    17: 2,
    18: 1,
    35: 2,
    53: 2,
}


class FreeAtomError(RuntimeError):
    """A free-atom calculation did not converge: every atomization energy would be wrong."""


def free_atom_energy(
    method: ReferenceMethod,
    element: int,
    multiplicity: int | None = None,
    root: str | os.PathLike | None = None,
) -> float:
    """Energy (eV) of one isolated atom in its ground-state multiplicity, cached as an artifact."""
    z = int(element)
    if multiplicity is None:
        if z not in GROUND_STATE_MULTIPLICITY:
            raise ValueError(
                f"no ground-state multiplicity tabulated for {describe_element(z)}; pass multiplicities={{{z}: ...}}"
            )
        multiplicity = GROUND_STATE_MULTIPLICITY[z]
    params = {"method": method.name, "options": method.options(), "element": z, "multiplicity": int(multiplicity)}

    def build(folder: Path) -> dict:
        result = method.compute(np.array([z]), np.zeros((1, 3)), charge=0, multiplicity=multiplicity)
        if not result.converged:
            raise FreeAtomError(
                f"free {describe_element(z)} atom (multiplicity {multiplicity}) "
                f"failed with {method.name}: {result.error}"
            )
        payload = {
            "element": z,
            "multiplicity": int(multiplicity),
            "energy_eV": result.energy,
            "wall_time_s": result.wall_time,
        }
        (folder / PAYLOAD).write_text(json.dumps(payload, indent=2))
        return {"energy_eV": result.energy}

    artifact = get_or_create(STAGE, params, build, root=root)
    return float(json.loads(artifact.file(PAYLOAD).read_text())["energy_eV"])


def free_atom_energies(
    method: ReferenceMethod,
    elements: Iterable[int],
    root: str | os.PathLike | None = None,
    multiplicities: Mapping[int, int] | None = None,
) -> dict[int, float]:
    """``{Z: energy in eV}`` of the free atoms of ``elements`` (duplicates are fine).

    ``multiplicities`` overrides :data:`GROUND_STATE_MULTIPLICITY` for chosen elements;
    ``root`` overrides the artifact folder. Raises :class:`FreeAtomError` if an atom fails.
    """
    overrides = dict(multiplicities or {})
    unique = sorted({int(z) for z in elements})
    return {z: free_atom_energy(method, z, overrides.get(z), root) for z in unique}


def atomization_energy(total_energy: float, numbers: Iterable[int], free_atoms: Mapping[int, float]) -> float:
    """Total energy minus the free-atom energies of its atoms (eV; negative for a bound molecule)."""
    z = np.array(numbers if isinstance(numbers, np.ndarray) else list(numbers), dtype=np.int64).ravel()
    missing = sorted({int(a) for a in z} - {int(a) for a in free_atoms})
    if missing:
        raise ValueError(
            f"no free-atom energy for {', '.join(describe_element(a) for a in missing)}; "
            f"have Z={sorted(int(a) for a in free_atoms)}"
        )
    return float(total_energy) - float(sum(free_atoms[int(a)] for a in z))
