"""Labelled ASE structures as torch_geometric graphs, plus per-element energy references.

Every structure becomes one ``Data`` with ``z`` (atomic numbers), ``pos`` (Å), ``energy``
(eV, shape ``(1,)`` so batches stack to ``(n_graphs,)``), ``forces`` (eV/Å) and ``n_atoms``.
The energy target is the atomization energy when the structure carries one (the papers learn
atomization energies), otherwise the calculator's total energy.

``fit_element_references`` solves ``E ≈ Σ_Z n_Z · e_Z`` by least squares, so a model only has
to learn the small residual energy: atomization and total energies are dominated by a sum of
per-element constants that a network with small output weights would learn slowly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

__all__ = [
    "AtomsDataset",
    "atoms_to_data",
    "energy_keys",
    "epoch_batches",
    "fit_element_references",
    "make_loader",
]


def atoms_to_data(atoms, energy_key: str = "atomization_energy", dtype: torch.dtype = torch.float64) -> Data:
    """One labelled ``ase.Atoms`` as a graph with energy and force targets.

    ``energy_key`` names the ``atoms.info`` entry used as the energy target when present;
    otherwise the attached calculator's total energy is used. Forces come from the calculator.
    """
    calc = atoms.calc
    if calc is None:
        raise ValueError(f"atoms {atoms.get_chemical_formula()!r}: expected a calculator with energy and forces")
    if energy_key and energy_key in atoms.info:
        energy = float(atoms.info[energy_key])
    else:
        try:
            energy = float(atoms.get_potential_energy())
        except Exception as exc:  # calculators raise several kinds of missing-property errors
            raise ValueError(
                f"atoms {atoms.get_chemical_formula()!r}: expected info[{energy_key!r}] or a calculator energy ({exc})"
            ) from None
    try:
        forces = np.asarray(atoms.get_forces(), dtype=float)
    except Exception as exc:
        raise ValueError(f"atoms {atoms.get_chemical_formula()!r}: expected calculator forces ({exc})") from None
    n_atoms = len(atoms)
    if n_atoms == 0:
        raise ValueError("atoms: expected at least one atom")
    if forces.shape != (n_atoms, 3):
        raise ValueError(f"forces: expected shape ({n_atoms}, 3), got {forces.shape}")
    if not (np.isfinite(energy) and np.isfinite(forces).all()):
        raise ValueError(f"atoms {atoms.get_chemical_formula()!r}: non-finite energy or forces")
    return Data(
        z=torch.as_tensor(atoms.get_atomic_numbers(), dtype=torch.long),
        pos=torch.as_tensor(atoms.get_positions(), dtype=dtype),
        energy=torch.tensor([energy], dtype=dtype),
        forces=torch.as_tensor(forces, dtype=dtype),
        n_atoms=torch.tensor([n_atoms], dtype=torch.long),
    )


def energy_keys(atoms_list: Iterable) -> list[str]:
    """The energy targets every structure carries, for ``atoms_to_data``'s ``energy_key``: real-valued
    ``atoms.info`` entries and ``energy``, the calculator's total energy (integers such as indices are no energies).
    """
    common: set[str] | None = None
    for atoms in atoms_list:
        keys = {k for k, v in atoms.info.items() if isinstance(v, (float, np.floating)) and not isinstance(v, bool)}
        if atoms.calc is not None and "energy" in atoms.calc.results:
            keys.add("energy")
        common = keys if common is None else common & keys
    return sorted(common or ())


class GraphSet(Protocol):
    """What training and evaluation ask of a data set: its size and a graph by index (a list, an AtomsDataset)."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Data: ...


class AtomsDataset(Dataset):
    """A list of graphs in memory; index it like a list, subset it with a list of indices."""

    def __init__(self, graphs: Sequence[Data]):
        graphs = list(graphs)
        for i, g in enumerate(graphs):
            missing = [k for k in ("z", "pos", "energy", "forces") if getattr(g, k, None) is None]
            if missing:
                raise ValueError(f"graph {i}: expected fields z, pos, energy, forces; missing {missing}")
        self.graphs = graphs

    @classmethod
    def from_atoms(
        cls,
        atoms_list: Iterable,
        energy_key: str = "atomization_energy",
        dtype: torch.dtype = torch.float64,
    ) -> "AtomsDataset":
        return cls([atoms_to_data(a, energy_key=energy_key, dtype=dtype) for a in atoms_list])

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> Data:
        return self.graphs[index]

    def subset(self, indices: Iterable[int]) -> "AtomsDataset":
        return AtomsDataset([self.graphs[int(i)] for i in indices])

    def to(self, dtype: torch.dtype) -> "AtomsDataset":
        """A copy with floating-point fields in ``dtype`` (the model's precision)."""
        out = []
        for g in self.graphs:
            g = g.clone()
            for key in ("pos", "energy", "forces"):
                g[key] = g[key].to(dtype)
            out.append(g)
        return AtomsDataset(out)


def epoch_batches(n_samples: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """The batches of one epoch: a permutation seeded by ``(seed, epoch)``, cut in order.

    Seeding per epoch (not one generator for the whole run) makes any epoch's order
    reproducible on its own, so a resumed run can rebuild it and skip the batches it had done.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    if shuffle:
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        order = torch.randperm(n_samples, generator=generator).tolist()
    else:
        order = list(range(n_samples))
    return [order[i : i + batch_size] for i in range(0, n_samples, batch_size)]


def make_loader(
    dataset: GraphSet,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    skip_batches: int = 0,
) -> DataLoader:
    """A torch_geometric ``DataLoader`` over ``dataset`` with the order of ``epoch_batches``.

    ``skip_batches`` drops the first batches of the epoch (those a resumed run already did).
    """
    batches = epoch_batches(len(dataset), batch_size, seed, epoch, shuffle)[skip_batches:]
    return DataLoader(dataset, batch_sampler=batches)


def _element_counts(dataset: GraphSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(elements present, count matrix molecules × elements, energies)."""
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one structure to fit element references")
    zs = [np.asarray(dataset[i].z) for i in range(len(dataset))]
    elements = np.unique(np.concatenate(zs))
    column = {int(z): j for j, z in enumerate(elements)}
    counts = np.zeros((len(zs), len(elements)))
    for i, z in enumerate(zs):
        for element, n in zip(*np.unique(z, return_counts=True)):
            counts[i, column[int(element)]] = n
    energies = np.array([float(dataset[i].energy.reshape(-1)[0]) for i in range(len(dataset))])
    return elements, counts, energies


def fit_element_references(dataset: GraphSet) -> dict[int, float]:
    """Per-element energies ``e_Z`` (eV) minimising ``Σ_m (E_m − Σ_Z n_mZ e_Z)²``.

    When compositions are collinear (e.g. a single molecule), ``lstsq`` returns the
    minimum-norm solution: the shift is then not unique, but still removes the mean energy.
    """
    elements, counts, energies = _element_counts(dataset)
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {int(z): float(e) for z, e in zip(elements, solution)}
