"""QM7-X HDF5 files: the real layout, read and written.

Layout (Hoja et al., Sci. Data 8, 43 (2021)): root groups are molecule ids ("1", "2", …); each
holds one group per geometry, ``Geom-m<mol>-i<isomer>-c<conformer>-opt`` for the equilibrium
structure and ``…-d1`` … ``…-d100`` for its normal-mode displacements. A geometry group holds
``atNUM`` (Z), ``atXYZ`` (Å), ``ePBE0+MBD`` (total energy, eV), ``eAT`` (atomization energy, eV),
``totFOR`` (eV/Å) and many properties we do not need.

Files we generate keep this layout so that a user can swap in the real QM7-X; their total energy
is stored under ``eTOT`` (it is not PBE0+MBD) and the method under the root attribute
``reference_method``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms

from .checks import check_numbers, check_scalar, check_vectors, labelled_atoms, one_line

GEOMETRY_NAME = re.compile(r"^Geom-m(\d+)-i(\d+)-c(\d+)-(opt|d\d+)$")
PAPER_ENERGY_KEY = "ePBE0+MBD"
GENERATED_ENERGY_KEY = "eTOT"
DUPLICATES_FILE = "DupMols.dat"


@dataclass(frozen=True)
class QM7XRecord:
    """One labelled geometry, as :func:`write_qm7x` stores it (eV, Å, eV/Å)."""

    mol_id: int
    isomer: int
    conformer: int
    label: str  # "opt" or "d<k>"
    numbers: np.ndarray
    positions: np.ndarray
    energy: float | None = None
    atomization_energy: float | None = None
    forces: np.ndarray | None = None


def geometry_name(mol_id: int, isomer: int, conformer: int, label: str) -> str:
    """The QM7-X id of one geometry, e.g. ``Geom-m1-i2-c3-d17``."""
    return f"Geom-m{mol_id}-i{isomer}-c{conformer}-{label}"


def _geometry_order(name: str) -> tuple[int, int, int]:
    """Sort key: isomer, conformer, then ``opt`` before ``d1`` < ``d2`` < … < ``d100``."""
    match = GEOMETRY_NAME.match(name)
    assert match is not None
    label = match.group(4)
    step = 0 if label == "opt" else int(label[1:])
    return int(match.group(2)), int(match.group(3)), step


def _natural(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def read_duplicates(path: str | os.PathLike) -> set[str]:
    """Geometry names listed in a ``DupMols.dat``, without a trailing ``-opt``.

    The official file lists equilibrium geometries (``Geom-m…-i…-c…-opt``); QM7-X's own
    ``createDB.py`` drops those together with their 100 displacements, so we keep the stem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: duplicate list not found")
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split()[0]
        names.add(name[: -len("-opt")] if name.endswith("-opt") else name)
    return names


def _is_duplicate(name: str, duplicates: set[str]) -> bool:
    """Whether ``name`` equals or extends (at a ``-`` boundary) a listed duplicate."""
    parts = name.split("-")
    return any("-".join(parts[:k]) in duplicates for k in range(1, len(parts) + 1))


def _as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_qm7x(
    path: str | os.PathLike,
    *,
    drop_duplicates: bool = True,
    duplicates: str | os.PathLike | Iterable[str] | None = None,
) -> list[Atoms]:
    """Every geometry of a QM7-X HDF5 file as Atoms with energy (eV) and forces (eV/Å).

    With ``drop_duplicates`` the geometries listed in ``duplicates`` (a ``DupMols.dat`` path or
    names) — by default a ``DupMols.dat`` beside the file, if there is one — are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such QM7-X file")
    dropped: set[str] = set()
    if drop_duplicates:
        if duplicates is None:
            beside = path.parent / DUPLICATES_FILE
            dropped = read_duplicates(beside) if beside.is_file() else set()
        elif isinstance(duplicates, (str, os.PathLike)):
            dropped = read_duplicates(duplicates)
        else:
            dropped = {d[: -len("-opt")] if d.endswith("-opt") else d for d in duplicates}
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({one_line(exc)})") from None
    try:
        with handle:
            return _read_open(handle, path, dropped)
    except (OSError, RuntimeError, KeyError) as exc:
        raise ValueError(f"{path}: corrupt QM7-X HDF5 file ({one_line(exc)})") from None


def _read_open(handle: h5py.File, path: Path, dropped: set[str]) -> list[Atoms]:
    if len(handle.keys()) == 0:
        raise ValueError(f"{path}: not QM7-X layout: the file has no molecule groups")
    method_attr = handle.attrs.get("reference_method")
    file_method = _as_text(method_attr) if method_attr is not None else None
    frames: list[Atoms] = []
    for mol_key in sorted(handle.keys(), key=_natural):
        molecule = handle[mol_key]
        if not isinstance(molecule, h5py.Group):
            raise ValueError(f"{path}: not QM7-X layout: /{mol_key} is a dataset, expected a molecule group")
        names = list(molecule.keys())
        if not names:
            raise ValueError(f"{path}: not QM7-X layout: molecule group /{mol_key} holds no geometries")
        for name in names:
            if not GEOMETRY_NAME.match(name):
                raise ValueError(
                    f"{path}: not QM7-X layout: /{mol_key}/{name} is not named Geom-m<mol>-i<isomer>-c<conformer>-opt|d<k>"
                )
        for name in sorted(names, key=_geometry_order):
            if _is_duplicate(name, dropped):
                continue
            frames.append(_read_geometry(molecule[name], f"/{mol_key}/{name}", path, file_method))
    return frames


def _read_geometry(group: h5py.Group, where: str, path: Path, file_method: str | None) -> Atoms:
    at = f" {where}"
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{path}:{at} is a dataset, expected a geometry group")
    keys = set(group.keys())  # one listing instead of an HDF5 lookup per property
    for key in ("atNUM", "atXYZ"):
        if key not in keys:
            raise ValueError(f"{path}: not QM7-X layout:{at} has no '{key}' dataset")
    numbers = check_numbers(np.asarray(group["atNUM"][()]).reshape(-1), path, at)
    positions = check_vectors(group["atXYZ"][()], len(numbers), "atXYZ (positions)", path, at)
    energy, method = None, file_method
    if PAPER_ENERGY_KEY in keys:
        energy = check_scalar(group[PAPER_ENERGY_KEY][()], PAPER_ENERGY_KEY, path, at)
        method = method or "PBE0+MBD"
    elif GENERATED_ENERGY_KEY in keys:
        energy = check_scalar(group[GENERATED_ENERGY_KEY][()], GENERATED_ENERGY_KEY, path, at)
    forces = None
    if "totFOR" in keys:
        forces = check_vectors(group["totFOR"][()], len(numbers), "totFOR (forces)", path, at)
    name = where.rsplit("/", 1)[1]
    match = GEOMETRY_NAME.match(name)
    assert match is not None  # _read_molecules checked every name against GEOMETRY_NAME first
    info = {
        "source": str(path),
        "id": name,
        "mol_id": int(match.group(1)),
        "isomer": int(match.group(2)),
        "conformer": int(match.group(3)),
        "geometry": match.group(4),
    }
    if "eAT" in keys:
        info["atomization_energy"] = check_scalar(group["eAT"][()], "eAT", path, at)
    if method is not None:
        info["reference_method"] = method
    return labelled_atoms(numbers, positions, energy=energy, forces=forces, info=info)


def _field(record, name: str):
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def write_qm7x(path: str | os.PathLike, records: Iterable[QM7XRecord | Mapping], reference_method: str) -> Path:
    """Write labelled geometries in the QM7-X layout, atomically (temp file, then rename).

    Energies are eV, forces eV/Å. The total energy goes to ``ePBE0+MBD`` when the method is
    PBE0+MBD, else to ``eTOT``; ``reference_method`` becomes a root attribute.
    """
    path = Path(path)
    if not reference_method or not isinstance(reference_method, str):
        raise ValueError(f"{path}: reference_method must be a non-empty string, got {reference_method!r}")
    energy_key = PAPER_ENERGY_KEY if reference_method.strip().lower() == "pbe0+mbd" else GENERATED_ENERGY_KEY
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        with h5py.File(temporary, "w") as handle:
            handle.attrs["reference_method"] = reference_method
            count = 0
            for index, record in enumerate(records):
                _write_record(handle, record, index, energy_key, path)
                count += 1
            if count == 0:
                raise ValueError(f"{path}: no records to write")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _write_record(handle: h5py.File, record, index: int, energy_key: str, path: Path) -> None:
    at = f" record {index}"
    ids = {}
    for key in ("mol_id", "isomer", "conformer"):
        value = _field(record, key)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{path}:{at}: {key} must be a non-negative integer, got {value!r}")
        ids[key] = int(value)
    label = _field(record, "label")
    if not isinstance(label, str) or not re.fullmatch(r"opt|d[1-9]\d*", label):
        raise ValueError(f"{path}:{at}: label must be 'opt' or 'd<k>', got {label!r}")
    name = geometry_name(ids["mol_id"], ids["isomer"], ids["conformer"], label)
    numbers = check_numbers(np.asarray(_field(record, "numbers")).reshape(-1), path, at)
    positions = check_vectors(_field(record, "positions"), len(numbers), "positions", path, at)
    molecule = handle.require_group(str(ids["mol_id"]))
    if name in molecule:
        raise ValueError(f"{path}:{at}: geometry {name} appears twice")
    group = molecule.create_group(name)
    group.create_dataset("atNUM", data=numbers.astype(np.int32))
    group.create_dataset("atXYZ", data=positions)
    energy = _field(record, "energy")
    if energy is not None:
        group.create_dataset(energy_key, data=[check_scalar(energy, "energy", path, at)])
    atomization_energy = _field(record, "atomization_energy")
    if atomization_energy is not None:
        group.create_dataset("eAT", data=[check_scalar(atomization_energy, "atomization_energy", path, at)])
    forces = _field(record, "forces")
    if forces is not None:
        group.create_dataset("totFOR", data=check_vectors(forces, len(numbers), "forces", path, at))
