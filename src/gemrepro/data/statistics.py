"""Per-configuration statistics of a dataset, for the data chapter and ``data info``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import covalent_radii
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds

HEAVY = ("C", "N", "O", "S", "Cl")


def configuration_table(frames: list[Atoms]) -> pd.DataFrame:
    """One row per configuration: molecule, size, energies and force magnitudes.

    ``displacement_energy`` is the energy above the relaxed (``opt``) structure of the same
    conformer: how far normal-mode sampling pushed the molecule up the potential energy surface.
    """
    rows = []
    for atoms in frames:
        symbols = atoms.get_chemical_symbols()
        forces = atoms.get_forces() if atoms.calc is not None and "forces" in atoms.calc.results else None
        energy = atoms.get_potential_energy() if atoms.calc is not None and "energy" in atoms.calc.results else np.nan
        row = {
            "mol_id": atoms.info.get("mol_id"),
            "isomer": atoms.info.get("isomer"),
            "conformer": atoms.info.get("conformer"),
            "geometry": atoms.info.get("geometry"),
            "formula": atoms.get_chemical_formula(),
            "n_atoms": len(atoms),
            "n_heavy": sum(s != "H" for s in symbols),
            "energy": energy,
            "atomization_energy": atoms.info.get("atomization_energy", np.nan),
            "max_force": float(np.linalg.norm(forces, axis=1).max()) if forces is not None else np.nan,
        }
        for element in HEAVY:
            row[element] = symbols.count(element)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["atomization_energy_per_atom"] = table["atomization_energy"] / table["n_atoms"]
    conformer = ["mol_id", "isomer", "conformer"]
    opt = table[table["geometry"] == "opt"].set_index(conformer)["energy"]
    keys = list(zip(*(table[c] for c in conformer)))
    table["displacement_energy"] = table["energy"].to_numpy() - np.array([opt.get(k, np.nan) for k in keys])
    return table


def force_components(frames: list[Atoms]) -> np.ndarray:
    """All Cartesian force components of a dataset (eV/Å), for distributions."""
    return np.concatenate([a.get_forces().reshape(-1) for a in frames if a.calc is not None])


def element_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per heavy element: atoms in the dataset's molecules and molecules that contain it."""
    molecules = table.drop_duplicates(["mol_id", "isomer"])
    return pd.DataFrame(
        {
            "element": list(HEAVY),
            "molecules containing it": [int((molecules[e] > 0).sum()) for e in HEAVY],
            "atoms of it in all molecules": [int(molecules[e].sum()) for e in HEAVY],
        }
    ).set_index("element")


def bond_lengths(frames: list[Atoms], factor: float = 1.2) -> pd.DataFrame:
    """Length of every covalent bond (from the first frame, covalent radii x ``factor``) in
    every frame, with its type (``C-H``, ``C-C``, ...) and its deviation from the first frame's
    mean over frames: the spread normal-mode sampling produces."""
    first = frames[0]
    radii = covalent_radii[first.numbers]
    distances = first.get_all_distances()
    i, j = np.nonzero(np.triu(distances < factor * (radii[:, None] + radii[None, :]), k=1))
    symbols = np.array(first.get_chemical_symbols())
    kinds = ["-".join(sorted((a, b), key=lambda s: (s == "H", s))) for a, b in zip(symbols[i], symbols[j])]
    positions = np.stack([a.positions for a in frames])
    lengths = np.linalg.norm(positions[:, i] - positions[:, j], axis=-1)
    deviation = lengths - lengths.mean(axis=0)
    return pd.DataFrame(
        {
            "frame": np.repeat(np.arange(len(frames)), len(i)),
            "bond": np.tile(kinds, len(frames)),
            "length": lengths.reshape(-1),
            "deviation": deviation.reshape(-1),
        }
    )


def smiles_from_geometry(atoms: Atoms) -> str:
    """Connectivity of a neutral closed-shell molecule from its 3D geometry (RDKit)."""
    block = f"{len(atoms)}\n\n" + "\n".join(
        f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)
    )
    mol = Chem.MolFromXYZBlock(block)
    rdDetermineBonds.DetermineBonds(mol, charge=0)
    return Chem.MolToSmiles(Chem.RemoveHs(mol))
