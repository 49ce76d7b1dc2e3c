"""The contract every reference method keeps: check the input, never crash on the physics.

Bad *input* (an element the method cannot describe, coordinates that are not an ``(n, 3)``
array of finite numbers, an impossible spin state) is the caller's mistake and raises a
one-line ``ValueError`` before any work is done. A calculation that *fails* on valid input
(SCF not converged, an engine error) is an outcome the papers count, so ``compute`` returns it
as a :class:`ReferenceResult` with ``converged=False`` and never raises.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Set
from typing import ClassVar

import numpy as np
from ase.data import chemical_symbols

from gemrepro.reference.base import ReferenceResult


def describe_element(z: int) -> str:
    """``"O (Z=8)"`` for an element, ``"Z=0"`` for a number that names none (for messages)."""
    return f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}"


def default_multiplicity(numbers: np.ndarray, charge: int = 0) -> int:
    """Lowest spin multiplicity consistent with the electron count: singlet or doublet."""
    n_electrons = int(np.sum(numbers)) - charge
    return 1 if n_electrons % 2 == 0 else 2


def validate_structure(
    numbers: object,
    positions: object,
    charge: int,
    multiplicity: int | None,
    supported_elements: Set[int],
    method: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Checked ``(numbers, positions, multiplicity)``; a one-line ``ValueError`` otherwise."""
    z = np.asarray(numbers)
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"numbers must be a non-empty 1-D array of atomic numbers, got shape {z.shape}")
    if not np.issubdtype(z.dtype, np.integer):
        if not (np.issubdtype(z.dtype, np.number) and np.all(np.isfinite(z)) and np.all(z == np.round(z))):
            raise ValueError(f"numbers must be integers (atomic numbers), got dtype {z.dtype}")
    z = z.astype(np.int64)
    r = np.asarray(positions, dtype=np.float64)
    if r.shape != (z.size, 3):
        raise ValueError(f"positions must have shape ({z.size}, 3) to match numbers, got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("positions contain NaN or infinite coordinates")
    unsupported = sorted({int(a) for a in z} - set(supported_elements))
    if unsupported:
        names = ", ".join(describe_element(a) for a in unsupported)
        raise ValueError(f"{method} does not support element(s) {names}")
    if isinstance(charge, bool) or not isinstance(charge, (int, np.integer)):
        raise ValueError(f"charge must be an integer, got {charge!r}")
    n_electrons = int(z.sum()) - int(charge)
    if n_electrons < 0:
        raise ValueError(f"charge {charge} leaves a negative number of electrons ({n_electrons})")
    if multiplicity is None:
        multiplicity = default_multiplicity(z, int(charge))
    if isinstance(multiplicity, bool) or not isinstance(multiplicity, (int, np.integer)) or multiplicity < 1:
        raise ValueError(f"multiplicity must be a positive integer, got {multiplicity!r}")
    unpaired = int(multiplicity) - 1
    if unpaired > n_electrons or (n_electrons - unpaired) % 2:
        raise ValueError(
            f"multiplicity {multiplicity} is impossible with {n_electrons} electrons "
            f"(needs {'odd' if n_electrons % 2 == 0 else 'even'} multiplicity <= {n_electrons + 1})"
        )
    return z, r, int(multiplicity)


class ReferenceMethod(ABC):
    """A quantum-chemical method that labels one structure with energy and forces.

    Subclasses are small frozen dataclasses holding only settings, so they pickle cheaply to
    Dask workers; the engine is created inside :meth:`compute`.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def supported_elements(self) -> frozenset[int]:
        """Atomic numbers this method (and its basis / parametrisation) can describe."""

    def options(self) -> dict:
        """The settings that change results: part of every cache key built from this method."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def compute(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        charge: int = 0,
        multiplicity: int | None = None,
    ) -> ReferenceResult:
        """Energy (eV) and forces (eV/Å) of one structure (positions in Å).

        Raises ``ValueError`` for invalid input only; every failure of the calculation itself
        comes back as a result with ``converged=False``.
        """
        z, r, mult = validate_structure(numbers, positions, charge, multiplicity, self.supported_elements, self.name)
        self._check_runtime()
        start = time.perf_counter()
        try:
            result = self._calculate(z, r, int(charge), mult)
        except Exception as error:  # noqa: BLE001 - any engine failure is a recorded outcome
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            result = ReferenceResult.failed(len(z), message, 0.0)
        result.wall_time = time.perf_counter() - start
        if result.converged and not (np.isfinite(result.energy) and np.all(np.isfinite(result.forces))):
            result.converged = False
            result.error = result.error or "non-finite energy or forces"
        result.info.setdefault("method", self.name)
        result.info.setdefault("multiplicity", mult)
        return result

    def _check_runtime(self) -> None:
        """Raise ``ValueError`` when the settings cannot run here (e.g. a GPU that is absent)."""

    @abstractmethod
    def _calculate(self, numbers: np.ndarray, positions: np.ndarray, charge: int, multiplicity: int) -> ReferenceResult:
        """Run the engine on validated input; may raise, ``compute`` records it as a failure."""
