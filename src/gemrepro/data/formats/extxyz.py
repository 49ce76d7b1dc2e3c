"""Extended XYZ and every other format ASE reads, with unit conversion at the edge.

ASE keeps what a file states (``energy=``, per-atom ``forces``) in a SinglePointCalculator but
never knows the units; files such as rMD17 exported to extxyz are in kcal/mol, so the caller
names the unit and we convert to eV and eV/Å here.
"""

from __future__ import annotations

import os
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from .checks import check_numbers, check_vectors, one_line
from .units import energy_factor, force_factor

# Calculator results that scale like an energy (stress is energy per volume; Å stays Å).
ENERGY_LIKE = ("energy", "free_energy", "energies", "stress", "stresses")
FORCE_LIKE = ("forces",)


def read_ase(
    path: str | os.PathLike,
    ase_format: str | None = None,
    *,
    energy_unit: str = "eV",
    force_unit: str | None = None,
) -> list[Atoms]:
    """All frames of an ASE-readable file; energies and forces converted to eV and eV/Å.

    ``force_unit`` defaults to ``energy_unit`` per Å.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    e_factor = energy_factor(energy_unit)
    f_factor = force_factor(force_unit or energy_unit)
    try:
        frames = ase.io.read(path, index=":", format=ase_format)
    except Exception as exc:  # ASE raises many types; the user needs one line naming the file
        raise ValueError(
            f"{path}: could not be read by ase.io as {ase_format or 'any known format'} "
            f"({type(exc).__name__}: {one_line(exc)})"
        ) from None
    if isinstance(frames, Atoms):
        frames = [frames]
    if not frames:
        raise ValueError(f"{path}: holds no configurations")
    for index, atoms in enumerate(frames):
        where = f" frame {index}"
        check_numbers(atoms.numbers, path, where)
        check_vectors(atoms.positions, len(atoms), "positions", path, where)
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        for key in ENERGY_LIKE:
            if key in results:
                results[key] = np.asarray(results[key], dtype=np.float64) * e_factor
                if key in ("energy", "free_energy"):
                    results[key] = float(results[key])
        for key in FORCE_LIKE:
            if key in results:
                results[key] = check_vectors(results[key], len(atoms), key, path, where) * f_factor
        atoms.calc = SinglePointCalculator(atoms, **results) if results else None
        atoms.info["source"] = str(path)
    return frames
