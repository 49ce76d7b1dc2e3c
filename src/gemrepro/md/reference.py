"""The reference path: one system at a time through ASE's own MD, to check the batched engine.

:class:`PotentialCalculator` lets any batched potential act as an ASE calculator for a single
molecule; :func:`ase_langevin_temperatures` runs ``ase.md.Langevin`` with it.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from gemrepro.md.state import Potential


class PotentialCalculator(Calculator):
    """ASE calculator (energy eV, forces eV/Å) for one system of a batched potential."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, potential: Potential, dtype: torch.dtype = torch.float64, **kwargs) -> None:
        super().__init__(**kwargs)
        self.potential, self.dtype = potential, dtype

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        positions = torch.as_tensor(self.atoms.positions, dtype=self.dtype)
        numbers = torch.as_tensor(self.atoms.numbers, dtype=torch.long)
        energy, forces = self.potential(positions, numbers, torch.zeros(len(numbers), dtype=torch.long))
        self.results = {"energy": float(energy[0]), "forces": forces.detach().cpu().double().numpy()}


def ase_langevin_temperatures(
    atoms: Atoms,
    potential: Potential,
    *,
    temperature_K: float,
    friction_per_fs: float,
    n_steps: int,
    dt_fs: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Kinetic temperature (K, 3N degrees of freedom) after each of ``n_steps`` ASE Langevin steps.

    The centre of mass is left free (``fixcm=False``), as in the batched engine, so both sample
    all ``3N`` momentum degrees of freedom.
    """
    atoms = atoms.copy()
    atoms.calc = PotentialCalculator(potential)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms, preserve_temperature=False)
    dyn = Langevin(
        atoms, dt_fs * units.fs, temperature_K=temperature_K, friction=friction_per_fs / units.fs, fixcm=False, rng=rng
    )
    temperatures = np.empty(n_steps)
    for k in range(n_steps):
        dyn.run(1)
        temperatures[k] = atoms.get_temperature()
    return temperatures
