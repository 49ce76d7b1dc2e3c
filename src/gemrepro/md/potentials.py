"""Analytic batched potentials, so the MD engine can be tested without a neural network.

:class:`MorseBondPotential` is a molecular force field in miniature: a Morse term on every bond of
each start structure (so the start geometry is a stretched-bond minimum and bonds can dissociate)
plus a soft exponential repulsion between the non-bonded atoms of the same molecule. Forces come
from autograd, as they do for GemNet. :class:`ExplodingPotential` pushes the atoms of chosen systems
outward to imitate a model that tears a molecule apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from gemrepro.analysis.stability import bond_lengths, reference_bonds
from gemrepro.md.state import Potential, per_system_sum


class MorseBondPotential:
    """``E = sum_bonds D (1 - exp(-a (r - r0)))^2 + sum_nonbonded A exp(-r / rho)`` per molecule.

    ``D`` (eV) is ``dissociation_energy``, ``a`` (1/Å) ``width``; the harmonic force constant of a
    bond is ``2 D a^2`` (18 eV/Å^2 by default, a C–H period of about 15 fs). Bonds and their
    rest lengths ``r0`` come from ``systems`` by covalent radii, as in the stability bond rule.
    """

    def __init__(
        self,
        systems: Sequence[Atoms],
        dissociation_energy: float = 4.0,
        width: float = 1.5,
        repulsion_energy: float = 10.0,
        repulsion_range: float = 0.35,
        covalent_factor: float = 1.2,
    ) -> None:
        if len(systems) == 0:
            raise ValueError("systems: expected at least one ase.Atoms")
        bonds, rest, bond_system, pairs, pair_system = [], [], [], [], []
        offset = 0
        for s, atoms in enumerate(systems):
            b, r0 = reference_bonds(atoms.numbers, atoms.positions, covalent_factor)
            n = len(atoms)
            bonded = np.zeros((n, n), dtype=bool)
            bonded[b[:, 0], b[:, 1]] = True
            i, j = np.triu_indices(n, k=1)
            keep = ~bonded[i, j]
            bonds.append(b + offset)
            rest.append(r0)
            bond_system.append(np.full(len(b), s))
            pairs.append(np.stack([i[keep], j[keep]], axis=1) + offset)
            pair_system.append(np.full(int(keep.sum()), s))
            offset += n
        self.n_atoms, self.n_systems = offset, len(systems)
        self.numbers = torch.as_tensor(np.concatenate([a.numbers for a in systems]))
        self.bonds = torch.as_tensor(np.concatenate(bonds)).reshape(-1, 2).long()
        self.rest_lengths = torch.as_tensor(np.concatenate(rest), dtype=torch.float64)
        self.bond_system = torch.as_tensor(np.concatenate(bond_system)).long()
        self.pairs = torch.as_tensor(np.concatenate(pairs)).reshape(-1, 2).long()
        self.pair_system = torch.as_tensor(np.concatenate(pair_system)).long()
        self.dissociation_energy, self.width = dissociation_energy, width
        self.repulsion_energy, self.repulsion_range = repulsion_energy, repulsion_range

    def energy(self, positions: torch.Tensor) -> torch.Tensor:
        """Energy per system (eV), differentiable in ``positions``."""
        stretch = bond_lengths(positions, self.bonds) - self.rest_lengths.to(positions)
        morse = self.dissociation_energy * (1.0 - torch.exp(-self.width * stretch)) ** 2
        repulsion = self.repulsion_energy * torch.exp(-bond_lengths(positions, self.pairs) / self.repulsion_range)
        return per_system_sum(morse, self.bond_system, self.n_systems) + per_system_sum(
            repulsion, self.pair_system, self.n_systems
        )

    def __call__(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.shape != (self.n_atoms, 3) or not torch.equal(numbers.cpu(), self.numbers):
            raise ValueError(
                f"positions/numbers: this potential was built for {self.n_atoms} atoms of {self.n_systems} systems "
                f"with fixed atomic numbers, got positions of shape {tuple(positions.shape)}"
            )
        return energy_and_forces(self.energy, positions)


def energy_and_forces(energy_fn, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies of ``energy_fn`` and the conservative forces ``-dE/dx`` by autograd."""
    with torch.enable_grad():
        x = positions.detach().requires_grad_(True)
        energy = energy_fn(x)
        (gradient,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), -gradient


class ExplodingPotential:
    """``base`` plus ``E = -push * sum_i |r_i - centroid|`` on the ``exploding`` systems.

    Every atom of those systems feels a constant outward force of ``push`` eV/Å, so the molecule
    flies apart and breaks the bond rule after a predictable number of steps; other systems are
    untouched.
    """

    def __init__(self, base: Potential, exploding: Sequence[int], push: float = 20.0) -> None:
        self.base, self.exploding, self.push = base, list(exploding), push

    def __call__(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        energy, forces = self.base(positions, numbers, system_index)
        for s in self.exploding:
            atoms = torch.nonzero(system_index == s).flatten()

            def outward(x: torch.Tensor) -> torch.Tensor:
                centred = x - x.mean(0)
                return -self.push * torch.linalg.vector_norm(centred, dim=-1).sum()

            extra_energy, extra_forces = energy_and_forces(outward, positions[atoms])
            energy = energy.clone()
            energy[s] += extra_energy
            forces = forces.index_add(0, atoms, extra_forces)
        return energy, forces
