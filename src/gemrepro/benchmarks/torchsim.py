"""Speed of gemrepro's batched MD engine against TorchSim's ``integrate`` on the same model and systems.

Both codes advance the same molecules with the same GemNet (through :class:`TorchSimGemNet`, the
potential object gemrepro's engine calls), the same BAOAB Langevin splitting, time step, friction
and number of steps, in the same process; with ``repeats`` > 1 they take turns and the medians
are reported, so a machine whose speed drifts slows both alike. gemrepro runs as a user runs it
(:func:`gemrepro.md.run_md`: a stability check of every system at every step, the first frame and
a final checkpoint on disk); TorchSim runs ``torch_sim.integrate`` without a trajectory reporter,
so it does less per step. The difference therefore measures the per-step bookkeeping around the
shared force call, which is the same in both.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch import nn
from torch_sim.units import MetalUnits

from gemrepro.benchmarks.md import _bare_network, checked_run
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.integrations.torchsim import TorchSimGemNet, molecules_to_state
from gemrepro.md.integrators import DEFAULT_DT_FS
from gemrepro.md.runner import DEFAULT_FRICTION_PER_FS, run_md
from gemrepro.model import resolve_device


def torchsim_friction(friction_per_fs: float) -> float:
    """A Langevin friction in 1/fs in TorchSim's internal time unit (Å·sqrt(amu/eV), about 10.18 fs)."""
    fs_in_internal_units = 1e-3 * float(MetalUnits.time)  # TorchSim time steps are given in ps
    return friction_per_fs / fs_in_internal_units


def _torchsim_seconds(
    model: TorchSimGemNet,
    systems: Sequence[Atoms],
    n_steps: int,
    temperature_K: float,
    dt_fs: float,
    friction_per_fs: float,
    device: torch.device,
) -> float:
    """Wall time of ``n_steps`` TorchSim Langevin steps of all ``systems`` in one batch."""
    state = molecules_to_state(list(systems), device=device, dtype=torch.float64)
    gamma = torch.tensor(torchsim_friction(friction_per_fs), dtype=torch.float64, device=device)
    start = time.perf_counter()
    ts.integrate(
        state,
        model,
        integrator=ts.nvt_langevin,
        n_steps=n_steps,
        temperature=temperature_K,
        timestep=dt_fs * 1e-3,
        gamma=gamma,
        seed=0,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def benchmark_torchsim(
    model: nn.Module,
    systems: Sequence[Atoms],
    n_steps: int,
    device: str | torch.device = "auto",
    *,
    temperature_K: float = 300.0,
    dt_fs: float = DEFAULT_DT_FS,
    friction_per_fs: float = DEFAULT_FRICTION_PER_FS,
    repeats: int = 1,
) -> dict[str, float | int | str | list[float]]:
    """System-steps per second of gemrepro's engine and of TorchSim's ``integrate``, and their ratio.

    Returns ``gemrepro_steps_per_s``, ``torchsim_steps_per_s`` (medians over ``repeats``
    alternating rounds), ``ratio`` (gemrepro / TorchSim), ``ratios`` (one per round) and the
    context (systems, atoms, steps, device, torch threads, TorchSim version).
    """
    systems = checked_run(systems, n_steps, repeats)
    device = resolve_device(device)
    potential = GemNetPotential(_bare_network(model), device=device)  # one frozen network for both codes
    adapter = TorchSimGemNet(potential, device=device)
    gemrepro_seconds, torchsim_seconds = [], []
    with tempfile.TemporaryDirectory(prefix="gemrepro-bench-torchsim-") as folder:
        run_md(
            potential,
            systems,
            n_steps=1,
            path=Path(folder) / "warm.h5",
            temperatures=temperature_K,
            dt_fs=dt_fs,
            device=device,
            progress=False,
        )
        _torchsim_seconds(adapter, systems, 1, temperature_K, dt_fs, friction_per_fs, device)
        for round_ in range(int(repeats)):
            summary = run_md(
                potential,
                systems,
                n_steps=n_steps,
                path=Path(folder) / f"bench{round_}.h5",
                temperatures=temperature_K,
                dt_fs=dt_fs,
                friction=friction_per_fs,
                frame_interval=n_steps,
                checkpoint_interval=n_steps,
                device=device,
                progress=False,
            )
            gemrepro_seconds.append(summary.wall_time_s)
            torchsim_seconds.append(
                _torchsim_seconds(adapter, systems, n_steps, temperature_K, dt_fs, friction_per_fs, device)
            )
    system_steps = len(systems) * n_steps
    ours, theirs = system_steps / float(np.median(gemrepro_seconds)), system_steps / float(np.median(torchsim_seconds))
    return {
        "gemrepro_steps_per_s": ours,
        "torchsim_steps_per_s": theirs,
        "ratio": ours / theirs,
        "ratios": [t / g for g, t in zip(gemrepro_seconds, torchsim_seconds, strict=True)],
        "n_systems": len(systems),
        "n_atoms": sum(len(a) for a in systems),
        "n_steps": int(n_steps),
        "repeats": int(repeats),
        "device": str(device),
        "gemrepro_seconds": float(np.median(gemrepro_seconds)),
        "torchsim_seconds": float(np.median(torchsim_seconds)),
        "torch_threads": torch.get_num_threads(),
        "torchsim_version": version("torch-sim-atomistic"),
    }
