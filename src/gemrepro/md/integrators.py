"""Integrators as pure functions ``step(state, potential, dt_fs) -> new state``.

Both reuse the forces cached in the state, so each step costs one potential evaluation.
Systems that are no longer integrated (``state.alive`` false: failed in a frozen run, or turned
non-finite; see :func:`gemrepro.md.run_md`'s ``after_failure``) are frozen: their positions,
momenta, energy and forces are carried over unchanged, and the potential sees their *start*
structure instead of the failed one, so a NaN or an exploded geometry never reaches the model
while the batch keeps its shape (and a potential may hold a fixed per-system topology).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gemrepro.md.state import FS, KB, MDState, Potential

DEFAULT_DT_FS = 0.5


def evaluate(state: MDState, potential: Potential, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy (S,) and forces (N, 3) at ``positions``; dead systems keep their cached values."""
    dead_atoms = ~state.alive[state.system_index]
    inputs = torch.where(dead_atoms[:, None], state.reference_positions, positions)
    energy, forces = potential(inputs, state.numbers, state.system_index)
    if energy.shape != state.energy.shape or forces.shape != state.forces.shape:
        raise ValueError(
            f"potential: expected energy {tuple(state.energy.shape)} and forces {tuple(state.forces.shape)}, "
            f"got {tuple(energy.shape)} and {tuple(forces.shape)}"
        )
    energy = torch.where(state.alive, energy.detach().to(state.energy.dtype), state.energy)
    forces = torch.where(dead_atoms[:, None], state.forces, forces.detach().to(state.forces.dtype))
    return energy, forces


def _langevin_noise(state: MDState) -> torch.Tensor:
    """Standard normal noise (N, 3), each system's block from that system's own generator."""
    counts = torch.bincount(state.system_index, minlength=state.n_systems).tolist()
    dtype, device = state.momenta.dtype, state.momenta.device
    blocks = [
        torch.randn((n, 3), generator=g, dtype=dtype, device=device)
        for n, g in zip(counts, state.generators, strict=True)
    ]
    return torch.cat(blocks)


def langevin_baoab_step(state: MDState, potential: Potential, dt_fs: float = DEFAULT_DT_FS) -> MDState:
    """One BAOAB Langevin step (Leimkuhler & Matthews) with per-system temperature and friction.

    The O step is exact Ornstein–Uhlenbeck: ``p <- c1 p + sqrt((1 - c1^2) m kT) xi`` with
    ``c1 = exp(-friction dt)``. BAOAB samples configurations with O(dt^2) error even in stiff bonds.
    """
    dt = dt_fs * FS
    frozen = ~state.alive[state.system_index][:, None]
    masses = state.masses[:, None]
    momenta = state.momenta + 0.5 * dt * state.forces
    positions = state.positions + 0.5 * dt * momenta / masses
    c1 = torch.exp(-state.friction * dt_fs)[state.system_index][:, None]
    kT = (KB * state.temperature)[state.system_index][:, None]
    momenta = c1 * momenta + torch.sqrt((1.0 - c1**2) * masses * kT) * _langevin_noise(state)
    positions = positions + 0.5 * dt * momenta / masses
    positions = torch.where(frozen, state.positions, positions)
    energy, forces = evaluate(state, potential, positions)
    momenta = torch.where(frozen, state.momenta, momenta + 0.5 * dt * forces)
    return state.replace(positions=positions, momenta=momenta, energy=energy, forces=forces, step=state.step + 1)


def velocity_verlet_step(state: MDState, potential: Potential, dt_fs: float = DEFAULT_DT_FS) -> MDState:
    """One velocity-Verlet (NVE) step; time reversible and symplectic, so energy does not drift."""
    dt = dt_fs * FS
    frozen = ~state.alive[state.system_index][:, None]
    momenta = state.momenta + 0.5 * dt * state.forces
    positions = state.positions + dt * momenta / state.masses[:, None]
    positions = torch.where(frozen, state.positions, positions)
    energy, forces = evaluate(state, potential, positions)
    momenta = torch.where(frozen, state.momenta, momenta + 0.5 * dt * forces)
    return state.replace(positions=positions, momenta=momenta, energy=energy, forces=forces, step=state.step + 1)


INTEGRATORS: dict[str, Callable[[MDState, Potential, float], MDState]] = {
    "langevin": langevin_baoab_step,
    "verlet": velocity_verlet_step,
}


def get_integrator(name: str) -> Callable[[MDState, Potential, float], MDState]:
    if name not in INTEGRATORS:
        raise ValueError(f"integrator: expected one of {sorted(INTEGRATORS)}, got {name!r}")
    return INTEGRATORS[name]
