"""Speed of the batched MD engine against the classic loop: one ASE Langevin run per system.

Both paths advance the same systems with the same model, the same time step and the same number
of steps in the same process. With ``repeats`` > 1 they take turns (batched, ASE, batched, ...)
and the medians are reported, so a shared or throttled machine (whose speed here drifts by a
factor of 1.5 within minutes) slows both alike and their ratio stays meaningful. The batched path is :func:`gemrepro.md.run_md` as a user
runs it (failure checks every step; the trajectory file receives only the first frame and the
final checkpoint, so disk I/O does not hide the engine). The reference path is ``ase.md.Langevin``
with :class:`~gemrepro.integrations.GemNetCalculator`, one system at a time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from torch import nn

from gemrepro.catalog import MD_MOLECULES
from gemrepro.data.sampling import embed_conformers
from gemrepro.integrations import GemNetCalculator
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.md.integrators import DEFAULT_DT_FS
from gemrepro.md.runner import DEFAULT_FRICTION_PER_FS, run_md
from gemrepro.md.state import batch_inputs
from gemrepro.model import EnergyShift, GemNet, resolve_device


def benchmark_systems(n_systems: int, seed: int = 0) -> list[Atoms]:
    """``n_systems`` start geometries cycling through the MD test molecules (RDKit + MMFF)."""
    if n_systems < 1:
        raise ValueError(f"n_systems: expected at least 1, got {n_systems}")
    smiles = list(MD_MOLECULES.values())[: min(n_systems, len(MD_MOLECULES))]
    molecules = [embed_conformers(s, 1, seed)[0] for s in smiles]
    return [molecules[k % len(molecules)].copy() for k in range(n_systems)]


def _bare_network(model: nn.Module) -> nn.Module:
    """The GemNet inside an ``EnergyShift`` (its element references cost nothing to time)."""
    return model.model if isinstance(model, EnergyShift) else model


def _force_call(potential: GemNetPotential, inputs: tuple[torch.Tensor, ...], device: torch.device) -> None:
    """One energy-and-forces call, finished (on a GPU the host waits for the kernels)."""
    potential(*inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()


def _call_seconds(
    potential: GemNetPotential, inputs: tuple[torch.Tensor, ...], device: torch.device, calls: int
) -> list[float]:
    """Wall time of each of ``calls`` energy-and-forces calls on the same inputs."""
    times = []
    for _ in range(int(calls)):
        start = time.perf_counter()
        _force_call(potential, inputs, device)
        times.append(time.perf_counter() - start)
    return times


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
        dynamics = Langevin(
            atoms,
            dt_fs * units.fs,
            temperature_K=temperature_K,
            friction=DEFAULT_FRICTION_PER_FS / units.fs,
            fixcm=False,
            rng=rng,
        )
        dynamics.run(n_steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def checked_run(systems: Sequence[Atoms], n_steps: int, repeats: int) -> list[Atoms]:
    """The systems of a timed MD comparison as a list, after refusing an empty one or non-positive counts."""
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one ase.Atoms")
    if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 1):
        raise ValueError(f"n_steps: expected a positive integer, got {n_steps!r}")
    if not (isinstance(repeats, (int, np.integer)) and repeats >= 1):
        raise ValueError(f"repeats: expected a positive integer, got {repeats!r}")
    return systems


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
    systems = checked_run(systems, n_steps, repeats)
    device = resolve_device(device)
    potential = GemNetPotential(_bare_network(model), device=device)  # eval mode, frozen weights: shared by both paths
    batched_seconds, ase_seconds = [], []
    with tempfile.TemporaryDirectory(prefix="gemrepro-bench-md-") as folder:
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
        for round_ in range(int(repeats)):
            summary = run_md(
                potential,
                systems,
                n_steps=n_steps,
                path=Path(folder) / f"bench{round_}.h5",
                temperatures=temperature_K,
                dt_fs=dt_fs,
                frame_interval=n_steps,
                checkpoint_interval=n_steps,
                device=device,
                progress=False,
            )
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


def batch_scaling(
    model: nn.Module,
    systems: Sequence[Atoms],
    *,
    sizes: Sequence[int] | None = None,
    device: str | torch.device = "auto",
    repeats: int = 3,
) -> dict:
    """What limits batching: the force-call time against the number of systems in the batch.

    Times one energy-and-forces call of the first S ``systems`` for each S in ``sizes`` (default
    1, 2, 4, ... and all) and each system alone, medians of ``repeats``. A straight line
    t(S) = fixed + S * per_system fits the batched times: ``fixed`` is what every call costs
    whatever its size (Python, dispatch, the autograd engine; kernel launches on a GPU), and
    ``per_system`` the work a system adds. One system at a time pays about ``fixed`` for every
    system, a batch pays it once, so no batch size gives force calls a speed-up above
    ``ratio_bound`` = mean single-call time / per_system. Returns ``rows`` (n_systems,
    batched_ms, one_at_a_time_ms, ratio), ``fixed_ms``, ``ms_per_system``, ``r_squared``,
    ``mean_single_ms`` and ``ratio_bound``.
    """
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one ase.Atoms")
    if not (isinstance(repeats, (int, np.integer)) and repeats >= 1):
        raise ValueError(f"repeats: expected a positive integer, got {repeats!r}")
    if sizes is None:  # powers of two below the number of systems, and all of them
        sizes = [2**k for k in range(len(systems).bit_length()) if 2**k < len(systems)] + [len(systems)]
    sizes = sorted({int(n) for n in sizes})
    if len(sizes) < 2 or sizes[0] < 1 or sizes[-1] > len(systems):
        raise ValueError(f"sizes: expected at least two batch sizes between 1 and {len(systems)}, got {list(sizes)}")
    device = resolve_device(device)
    potential = GemNetPotential(_bare_network(model), device=device)

    def call_ms(batch: Sequence[Atoms]) -> float:
        inputs = batch_inputs([a.positions for a in batch], [a.numbers for a in batch], device=device)
        _force_call(potential, inputs, device)  # warm-up; the timed calls reuse its graph, as MD steps do
        return 1e3 * float(np.median(_call_seconds(potential, inputs, device, repeats)))

    singles = [call_ms([atoms]) for atoms in systems[: sizes[-1]]]
    rows = []
    for n in sizes:
        batched, one_at_a_time = call_ms(systems[:n]), float(np.sum(singles[:n]))
        rows.append(
            {"n_systems": n, "batched_ms": batched, "one_at_a_time_ms": one_at_a_time, "ratio": one_at_a_time / batched}
        )
    counts = np.array([row["n_systems"] for row in rows], dtype=float)
    batched_ms = np.array([row["batched_ms"] for row in rows])
    per_system, fixed = np.polyfit(counts, batched_ms, 1)
    residual = batched_ms - (fixed + per_system * counts)
    spread = float(np.sum((batched_ms - batched_ms.mean()) ** 2))
    mean_single = float(np.mean(singles))
    return {
        "rows": rows,
        "fixed_ms": float(fixed),
        "ms_per_system": float(per_system),
        "r_squared": 1.0 - float(np.sum(residual**2)) / spread if spread > 0 else 1.0,
        "mean_single_ms": mean_single,
        "ratio_bound": mean_single / per_system if per_system > 0 else float("inf"),
        "repeats": int(repeats),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }


# What each aten operator does, by name prefix: the profile groups a force call's time by kind of work.
OP_KINDS: dict[str, tuple[str, ...]] = {
    "matrix products": ("mm", "bmm", "addmm", "matmul", "linear", "baddbmm"),
    "activations and basis functions": (
        "silu",
        "sigmoid",
        "exp",
        "sin",
        "cos",
        "pow",
        "sqrt",
        "rsqrt",
        "log",
        "tanh",
        "atan2",
        "reciprocal",
    ),
    "gathers and scatters": (
        "index",
        "scatter",
        "gather",
        "embedding",
        "nonzero",
        "masked",
        "take",
        "searchsorted",
        "bincount",
        "repeat_interleave",
        "unique",
        "sort",
        "argsort",
    ),
    "copies and allocations": (
        "cat",
        "copy",
        "fill",
        "zero",
        "empty",
        "_to_copy",
        "clone",
        "contiguous",
        "full",
        "ones",
        "arange",
        "stack",
        "eye",
        "new_",
    ),
    "elementwise arithmetic": (
        "mul",
        "add",
        "sub",
        "div",
        "neg",
        "sum",
        "where",
        "clamp",
        "maximum",
        "minimum",
        "abs",
        "rsub",
        "linalg_vector_norm",
        "norm",
        "mean",
        "eq",
        "ne",
        "lt",
        "gt",
        "le",
        "ge",
        "logical",
        "bitwise",
        "isfinite",
        "any",
        "all",
        "amax",
        "max",
        "min",
    ),
}
OTHER_KIND = "Python, autograd engine and dispatch"


@contextlib.contextmanager
def _silenced_file_descriptors() -> Iterator[None]:
    """Send what native code writes to file descriptors 1 and 2 to /dev/null for a moment."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


def op_kind(name: str) -> str | None:
    """The kind of work of an aten operator (``None`` for names that are not aten operators)."""
    if not name.startswith("aten::"):
        return None
    op = name[len("aten::") :]
    for kind, prefixes in OP_KINDS.items():
        if any(op == prefix or op.startswith(prefix) for prefix in prefixes):
            return kind
    return "other operators"


def profile_potential(
    model: nn.Module, systems: Sequence[Atoms], device: str | torch.device = "auto", calls: int = 5
) -> dict:
    """Where one batched energy-and-forces call of ``model`` on ``systems`` spends its time.

    The call is the one the MD engine makes every step. Operator self times (device time on a
    GPU) from ``torch.profiler`` are grouped by :func:`op_kind`; what the operators leave of the
    profiled wall time is Python, the autograd engine and dispatch. ``wall_ms_per_call`` is the
    median of ``calls`` calls without the profiler. Returns ``rows`` (kind, ms_per_call, share),
    ``top_operators`` and the size of the batch (atoms, edges, triplets).
    """
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one ase.Atoms")
    if not (isinstance(calls, (int, np.integer)) and calls >= 1):
        raise ValueError(f"calls: expected a positive integer, got {calls!r}")
    device = resolve_device(device)
    network = cast(GemNet, _bare_network(model))  # a GemNetT or GemNetQ
    potential = GemNetPotential(network, device=device)
    inputs = batch_inputs([a.positions for a in systems], [a.numbers for a in systems], device=device)
    positions, _, system_index = inputs
    _force_call(potential, inputs, device)  # warm-up, and the graph the timed calls reuse
    walls = _call_seconds(potential, inputs, device, calls)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler = torch.profiler.profile(activities=activities)
    with _silenced_file_descriptors():  # the profiler's C++ side logs its start and stop to stdout
        profiler.start()
    profiled = float(np.sum(_call_seconds(potential, inputs, device, calls))) / calls
    with _silenced_file_descriptors():
        profiler.stop()
    per_kind: dict[str, float] = {}
    operators = []
    for event in profiler.key_averages():
        kind = op_kind(event.key)
        if kind is None:
            continue
        seconds = (event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total) / 1e6 / calls
        per_kind[kind] = per_kind.get(kind, 0.0) + seconds
        operators.append(
            {"operator": event.key, "kind": kind, "ms_per_call": 1e3 * seconds, "calls_per_call": event.count / calls}
        )
    if device.type != "cuda":  # on a GPU the host's own work overlaps the kernels
        per_kind[OTHER_KIND] = max(profiled - sum(per_kind.values()), 0.0)
    total = sum(per_kind.values()) or 1.0
    rows = [
        {"kind": kind, "ms_per_call": 1e3 * seconds, "share": seconds / total}
        for kind, seconds in sorted(per_kind.items(), key=lambda item: -item[1])
    ]
    graph = network.graph_cache(positions.to(potential.dtype), system_index)
    return {
        "rows": rows,
        "top_operators": sorted(operators, key=lambda row: -row["ms_per_call"])[:8],
        "wall_ms_per_call": 1e3 * float(np.median(walls)),
        "profiled_ms_per_call": 1e3 * profiled,
        "n_systems": len(systems),
        "n_atoms": int(positions.shape[0]),
        "n_edges": graph.num_edges,
        "n_triplets": graph.num_triplets,
        "calls": int(calls),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
