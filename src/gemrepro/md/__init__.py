"""Batched molecular dynamics: many molecules advanced as one set of tensors.

The engine takes any batched energy-and-forces callable
``potential(positions, numbers, system_index) -> (energy (S,), forces (N, 3))`` in eV and eV/Å,
so a GemNet, a committee or an analytic test potential all plug in the same way. The engine knows
no model: :mod:`gemrepro.integrations.potential` turns a GemNet into such a callable.
"""

from gemrepro.md.integrators import langevin_baoab_step, velocity_verlet_step
from gemrepro.md.runner import MDSummary, one_torch_thread, run_md
from gemrepro.md.state import MDState, kinetic_temperature
from gemrepro.md.trajectory import export_extxyz, failed_frames, read_system

__all__ = [
    "MDState",
    "MDSummary",
    "export_extxyz",
    "failed_frames",
    "kinetic_temperature",
    "langevin_baoab_step",
    "one_torch_thread",
    "read_system",
    "run_md",
    "velocity_verlet_step",
]
