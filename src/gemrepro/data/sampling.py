"""QM7-X's recipe for configurations: conformers, relaxation, normal-mode displacements.

QM7-X took RDKit/MMFF conformers, relaxed them (DFTB3+MBD), and generated 100 displaced
structures per conformer from random linear combinations of normal modes (the ANI normal-mode
sampling scheme at 1500 K). Here the relaxation and the Hessian use GFN2-xTB, whatever method
labels the structures afterwards. Soft modes (torsions, methyl rotors) have tiny force
constants, so their thermal amplitude would tear the molecule apart; each mode's amplitude is
therefore capped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.data import covalent_radii
from ase.optimize import BFGS
from rdkit import Chem
from rdkit.Chem import AllChem

from gemrepro.reference.base import ReferenceResult


class MethodCalculator(Calculator):
    """Thin ASE adapter around a reference method, for relaxations; raises on failure."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, method, **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        result: ReferenceResult = self.method.compute(self.atoms.numbers, self.atoms.positions)
        if not result.converged:
            raise RuntimeError(f"{self.method.name} did not converge: {result.error}")
        self.results = {"energy": result.energy, "forces": result.forces}


def embed_conformers(smiles: str, n_conformers: int, seed: int) -> list[Atoms]:
    """``n_conformers`` distinct RDKit ETKDG conformers, MMFF-relaxed, lowest energy first."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    # The ignores below: rdkit-stubs' AllChem lacks the names AllChem re-exports from rdDistGeom and
    # rdForceFieldHelpers with `import *`, so mypy does not see them.
    params = AllChem.ETKDGv3()  # type: ignore[attr-defined]
    params.randomSeed = int(seed)
    params.pruneRmsThresh = 0.1
    conf_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=max(3 * n_conformers, n_conformers + 2), params=params))  # type: ignore[attr-defined]
    if not conf_ids:
        raise ValueError(f"RDKit could not embed a 3D structure for SMILES {smiles!r}")
    energies = {cid: 0.0 for cid in conf_ids}
    if AllChem.MMFFHasAllMoleculeParams(mol):  # type: ignore[attr-defined]
        for cid, (_, energy) in zip(conf_ids, AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)):  # type: ignore[attr-defined]
            energies[cid] = energy
    ranked = sorted(conf_ids, key=lambda cid: (energies[cid], cid))[:n_conformers]
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    return [Atoms(numbers=numbers, positions=mol.GetConformer(cid).GetPositions()) for cid in ranked]


def relax(atoms: Atoms, method, fmax: float = 0.02, steps: int = 300) -> Atoms:
    """Local minimum of ``method`` near ``atoms`` (BFGS); raises RuntimeError when SCF fails."""
    relaxed = atoms.copy()
    relaxed.calc = MethodCalculator(method)
    BFGS(relaxed, logfile=None).run(fmax=fmax, steps=steps)
    relaxed.calc = None
    return relaxed


def hessian(atoms: Atoms, method, delta: float = 0.005) -> np.ndarray:
    """Cartesian Hessian (eV/Å², 3N x 3N) by central differences of the method's forces."""
    n = len(atoms)
    h = np.zeros((3 * n, 3 * n))
    for i in range(3 * n):
        columns = []
        for sign in (+1, -1):
            positions = atoms.positions.copy()
            positions[i // 3, i % 3] += sign * delta
            result = method.compute(atoms.numbers, positions)
            if not result.converged:
                raise RuntimeError(f"{method.name} failed in the Hessian: {result.error}")
            columns.append(-result.forces.reshape(-1))
        h[i] = (columns[0] - columns[1]) / (2 * delta)
    return 0.5 * (h + h.T)


@dataclass
class NormalModes:
    """Vibrational modes: unit Cartesian directions (n_modes, N, 3) and force constants (eV/Å²)."""

    directions: np.ndarray
    force_constants: np.ndarray
    wavenumbers: np.ndarray  # cm^-1, for reporting


def normal_modes(atoms: Atoms, hess: np.ndarray) -> NormalModes:
    """Diagonalise the mass-weighted Hessian and drop the 5 or 6 rigid-body modes."""
    n = len(atoms)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)
    eigenvalues, eigenvectors = np.linalg.eigh(hess * np.outer(inv_sqrt_m, inv_sqrt_m))
    n_rigid = 5 if _is_linear(atoms) else 6
    if n == 1:
        n_rigid = 3
    keep = np.argsort(np.abs(eigenvalues))[n_rigid:]
    keep = keep[np.argsort(eigenvalues[keep])]
    cartesian = (eigenvectors[:, keep] * inv_sqrt_m[:, None]).T
    cartesian /= np.linalg.norm(cartesian, axis=1, keepdims=True)
    force_constants = np.einsum("mi,ij,mj->m", cartesian, hess, cartesian)
    # omega = sqrt(eigenvalue) in sqrt(eV / Å² / amu); convert to cm^-1
    omega = np.sqrt(np.abs(eigenvalues[keep])) * np.sign(eigenvalues[keep])
    wavenumbers = omega * np.sqrt(units._e / units._amu) * 1e10 / (2 * np.pi * units._c * 100)
    return NormalModes(cartesian.reshape(-1, n, 3), force_constants, wavenumbers)


def _is_linear(atoms: Atoms, tol: float = 1e-3) -> bool:
    if len(atoms) <= 2:
        return True
    centred = atoms.positions - atoms.positions.mean(axis=0)
    return np.linalg.svd(centred, compute_uv=False)[1] < tol


def displace(
    atoms: Atoms,
    modes: NormalModes,
    n_structures: int,
    rng: np.random.Generator,
    *,
    temperature: float = 1500.0,
    max_amplitude: float = 0.3,
    min_force_constant: float = 0.5,
    max_tries: int = 50,
) -> list[Atoms]:
    """Normal-mode sampling: ``R = R0 + sum_i ±sqrt(3 c_i N kT / K_i) q_i``, c_i summing to 1.

    ``K_i`` is floored at ``min_force_constant`` and each amplitude capped at
    ``max_amplitude`` Å, so soft modes do not break bonds; structures with two atoms closer
    than 60 % of their covalent contact are redrawn.
    """
    n_atoms = len(atoms)
    k_t = units.kB * temperature
    force_constants = np.maximum(modes.force_constants, min_force_constant)
    radii = covalent_radii[atoms.numbers]
    contact = 0.6 * (radii[:, None] + radii[None, :])
    np.fill_diagonal(contact, 0.0)
    structures: list[Atoms] = []
    while len(structures) < n_structures:
        for _ in range(max_tries):
            c = rng.random(len(force_constants))
            c /= c.sum()
            signs = rng.choice((-1.0, 1.0), size=len(c))
            amplitudes = np.minimum(np.sqrt(3.0 * c * n_atoms * k_t / force_constants), max_amplitude)
            positions = atoms.positions + np.einsum("m,mij->ij", signs * amplitudes, modes.directions)
            distances = np.linalg.norm(positions[:, None] - positions[None, :], axis=-1)
            if np.all(distances >= contact):
                break
        structures.append(Atoms(numbers=atoms.numbers, positions=positions))
    return structures
