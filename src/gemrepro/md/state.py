"""Batched MD state: many independent molecules advanced as one set of tensors.

Units. Positions are in Å, masses in amu and energies in eV, and time is kept in ASE's natural
unit ``sqrt(amu Å² / eV)`` (``ase.units.fs`` = 0.0982 of it is one femtosecond). In this system
``p = m v``, the kinetic energy ``p² / 2m`` comes out in eV and ``dp/dt = F`` with forces in eV/Å,
with no conversion factors; momenta are the same numbers ASE's ``Atoms.get_momenta()`` holds.
The public API speaks fs, 1/fs and K; :data:`FS` and :data:`KB` convert once at the edges.

Random numbers. Every system owns a ``torch.Generator`` seeded with its own seed, and draws its
initial velocities and all its Langevin noise from it alone. A system's trajectory therefore does
not depend on which other systems share the batch, and the generators' states are plain byte
tensors that a checkpoint can store to continue a run bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from ase import units

FS: float = units.fs
"""One femtosecond in ASE time units."""
KB: float = units.kB
"""Boltzmann's constant in eV/K."""

Potential = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``potential(positions (N,3), numbers (N,), system_index (N,)) -> (energy (S,), forces (N,3))``
in eV and eV/Å, for a batch of ``S`` systems whose atoms are contiguous and ordered by system."""


@dataclass
class MDState:
    """Everything that defines a batched MD run at one step (atoms ``N``, systems ``S``)."""

    positions: torch.Tensor  # (N, 3) Å
    momenta: torch.Tensor  # (N, 3) amu Å / ASE time
    masses: torch.Tensor  # (N,) amu
    numbers: torch.Tensor  # (N,) atomic numbers
    system_index: torch.Tensor  # (N,) system of each atom, sorted
    reference_positions: torch.Tensor  # (N, 3) start structure: bond references, stand-in for dead systems
    temperature: torch.Tensor  # (S,) K, the thermostat target
    friction: torch.Tensor  # (S,) 1/fs
    degrees_of_freedom: torch.Tensor  # (S,) used for the kinetic temperature
    energy: torch.Tensor  # (S,) eV, potential energy at ``positions``
    forces: torch.Tensor  # (N, 3) eV/Å at ``positions``
    alive: torch.Tensor  # (S,) bool: still integrated (a failed system may go on: run_md's after_failure)
    failure_step: torch.Tensor  # (S,) step of the first failure, -1 while not failed
    failure_rule: torch.Tensor  # (S,) 1 + index into failures.STOP_RULES, 0 while not failed
    failure_atoms: torch.Tensor  # (S, 2) offending atoms (indices within the system), -1 padded
    generators: list[torch.Generator]  # one per system
    step: int = 0

    @property
    def n_systems(self) -> int:
        return len(self.temperature)

    def atom_offsets(self) -> torch.Tensor:
        """``(S + 1,)`` start of each system's atoms, then the total atom count."""
        counts = torch.bincount(self.system_index, minlength=self.n_systems)
        return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields by name (what a checkpoint stores besides step and RNG)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}

    def replace(self, **changes) -> MDState:
        return replace(self, **changes)


def per_system_sum(values: torch.Tensor, system_index: torch.Tensor, n_systems: int) -> torch.Tensor:
    """Sum per-atom ``values`` (N, ...) over each system's atoms -> (S, ...)."""
    out = values.new_zeros((n_systems,) + tuple(values.shape[1:]))
    return out.index_add_(0, system_index, values)


def batch_inputs(
    positions: Sequence, numbers: Sequence, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (positions (N, 3), numbers (N,), system_index (N,)) a potential takes, from per-system arrays."""
    all_positions = torch.as_tensor(
        np.concatenate([np.asarray(p).reshape(-1, 3) for p in positions]), dtype=dtype, device=device
    )
    counts = torch.as_tensor([len(z) for z in numbers], device=device)
    all_numbers = torch.as_tensor(np.concatenate([np.asarray(z).reshape(-1) for z in numbers]), device=device)
    return all_positions, all_numbers, torch.repeat_interleave(torch.arange(len(counts), device=device), counts)


def kinetic_energy(state: MDState) -> torch.Tensor:
    """Kinetic energy per system (eV)."""
    per_atom = (state.momenta**2).sum(-1) / (2.0 * state.masses)
    return per_system_sum(per_atom, state.system_index, state.n_systems)


def kinetic_temperature(state: MDState) -> torch.Tensor:
    """Instantaneous kinetic temperature per system (K): ``2 E_kin / (dof k_B)``."""
    return 2.0 * kinetic_energy(state) / (state.degrees_of_freedom * KB)


def maxwell_boltzmann_momenta(masses: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Momenta of one system drawn at ``temperature`` (K), then made free of centre-of-mass motion.

    Removing the centre-of-mass momentum leaves ``3N - 3`` thermal degrees of freedom, as ASE's
    ``MaxwellBoltzmannDistribution`` followed by ``Stationary`` does; no rescaling.
    """
    noise = torch.randn((len(masses), 3), generator=generator, dtype=masses.dtype, device=masses.device)
    momenta = noise * torch.sqrt(masses * KB * temperature)[:, None]
    return momenta - masses[:, None] * (momenta.sum(0) / masses.sum())


def new_generator(seed: int, device: torch.device | str) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def build_state(
    positions: list,
    numbers: list,
    masses: list,
    temperatures: list[float],
    frictions: list[float],
    seeds: list[int],
    *,
    remove_com_dof: bool,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> MDState:
    """A fresh state at step 0 with Maxwell–Boltzmann momenta; energy and forces still zero.

    ``positions``, ``numbers`` and ``masses`` are per-system sequences (Å, Z, amu).
    ``remove_com_dof`` says whether the dynamics conserves the (zero) centre-of-mass momentum,
    as velocity Verlet does; then a system has ``3N - 3`` degrees of freedom instead of ``3N``.
    """
    tensor: dict[str, Any] = dict(dtype=dtype, device=device)
    generators = [new_generator(seed, device) for seed in seeds]
    pos = [torch.as_tensor(p, **tensor).reshape(-1, 3) for p in positions]
    mass = [torch.as_tensor(m, **tensor).reshape(-1) for m in masses]
    momenta = [
        maxwell_boltzmann_momenta(m, float(t), g) for m, t, g in zip(mass, temperatures, generators, strict=True)
    ]
    counts = torch.tensor([len(p) for p in pos], device=device)
    n_systems = len(pos)
    all_positions = torch.cat(pos)
    dof = 3 * counts - 3 if remove_com_dof else 3 * counts
    return MDState(
        positions=all_positions,
        momenta=torch.cat(momenta),
        masses=torch.cat(mass),
        numbers=torch.cat([torch.as_tensor(z, dtype=torch.long, device=device).reshape(-1) for z in numbers]),
        system_index=torch.repeat_interleave(torch.arange(n_systems, device=device), counts),
        reference_positions=all_positions.clone(),
        temperature=torch.as_tensor(temperatures, **tensor),
        friction=torch.as_tensor(frictions, **tensor),
        degrees_of_freedom=dof.clamp_min(1).to(dtype),
        energy=torch.zeros(n_systems, **tensor),
        forces=torch.zeros_like(all_positions),
        alive=torch.ones(n_systems, dtype=torch.bool, device=device),
        failure_step=torch.full((n_systems,), -1, dtype=torch.long, device=device),
        failure_rule=torch.zeros(n_systems, dtype=torch.long, device=device),
        failure_atoms=torch.full((n_systems, 2), -1, dtype=torch.long, device=device),
        generators=generators,
        step=0,
    )


_ATOM_FIELDS = ("positions", "momenta", "masses", "numbers", "reference_positions", "forces")
_SYSTEM_FIELDS = (
    "temperature",
    "friction",
    "degrees_of_freedom",
    "energy",
    "alive",
    "failure_step",
    "failure_rule",
    "failure_atoms",
)


def select_systems(state: MDState, systems: Sequence[int]) -> MDState:
    """The state of ``systems`` alone, in that order (generators shared, not copied).

    A system's trajectory depends only on its own tensors and generator, so a selection continues
    exactly as the system would have in the full batch; this is how a campaign swaps systems.
    """
    systems = [int(s) for s in systems]
    offsets = state.atom_offsets().tolist()
    device = state.positions.device
    atoms = (
        torch.cat([torch.arange(offsets[s], offsets[s + 1], device=device) for s in systems])
        if systems
        else torch.zeros(0, dtype=torch.long, device=device)
    )
    counts = torch.tensor([offsets[s + 1] - offsets[s] for s in systems], dtype=torch.long, device=device)
    chosen = torch.tensor(systems, dtype=torch.long, device=device)
    return MDState(
        **{name: getattr(state, name)[atoms] for name in _ATOM_FIELDS},
        **{name: getattr(state, name)[chosen] for name in _SYSTEM_FIELDS},
        system_index=torch.repeat_interleave(torch.arange(len(systems), device=device), counts),
        generators=[state.generators[s] for s in systems],
        step=state.step,
    )


def concatenate_states(states: Sequence[MDState], step: int) -> MDState:
    """One batch of the systems of ``states``, in order, at ``step`` (the inverse of :func:`select_systems`)."""
    if not states:
        raise ValueError("states: expected at least one state to concatenate")
    offsets = np.cumsum([0] + [s.n_systems for s in states[:-1]])
    return MDState(
        **{name: torch.cat([getattr(s, name) for s in states]) for name in _ATOM_FIELDS + _SYSTEM_FIELDS},
        system_index=torch.cat([s.system_index + int(o) for s, o in zip(states, offsets, strict=True)]),
        generators=[g for s in states for g in s.generators],
        step=step,
    )
