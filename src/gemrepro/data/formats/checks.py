"""Checks every loader applies, so bad data fails at the file, with the file's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

MAX_ATOMIC_NUMBER = 118


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, so wrapped library errors stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_numbers(numbers: np.ndarray, source: Path | str, where: str = "") -> np.ndarray:
    """Atomic numbers as a 1-D int array, each in 1..118."""
    numbers = np.asarray(numbers)
    if numbers.ndim != 1 or numbers.size == 0:
        raise ValueError(
            f"{source}{where}: expected a non-empty 1-D array of atomic numbers, got shape {numbers.shape}"
        )
    if not np.issubdtype(numbers.dtype, np.number) or not np.all(np.isfinite(numbers)):
        raise ValueError(f"{source}{where}: atomic numbers must be finite integers")
    as_int = numbers.astype(np.int64)
    if not np.array_equal(as_int, numbers):
        raise ValueError(f"{source}{where}: atomic numbers must be integers, got {numbers[as_int != numbers][:3]}")
    bad = (as_int < 1) | (as_int > MAX_ATOMIC_NUMBER)
    if bad.any():
        raise ValueError(
            f"{source}{where}: unknown atomic number(s) {sorted(set(as_int[bad].tolist()))}; expected 1..{MAX_ATOMIC_NUMBER}"
        )
    return as_int


def check_vectors(values: np.ndarray, n_atoms: int, name: str, source: Path | str, where: str = "") -> np.ndarray:
    """Per-atom 3-vectors (positions, forces) as a finite float64 (n_atoms, 3) array."""
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{source}{where}: {name} must be numbers, got {type(values).__name__}") from None
    if values.shape != (n_atoms, 3):
        raise ValueError(f"{source}{where}: {name} has shape {values.shape}, expected ({n_atoms}, 3)")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{source}{where}: {name} contain NaN or infinite values")
    return values


def check_scalar(value, name: str, source: Path | str, where: str = "") -> float:
    """One finite number from a scalar or a length-1 array (QM7-X stores energies as shape (1,))."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{source}{where}: {name} must be a number, got {value!r}") from None
    if array.size != 1:
        raise ValueError(f"{source}{where}: {name} has shape {array.shape}, expected a single value")
    number = float(array.reshape(()))
    if not np.isfinite(number):
        raise ValueError(f"{source}{where}: {name} is not finite ({number})")
    return number


def labelled_atoms(
    numbers: np.ndarray,
    positions: np.ndarray,
    *,
    energy: float | None,
    forces: np.ndarray | None,
    info: dict,
) -> Atoms:
    """An Atoms whose calculator holds the reference energy and forces (eV, eV/Å) it was read with."""
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.info.update(info)
    results: dict[str, float | np.ndarray] = {}
    if energy is not None:
        results["energy"] = energy
    if forces is not None:
        results["forces"] = forces
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms
