"""Start structures from the command line: catalog names, SMILES, or every frame of a file.

``gemrepro md`` and ``gemrepro stress`` take the same ``--molecules``: a name or SMILES becomes one
RDKit conformer; a file is read with :func:`gemrepro.data.read` (xyz, extxyz, QM7-X HDF5, (r)MD17
npz, any ``ase.io`` format) and *every* frame becomes a system of its own, named ``stem[k]``;
``--select`` picks frames. Each structure is checked before any compute, so a broken input is
reported as the input's fault with its name and frame, never as a model failure at 0 ps.

A file's cell and periodic boundary conditions (extxyz ``Lattice``, CIF, POSCAR) are kept, so an
ASE calculator simulates the crystal or liquid the file describes, not a cluster cut from it.
``--box L`` puts each molecule (a name, a SMILES, or a non-periodic frame) centred in a cubic
vacuum box of side L with periodic boundaries, for calculators that need a cell (potentials
trained on materials). The GemNet models of this project are molecular: a periodic structure
given to one is refused (:func:`check_periodic`) before any compute.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from ase import Atoms

from gemrepro.analysis.geometry import check_geometry
from gemrepro.catalog import MD17, MD_MOLECULES, OUT_OF_SAMPLE, molecule_from_smiles
from gemrepro.data import read
from gemrepro.data.sampling import embed_conformers

#: Suffixes taken as files even when the file does not exist (so a typo gets "does not exist").
STRUCTURE_SUFFIXES = (".xyz", ".extxyz", ".pdb", ".sdf", ".mol", ".traj", ".cif", ".h5", ".hdf5", ".npz")

BOX_MARGIN_A = 6.0
"""Vacuum a ``--box`` must leave around a molecule (Å): a typical cutoff of a materials potential,
so no atom sees a periodic image of its own molecule at the start."""

_SLICE = re.compile(r"^(-?\d*):(-?\d*)(?::(-?\d+))?$")


def parse_select(text: str | None, n_frames: int, source: str) -> list[int]:
    """Frame indices from ``--select``: ``None`` (all), ``"3"``, ``"0,4,9"`` or a slice ``"0:100:10"``."""
    if text is None:
        return list(range(n_frames))
    text = text.strip()
    match = _SLICE.match(text)
    if match:
        start, stop, step = (int(g) if g not in (None, "") else None for g in match.groups())
        if step == 0:
            raise ValueError(f"--select {text!r}: a slice step cannot be 0")
        outside = [start] if start is not None and not -n_frames <= start < n_frames else []
        outside += [stop] if stop is not None and not -n_frames <= stop <= n_frames else []
        if outside:  # refused like a frame number outside the file, never silently cut short
            raise ValueError(
                f"--select {text!r}: {outside[0]} lies outside {source}'s {n_frames} frames "
                f"(a slice starts at 0..{n_frames - 1} and stops at most at {n_frames})"
            )
        chosen = list(range(n_frames))[slice(start, stop, step)]
    else:
        try:
            chosen = [int(part) for part in text.split(",")]
        except ValueError:
            raise ValueError(
                f"--select {text!r}: expected frame numbers (0,4,9) or a slice (start:stop:step)"
            ) from None
        outside = [k for k in chosen if not -n_frames <= k < n_frames]
        if outside:
            raise ValueError(f"--select: frame(s) {outside} outside {source}'s {n_frames} frames (0..{n_frames - 1})")
        chosen = [k % n_frames for k in chosen]
    if not chosen:
        raise ValueError(f"--select {text!r}: picks none of {source}'s {n_frames} frames")
    return list(dict.fromkeys(chosen))


def named_molecules() -> dict[str, str]:
    """Catalog names (lower case) -> SMILES: MD test set, out-of-sample set and MD17."""
    table: dict[str, str] = {}
    for group in (MD17, OUT_OF_SAMPLE, MD_MOLECULES):
        table.update({name.lower(): smiles for name, smiles in group.items()})
    return table


def resolve_molecule(name_or_smiles: str) -> str:
    """Canonical SMILES of a catalog name or of a SMILES string; ValueError for anything else."""
    smiles = named_molecules().get(name_or_smiles.strip().lower(), name_or_smiles)
    try:
        return molecule_from_smiles(smiles).smiles
    except ValueError as exc:
        raise ValueError(
            f"--molecules: {name_or_smiles!r} is neither a catalog molecule name nor a valid SMILES ({exc})"
        ) from exc


def start_geometries(smiles: list[str], seed: int = 0) -> dict[str, Atoms]:
    """One RDKit ETKDG + MMFF start geometry per distinct SMILES."""
    return {s: embed_conformers(s, 1, seed)[0] for s in dict.fromkeys(smiles)}


def is_structure_file(spec: str) -> bool:
    """A ``--molecules`` entry that names a file (existing, or with a structure-file suffix)."""
    path = Path(spec)
    return path.is_file() or path.suffix.lower() in STRUCTURE_SUFFIXES


def read_structures(spec: str, select: str | None = None) -> dict[str, Atoms]:
    """Every (or every ``select``-ed) frame of a structure file, by ``stem[k]``: elements,
    positions, cell and periodic boundary conditions (no energies or forces)."""
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--molecules: structure file {spec!r} does not exist")
    try:
        frames = read(path)
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"--molecules: cannot read {spec!r} as a structure file ({exc})") from None
    structures = {}
    for k in parse_select(select, len(frames), spec):
        atoms = frames[k]
        check_geometry(atoms.numbers, atoms.positions, f"--molecules {spec} frame {k}")
        bare = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        bare.info["key"] = structure_key(bare)
        structures[f"{path.stem}[{k}]"] = bare
    return structures


def load_structures(
    specs: list[str], select: str | None = None, seed: int = 0, box: float | None = None
) -> dict[str, Atoms]:
    """Start structures by name, in the order given; ``select`` applies to the files among ``specs``.

    Each carries ``info["key"]``, what its MD seeds follow: the canonical SMILES of a name or SMILES
    (as before files were accepted), the :func:`structure_key` of a file's frame. With ``box`` (Å)
    every structure is put in a cubic vacuum box of that side (:func:`place_in_box`).
    """
    if not specs:
        raise ValueError("--molecules: expected at least one molecule")
    if box is not None and not (np.isfinite(box) and box > 0):
        raise ValueError(f"--box: expected a positive box side in Å, got {box}")
    files = [spec for spec in specs if is_structure_file(spec)]
    if select is not None and not files:
        raise ValueError("--select: picks frames of structure files, but --molecules names none")
    structures: dict[str, Atoms] = {}
    for spec in specs:
        if spec in files:
            found = read_structures(spec, select)
        else:
            smiles = resolve_molecule(spec)
            atoms = start_geometries([smiles], seed)[smiles]
            atoms.info["key"] = smiles
            found = {spec: atoms}
        for name, atoms in found.items():
            if name in structures:
                raise ValueError(f"--molecules: {name!r} is given twice")
            structures[name] = atoms if box is None else place_in_box(atoms, box, name)
    return structures


def place_in_box(atoms: Atoms, box: float, name: str) -> Atoms:
    """``atoms`` centred in a cubic box of side ``box`` Å with periodic boundaries (``info["box_A"]``).

    The box must hold the molecule with :data:`BOX_MARGIN_A` of vacuum along every axis; a
    structure that is periodic already is refused (its own cell is what it means).
    """
    if not (np.isfinite(box) and box > 0):
        raise ValueError(f"--box: expected a positive box side in Å, got {box}")
    if atoms.pbc.any():
        raise ValueError(f"--box: {name} is periodic already (its file gives a cell); --box is for molecules")
    extent = float(np.ptp(atoms.positions, axis=0).max())
    if box < extent + BOX_MARGIN_A:
        raise ValueError(
            f"--box {box:g}: too small for {name} (extent {extent:.2f} Å); expected at least "
            f"{extent + BOX_MARGIN_A:.2f} Å, the molecule plus {BOX_MARGIN_A:g} Å of vacuum"
        )
    boxed = atoms.copy()
    boxed.set_cell([box, box, box])
    boxed.center()
    boxed.pbc = True
    boxed.info["box_A"] = float(box)
    return boxed


def describe_periodic(atoms: Atoms) -> str:
    """``"periodic (pbc T T T, cell 5.43 x 5.43 x 5.43 Å)"``: what a message about a cell names."""
    lengths = " x ".join(f"{x:.3g}" for x in atoms.cell.lengths())
    return f"periodic (pbc {' '.join('T' if p else 'F' for p in atoms.pbc)}, cell {lengths} Å)"


def check_periodic(potential, structures: dict[str, Atoms], what: str) -> None:
    """Refuse periodic structures, before any compute, unless ``potential`` takes a cell (``set_cells``).

    ``what`` names the potential in the message (``"the GemNet model"``).
    """
    if hasattr(potential, "set_cells"):
        return
    for name, atoms in structures.items():
        if not atoms.pbc.any():
            continue
        if "box_A" in atoms.info:
            raise ValueError(
                f"--box: {what} is for isolated molecules (no cell, no periodic boundaries); "
                "--box is for ASE calculators that need a cell (gemrepro stress --calculator)"
            )
        raise ValueError(
            f"--molecules {name}: {describe_periodic(atoms)}, but {what} is for isolated molecules; "
            "give a structure without a cell, or run a periodic potential with gemrepro stress --calculator"
        )


def structure_key(atoms: Atoms) -> str:
    """A name-free key of a structure (elements, coordinates and, when periodic, its cell), for seeds
    that follow the structure (a molecule's key is what it was before cells were kept)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(np.round(atoms.positions, 6), dtype=np.float64).tobytes())
    if atoms.pbc.any():
        digest.update(np.ascontiguousarray(np.round(atoms.cell.array, 6), dtype=np.float64).tobytes())
        digest.update(np.asarray(atoms.pbc, dtype=np.bool_).tobytes())
    return digest.hexdigest()[:16]


def check_elements(potential, structures: dict[str, Atoms]) -> dict[str, list[int]]:
    """Refuse structures with elements the model (every committee member) never saw, before any compute.

    Returns the unknown elements per structure when the potential allows them (to mark the results).
    """
    unknown: dict[str, list[int]] = {}
    for name, atoms in structures.items():
        for member in getattr(potential, "members", [potential]):
            found = member.unknown_elements(atoms.numbers)
            if found:
                member.check_elements(atoms.numbers, f"--molecules {name}")
                unknown[name] = sorted(set(unknown.get(name, [])) | set(found))
    return unknown


def add_structure_options(parser, command: str) -> None:
    """``--select``, ``--box`` and ``--allow-unknown-elements``, shared by ``gemrepro md`` and ``gemrepro stress``."""
    parser.add_argument(
        "--select",
        default=None,
        metavar="FRAMES",
        help=f"frames of the structure files to {command}: 3, 0,4,9 or a slice 0:100:10 (default all)",
    )
    parser.add_argument(
        "--box",
        type=float,
        default=None,
        metavar="L",
        help="put each molecule centred in a cubic vacuum box of side L Å with periodic boundaries, "
        f"for calculators that need a cell (at least the molecule's extent + {BOX_MARGIN_A:g} Å); "
        "a structure file's own cell is always kept",
    )
    parser.add_argument(
        "--allow-unknown-elements",
        action="store_true",
        help="run structures with elements the model was not trained on (warned and marked) instead of refusing them",
    )
