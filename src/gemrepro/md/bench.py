"""Speed of the batched MD engine against the classic loop: one ASE Langevin run per system.

Both paths advance the same systems with the same model, the same time step and the same number
of steps in the same process. With ``repeats`` > 1 they take turns (batched, ASE, batched, ...)
and the medians are reported, so a shared or throttled machine (whose speed here drifts by a
factor of 1.5 within minutes) slows both alike and their ratio stays meaningful. The batched path is :func:`gemrepro.md.run_md` as a user
runs it (failure checks every step; the trajectory file receives only the first frame and the
final checkpoint, so disk I/O does not hide the engine). The reference path is ``ase.md.Langevin``
with :class:`~gemrepro.model.GemNetCalculator`, one system at a time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from torch import nn

from gemrepro.md.gemnet import GemNetPotential
from gemrepro.md.integrators import DEFAULT_DT_FS
from gemrepro.md.runner import DEFAULT_FRICTION_PER_FS, run_md
from gemrepro.model import GemNetCalculator, resolve_device
from gemrepro.train import EnergyShift


def benchmark_systems(n_systems: int, seed: int = 0) -> list[Atoms]:
    """``n_systems`` start geometries cycling through the MD test molecules (RDKit + MMFF)."""
    from gemrepro.catalog import MD_MOLECULES
    from gemrepro.data.sampling import embed_conformers

    if n_systems < 1:
        raise ValueError(f"n_systems: expected at least 1, got {n_systems}")
    smiles = list(MD_MOLECULES.values())[: min(n_systems, len(MD_MOLECULES))]
    molecules = [embed_conformers(s, 1, seed)[0] for s in smiles]
    return [molecules[k % len(molecules)].copy() for k in range(n_systems)]


def _ase_langevin_seconds(
    network: nn.Module, systems: Sequence[Atoms], n_steps: int, temperature_K: float, dt_fs: float, device: torch.device
) -> float:
    """Wall time of ``n_steps`` ASE Langevin steps of each system in turn (after one warm-up call)."""
    calculator = GemNetCalculator(network, device=device)
    rng = np.random.default_rng(0)
    warm = systems[0].copy()
    warm.calc = calculator
    warm.get_forces()
    start = time.perf_counter()
    for atoms in systems:
        atoms = atoms.copy()
        atoms.calc = calculator
        thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
        dynamics = Langevin(atoms, dt_fs * units.fs, temperature_K=temperature_K,
                            friction=DEFAULT_FRICTION_PER_FS / units.fs, fixcm=False, rng=rng)
        dynamics.run(n_steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def benchmark_md(
    model: nn.Module,
    systems: Sequence[Atoms],
    n_steps: int,
    device: str | torch.device = "auto",
    *,
    temperature_K: float = 300.0,
    dt_fs: float = DEFAULT_DT_FS,
    repeats: int = 1,
) -> dict[str, float | int | str | list[float]]:
    """System-steps per second of the batched engine and of the ASE loop, and their ratio.

    Returns ``batched_steps_per_s``, ``ase_steps_per_s`` (medians over ``repeats`` alternating
    rounds), ``ratio`` (batched / ASE), ``ratios`` (one per round) plus the context:
    ``n_systems``, ``n_atoms``, ``n_steps``, ``repeats``, ``device``, ``torch_threads`` and the
    median wall times. ``model`` is a GemNet or an ``EnergyShift`` around one; only the
    network's cost matters for speed, so both paths use the bare network.
    """
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one ase.Atoms")
    if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 1):
        raise ValueError(f"n_steps: expected a positive integer, got {n_steps!r}")
    if not (isinstance(repeats, (int, np.integer)) and repeats >= 1):
        raise ValueError(f"repeats: expected a positive integer, got {repeats!r}")
    device = resolve_device(device)
    network = model.model if isinstance(model, EnergyShift) else model
    potential = GemNetPotential(network, device=device)  # eval mode, frozen weights: shared by both paths
    batched_seconds, ase_seconds = [], []
    with tempfile.TemporaryDirectory(prefix="gemrepro-bench-md-") as folder:
        run_md(potential, systems, n_steps=1, path=Path(folder) / "warm.h5", temperatures=temperature_K,
               dt_fs=dt_fs, device=device, progress=False)
        for round_ in range(int(repeats)):
            summary = run_md(potential, systems, n_steps=n_steps, path=Path(folder) / f"bench{round_}.h5",
                             temperatures=temperature_K, dt_fs=dt_fs, frame_interval=n_steps,
                             checkpoint_interval=n_steps, device=device, progress=False)
            batched_seconds.append(summary.wall_time_s)
            ase_seconds.append(_ase_langevin_seconds(potential.network, systems, n_steps, temperature_K, dt_fs, device))
    system_steps = len(systems) * n_steps
    batched, ase = system_steps / float(np.median(batched_seconds)), system_steps / float(np.median(ase_seconds))
    return {
        "batched_steps_per_s": batched,
        "ase_steps_per_s": ase,
        "ratio": batched / ase,
        "ratios": [a / b for a, b in zip(ase_seconds, batched_seconds, strict=True)],
        "n_systems": len(systems),
        "n_atoms": sum(len(a) for a in systems),
        "n_steps": int(n_steps),
        "repeats": int(repeats),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "batched_seconds": float(np.median(batched_seconds)),
        "ase_seconds": float(np.median(ase_seconds)),
    }
