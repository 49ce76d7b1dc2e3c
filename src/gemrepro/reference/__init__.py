"""Reference methods that label structures with energies and forces (GFN2-xTB, PBE0).

Every method returns a :class:`ReferenceResult`; a failed or unconverged calculation is a
result with ``converged=False``, never an exception. Only invalid input raises ``ValueError``.
"""

from gemrepro.reference.base import ReferenceResult
from gemrepro.reference.free_atoms import (
    GROUND_STATE_MULTIPLICITY,
    FreeAtomError,
    atomization_energy,
    free_atom_energies,
    free_atom_energy,
)
from gemrepro.reference.method import ReferenceMethod, default_multiplicity, validate_structure
from gemrepro.reference.pbe0 import PBE0
from gemrepro.reference.registry import METHODS, get_method
from gemrepro.reference.xtb import GFN2xTB

__all__ = [
    "GROUND_STATE_MULTIPLICITY",
    "METHODS",
    "PBE0",
    "FreeAtomError",
    "GFN2xTB",
    "ReferenceMethod",
    "ReferenceResult",
    "atomization_energy",
    "default_multiplicity",
    "free_atom_energies",
    "free_atom_energy",
    "get_method",
    "validate_structure",
]
