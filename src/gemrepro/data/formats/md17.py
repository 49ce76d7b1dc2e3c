"""MD17 and revised MD17 (rMD17) ``.npz`` files.

MD17 (Chmiela et al., sGDML): ``R`` (frames, atoms, 3) Å, ``z`` (atoms,), ``E`` (frames,) or
(frames, 1) kcal/mol, ``F`` kcal/mol/Å, sometimes ``name`` and ``theory``.
rMD17 (Christensen & von Lilienfeld, 2020; PBE/def2-SVP): ``nuclear_charges``, ``coords``,
``energies``, ``forces`` in the same units, plus ``old_indices`` into the original MD17.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from ase import Atoms

from .checks import check_numbers, labelled_atoms, one_line
from .units import energy_factor, force_factor

# (numbers, positions, energies, forces) key names of each flavour; the first two are required.
KEYS: dict[str, tuple[str, str, str, str]] = {
    "md17": ("z", "R", "E", "F"),
    "rmd17": ("nuclear_charges", "coords", "energies", "forces"),
}
RMD17_METHOD = "PBE/def2-SVP"
FILE_UNIT = "kcal/mol"


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` without unpickling (a data file should never run code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such npz file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an npz archive; expected an MD17 or rMD17 .npz file")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise ValueError(f"{path}: not a readable npz file ({one_line(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive of named arrays, got a single array")
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "pickle" in str(exc):
                    continue  # an object array; none of the keys we read are pickled
                raise ValueError(f"{path}: unreadable array '{key}' ({one_line(exc)})") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise ValueError(f"{path}: unreadable array '{key}' ({one_line(exc)})") from None
    return arrays


def npz_flavour(keys: Iterable[str], path: Path | str) -> str:
    """``"md17"`` or ``"rmd17"`` from the keys of an npz; ValueError when it is neither."""
    keys = set(keys)
    for flavour, (numbers, positions, _, _) in KEYS.items():
        if {numbers, positions} <= keys:
            return flavour
    raise ValueError(
        f"{path}: npz has keys {sorted(keys)}, expected MD17 keys (R, z, E, F) "
        f"or rMD17 keys (nuclear_charges, coords, energies, forces)"
    )


def read_md17(
    path: str | os.PathLike,
    flavour: str | None = None,
    *,
    energy_unit: str | None = None,
    force_unit: str | None = None,
) -> list[Atoms]:
    """Frames of an MD17 or rMD17 npz as Atoms with energy (eV) and forces (eV/Å).

    The files store kcal/mol and kcal/mol/Å; ``energy_unit``/``force_unit`` override that for
    npz files written in other units.
    """
    path = Path(path)
    arrays = load_npz(path)
    detected = npz_flavour(arrays.keys(), path)
    if flavour is not None and flavour != detected:
        key_numbers, key_positions = KEYS[flavour][:2]
        raise ValueError(
            f"{path}: expected {flavour} keys {key_numbers!r} and {key_positions!r}, found a {detected} file"
        )
    numbers_key, positions_key, energies_key, forces_key = KEYS[detected]
    e_factor = energy_factor(energy_unit or FILE_UNIT)
    f_factor = force_factor(force_unit or energy_unit or FILE_UNIT)

    numbers = check_numbers(np.asarray(arrays[numbers_key]).reshape(-1), path, f" '{numbers_key}'")
    positions = np.asarray(arrays[positions_key], dtype=np.float64)
    n_atoms = len(numbers)
    if positions.ndim != 3 or positions.shape[1:] != (n_atoms, 3):
        raise ValueError(f"{path}: '{positions_key}' has shape {positions.shape}, expected (frames, {n_atoms}, 3)")
    if not np.all(np.isfinite(positions)):
        raise ValueError(f"{path}: '{positions_key}' (positions) contain NaN or infinite values")
    n_frames = positions.shape[0]

    energies = None
    if energies_key in arrays:
        energies = np.asarray(arrays[energies_key], dtype=np.float64)
        if energies.shape not in ((n_frames,), (n_frames, 1)):
            raise ValueError(
                f"{path}: '{energies_key}' has shape {energies.shape}, expected ({n_frames},) or ({n_frames}, 1)"
            )
        if not np.all(np.isfinite(energies)):
            raise ValueError(f"{path}: '{energies_key}' (energies) contain NaN or infinite values")
        energies = energies.reshape(n_frames) * e_factor
    forces = None
    if forces_key in arrays:
        forces = np.asarray(arrays[forces_key], dtype=np.float64)
        if forces.shape != positions.shape:
            raise ValueError(f"{path}: '{forces_key}' has shape {forces.shape}, expected {positions.shape}")
        if not np.all(np.isfinite(forces)):
            raise ValueError(f"{path}: '{forces_key}' (forces) contain NaN or infinite values")
        forces = forces * f_factor

    shared = {"source": str(path)}
    if detected == "rmd17":
        shared["reference_method"] = RMD17_METHOD
    elif "theory" in arrays:
        shared["reference_method"] = str(np.asarray(arrays["theory"]).reshape(-1)[0])
    if "name" in arrays:
        shared["name"] = str(np.asarray(arrays["name"]).reshape(-1)[0])
    old_indices = arrays.get("old_indices") if detected == "rmd17" else None
    if old_indices is not None and np.asarray(old_indices).shape != (n_frames,):
        old_indices = None  # informative only; a malformed column is not worth refusing the file

    frames = []
    for index in range(n_frames):
        info = dict(shared, index=index)
        if old_indices is not None:
            info["old_index"] = int(old_indices[index])
        frames.append(
            labelled_atoms(
                numbers,
                positions[index],
                energy=None if energies is None else float(energies[index]),
                forces=None if forces is None else forces[index],
                info=info,
            )
        )
    return frames
