"""Checks of the generated data against things nobody here made or chose.

- the real QM7-X geometries in ``../shared/data/``: does our normal-mode sampling stretch bonds
  as much as QM7-X's did?
- a second reference method on a few configurations: what would PBE0 labels cost, and how far
  are they from the default GFN2-xTB labels (after removing each method's free-atom energies)?
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from ase import Atoms

from gemrepro.cache.artifacts import Artifact, get_or_create
from gemrepro.cache.paths import shared_data_dir
from gemrepro.data.build import MoleculeTask, label_molecules
from gemrepro.data.formats import read
from gemrepro.data.statistics import bond_lengths, smiles_from_geometry
from gemrepro.reference import atomization_energy, free_atom_energies, get_method

STAGE_VERSION = 1  # the reference-cost stage: bump when what it holds or how it is computed changes


@dataclass
class RealComparison:
    smiles: str
    bonds: pd.DataFrame  # columns: source, bond, deviation
    artifact: Artifact


def real_qm7x_comparison(seed: int = 0, root=None, filename: str = "qm7x_reduced_100.xyz") -> RealComparison | None:
    """Bond-length spread of the real QM7-X frames vs our sampler on the same molecule, or None."""
    folder = shared_data_dir()
    if folder is None or not (folder / filename).is_file():
        return None
    real = read(folder / filename)
    smiles = smiles_from_geometry(real[0])
    task = MoleculeTask(smiles, 1, len(real) - 1, seed, "gfn2-xtb", ())
    (artifact,) = label_molecules([task], n_workers=1, progress=False, root=root)
    data = np.load(artifact.file("labels.npz"))
    ours = [Atoms(numbers=data["numbers"], positions=p) for p in data["positions"]]
    # bonds of both sets are defined on the same first-frame connectivity recipe
    bonds = pd.concat(
        [bond_lengths(real).assign(source="QM7-X (real)"), bond_lengths(ours).assign(source="gemrepro")],
        ignore_index=True,
    )
    return RealComparison(smiles, bonds, artifact)


@dataclass
class CostComparison:
    table: pd.DataFrame
    artifact: Artifact


def reference_cost_comparison(
    frames: list[Atoms], *, n: int = 2, seed: int = 0, root=None, method: str = "pbe0"
) -> CostComparison:
    """Recompute ``n`` configurations (the smallest molecules, seeded) with ``method``."""
    rng = np.random.default_rng(seed)
    sizes = np.array([len(a) for a in frames])
    small = np.flatnonzero(sizes <= np.sort(sizes)[min(len(sizes) - 1, max(n, len(sizes) // 10))])
    picked = sorted(rng.choice(small, size=min(n, len(small)), replace=False).tolist())
    other = get_method(method)
    params = {
        "stage_version": STAGE_VERSION,
        "method": method,
        "options": other.options(),
        "configurations": [(frames[i].info.get("id"), frames[i].positions.round(8).tolist()) for i in picked],
    }

    def build(folder) -> dict:
        free = free_atom_energies(other, sorted({int(z) for i in picked for z in frames[i].numbers}), root=root)
        rows = []
        for i in picked:
            atoms = frames[i]
            result = other.compute(atoms.numbers, atoms.positions)
            ae = atomization_energy(result.energy, atoms.numbers, free) if result.converged else np.nan
            rows.append(
                {
                    "configuration": atoms.info.get("id", str(i)),
                    "atoms": len(atoms),
                    "method": method,
                    "converged": result.converged,
                    "atomization energy (eV)": ae,
                    "default method AE (eV)": atoms.info.get("atomization_energy", np.nan),
                    "energy difference (eV)": ae - atoms.info.get("atomization_energy", np.nan),
                    "wall time (s)": result.wall_time,
                }
            )
        pd.DataFrame(rows).to_csv(folder / "costs.csv", index=False)
        return {"n": len(rows)}

    artifact = get_or_create("reference-cost", params, build, root)
    return CostComparison(pd.read_csv(artifact.file("costs.csv")), artifact)
