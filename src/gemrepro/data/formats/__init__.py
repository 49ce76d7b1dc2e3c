"""Readers and writers for the dataset formats of the papers: QM7-X HDF5, MD17 / rMD17 npz, and
anything ASE reads (extended XYZ). Every reader returns ``ase.Atoms`` with energy (eV) and forces
(eV/Å) in a SinglePointCalculator and what else the file knows in ``atoms.info``.
"""

from __future__ import annotations

from .extxyz import read_ase
from .md17 import read_md17
from .qm7x import QM7XRecord, geometry_name, read_duplicates, read_qm7x, write_qm7x
from .reader import FORMATS, detect_format, file_energy_unit, read
from .summary import format_summary, summarize, summarize_frames
from .units import energy_factor, force_factor, implausible_in_ev

__all__ = [
    "FORMATS",
    "QM7XRecord",
    "detect_format",
    "energy_factor",
    "file_energy_unit",
    "force_factor",
    "format_summary",
    "geometry_name",
    "implausible_in_ev",
    "read",
    "read_ase",
    "read_duplicates",
    "read_md17",
    "read_qm7x",
    "summarize",
    "summarize_frames",
    "write_qm7x",
]
