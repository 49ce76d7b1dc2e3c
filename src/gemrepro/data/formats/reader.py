"""One entry point, :func:`read`, that finds a file's format and hands it to its loader."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ase import Atoms
from ase.io.formats import ioformats

from .checks import one_line
from .extxyz import read_ase
from .md17 import FILE_UNIT as MD17_UNIT
from .md17 import npz_flavour, read_md17
from .qm7x import read_qm7x
from .units import energy_factor, force_factor

FORMATS = ("qm7x", "md17", "rmd17", "ase")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf"}


def detect_format(path: str | os.PathLike) -> str:
    """``qm7x`` for HDF5, ``md17``/``rmd17`` for npz by their keys, else ``ase``.

    Content wins over the extension where the two disagree (a renamed file still reads).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head == HDF5_SIGNATURE or path.suffix.lower() in HDF5_SUFFIXES:
        return "qm7x"  # the only HDF5 layout we read; read_qm7x explains what else it expected
    if head.startswith(ZIP_SIGNATURE) or path.suffix.lower() == ".npz":
        try:
            with zipfile.ZipFile(path) as archive:
                keys = [name.removesuffix(".npy") for name in archive.namelist()]
        except (OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable npz file ({one_line(exc)})") from None
        return npz_flavour(keys, path)
    return "ase"


def file_energy_unit(format: str) -> str:
    """The energy unit :func:`read` takes a file of ``format`` to be in when none is named (forces: per Å)."""
    return MD17_UNIT if format.strip().lower() in ("md17", "rmd17") else "eV"


def read(
    path: str | os.PathLike,
    format: str | None = None,
    *,
    drop_duplicates: bool = True,
    duplicates: str | os.PathLike | Iterable[str] | None = None,
    energy_unit: str | None = None,
    force_unit: str | None = None,
) -> list[Atoms]:
    """Configurations of a dataset file as Atoms carrying energy (eV) and forces (eV/Å).

    ``format``: ``qm7x``, ``md17``, ``rmd17``, ``ase`` or any ``ase.io`` format name; detected
    when None. ``drop_duplicates``/``duplicates``: QM7-X ``DupMols.dat`` handling.
    ``energy_unit``/``force_unit``: the units the file is stored in when they are not the
    format's own (eV for ASE files, kcal/mol for (r)MD17).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if format is None:
        format = detect_format(path)
    name = format.strip().lower()
    if name == "qm7x":
        in_ev = energy_unit is None or energy_factor(energy_unit) == 1.0
        if not in_ev or (force_unit is not None and force_factor(force_unit) != 1.0):
            raise ValueError(f"{path}: QM7-X files store eV and eV/Å; energy_unit/force_unit do not apply")
        return read_qm7x(path, drop_duplicates=drop_duplicates, duplicates=duplicates)
    if name in ("md17", "rmd17"):
        return read_md17(path, name, energy_unit=energy_unit, force_unit=force_unit)
    if name == "ase" or name in ioformats:
        return read_ase(path, None if name == "ase" else name, energy_unit=energy_unit or "eV", force_unit=force_unit)
    raise ValueError(
        f"{path}: unknown format {format!r}; expected one of {', '.join(FORMATS)} or an ase.io format name"
    )
