"""Speed of gemrepro's batched MD engine against TorchSim's ``integrate`` on the same model and systems.

Both codes advance the same molecules with the same GemNet (through :class:`TorchSimGemNet`, the
potential object gemrepro's engine calls), the same BAOAB Langevin splitting, time step, friction
and number of steps, in the same process, taking turns (gemrepro, TorchSim, gemrepro, ...), and the
median round is reported with the lowest and highest. gemrepro runs as a user runs it
(:func:`gemrepro.md.run_md`: a stability check of every system at every step, the first frame and
a final checkpoint on disk); TorchSim runs ``torch_sim.integrate`` without a trajectory reporter,
so it does less per step. The difference therefore measures the per-step bookkeeping around the
shared force call, which is the same in both. Each clock spans the whole call, so both include
their set-up and first force call (TorchSim's ``integrate`` cannot leave them out).

An untimed first round runs both on every system; a system that fails a stability rule in
gemrepro's engine is reported and left out of both (:func:`~gemrepro.benchmarks.md.timed_without_failures`).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import torch
import torch_sim as ts
from ase import Atoms
from torch import nn
from torch_sim.units import MetalUnits

from gemrepro.benchmarks.md import EngineRun, _bare_network, checked_run, excluded_rows, timed_without_failures
from gemrepro.benchmarks.timing import round_ratios, spread
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.integrations.torchsim import TorchSimGemNet, molecules_to_state
from gemrepro.md.integrators import DEFAULT_DT_FS
from gemrepro.md.runner import DEFAULT_FRICTION_PER_FS, system_seeds
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
    """Wall time of ``n_steps`` TorchSim Langevin steps of all ``systems`` in one batch, set-up included
    (the molecules into a state, as ``run_md`` builds its own)."""
    gamma = torch.tensor(torchsim_friction(friction_per_fs), dtype=torch.float64, device=device)
    start = time.perf_counter()
    state = molecules_to_state(list(systems), device=device, dtype=torch.float64)
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
) -> dict:
    """System-steps per second of gemrepro's engine and of TorchSim's ``integrate``, and their ratio.

    Returns ``gemrepro_steps_per_s``, ``torchsim_steps_per_s`` (each path's median round),
    ``ratio`` (gemrepro / TorchSim speed, the median over rounds), ``ratio_min``, ``ratio_max``,
    ``ratios`` (one per round), ``excluded`` (systems left out of both) and the context (systems,
    atoms, steps, device, torch threads, TorchSim version).
    """
    systems = checked_run(systems, n_steps, repeats)
    device = resolve_device(device)
    potential = GemNetPotential(_bare_network(model), device=device)  # one frozen network for both codes
    adapter = TorchSimGemNet(potential, device=device)
    seeds = system_seeds(0, len(systems))
    failed: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="gemrepro-bench-torchsim-") as folder:
        runs = itertools.count()

        def ours(kept: list[int]) -> float:
            path = Path(folder) / f"run{next(runs)}.h5"
            run = EngineRun(potential, systems, seeds, n_steps, temperature_K, dt_fs, device, friction_per_fs)
            return run.seconds(kept, path, failed, "gemrepro engine")

        def theirs(kept: list[int]) -> float:
            chosen = [systems[k] for k in kept]
            return _torchsim_seconds(adapter, chosen, n_steps, temperature_K, dt_fs, friction_per_fs, device)

        kept, seconds = timed_without_failures(systems, {"gemrepro": ours, "torchsim": theirs}, repeats, failed)
    system_steps = len(kept) * n_steps
    ours_seconds, theirs_seconds = spread(seconds["gemrepro"])["median"], spread(seconds["torchsim"])["median"]
    return {
        "gemrepro_steps_per_s": system_steps / ours_seconds,
        "torchsim_steps_per_s": system_steps / theirs_seconds,
        **round_ratios(seconds["torchsim"], seconds["gemrepro"]),
        "n_systems": len(kept),
        "n_atoms": sum(len(systems[k]) for k in kept),
        "excluded": excluded_rows(systems, failed),
        "n_steps": int(n_steps),
        "repeats": int(repeats),
        "device": str(device),
        "gemrepro_seconds": ours_seconds,
        "torchsim_seconds": theirs_seconds,
        "torch_threads": torch.get_num_threads(),
        "torchsim_version": version("torch-sim-atomistic"),
    }
