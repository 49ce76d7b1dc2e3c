"""Speed of the batched MD engine against the classic loop: one ASE Langevin run per system.

Both paths advance the same systems with the same model, the same time step, the same number of
steps and the same per-system seeds in the same process, and take turns (batched, ASE, batched,
ASE, ...; :mod:`gemrepro.benchmarks.timing`), so a shared or throttled machine slows both alike and
each round's ratio compares neighbours in time. Each clock spans what a user calls, first force
call included on both: :func:`gemrepro.md.run_md` for the batched path (set-up, the first force
call, a failure check every step, the first frame and the final checkpoint on disk), and
``ase.md.Langevin(...).run`` with :class:`~gemrepro.integrations.GemNetCalculator` for each system
in turn (its first force call included; drawing the start velocities is not).

An untimed first round runs both paths on every system: it warms both up and finds systems that
fail (a failure rule in the engine, or a geometry the ASE calculator refuses). Those are reported
and left out of both paths alike, and the timed rounds run the rest.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from torch import nn

from gemrepro.benchmarks.timing import check_repeats, round_ratios, spread, take_turns
from gemrepro.catalog import MD_MOLECULES
from gemrepro.data.sampling import embed_conformers
from gemrepro.integrations import GemNetCalculator
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.md.integrators import DEFAULT_DT_FS
from gemrepro.md.runner import DEFAULT_FRICTION_PER_FS, run_md, system_seeds
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


def _rewarmed_call_seconds(potential: GemNetPotential, inputs: tuple[torch.Tensor, ...], device: torch.device) -> float:
    """Wall time of one force call right after an untimed one on the same inputs.

    The untimed call rebuilds what the inputs of the previous call replaced (the graph, the
    topology), so the timed one reuses them, as a step of an MD run does.
    """
    _force_call(potential, inputs, device)
    return _call_seconds(potential, inputs, device, 1)[0]


def _ase_langevin_seconds(
    calculator: GemNetCalculator,
    atoms: Atoms,
    seed: int,
    n_steps: int,
    temperature_K: float,
    dt_fs: float,
    device: torch.device,
) -> float:
    """Wall time of ``n_steps`` ASE Langevin steps of one system, its first force call included.

    Raises the calculator's ``ValueError`` when the trajectory reaches a geometry it refuses.
    """
    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    start = time.perf_counter()
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
    check_repeats(repeats)
    return systems


def excluded_rows(systems: Sequence[Atoms], failed: dict[int, str]) -> list[dict[str, int | str]]:
    """One row per left-out system: its index, formula and why it was left out."""
    return [{"system": k, "formula": systems[k].get_chemical_formula(), "reason": failed[k]} for k in sorted(failed)]


def timed_without_failures(
    systems: Sequence[Atoms],
    paths: dict[str, Callable[[list[int]], float]],
    repeats: int,
    failed: dict[int, str],
) -> tuple[list[int], dict[str, list[float]]]:
    """The systems that never failed and each path's seconds per timed round on them.

    Each path runs the systems it is given (their indices) and records in ``failed`` the ones that
    failed, with the reason. An untimed round on all systems comes first; a system that fails
    there, or later in a timed round, is left out of every path, and the timed rounds start over
    on the rest (a timed failure is rare: the seeds replay the untimed round).
    """
    kept = list(range(len(systems)))
    for path in paths.values():  # untimed: warms every path up and finds the systems that fail
        path(kept)
    while True:
        kept = [k for k in kept if k not in failed]
        if not kept:
            reasons = "; ".join(f"{row['formula']}: {row['reason']}" for row in excluded_rows(systems, failed))
            raise ValueError(f"every system failed, so nothing is left to time ({reasons})")
        seconds = take_turns({name: functools.partial(path, kept) for name, path in paths.items()}, repeats)
        if all(k not in failed for k in kept):
            return kept, seconds


@dataclass(frozen=True)
class EngineRun:
    """One timed call of the batched engine on a subset of the benchmark's systems (frames and checkpoint
    only at the end, as a benchmark wants), shared by every comparison against it."""

    potential: GemNetPotential
    systems: list[Atoms]
    seeds: list[int]
    n_steps: int
    temperature_K: float
    dt_fs: float
    device: torch.device
    friction_per_fs: float = DEFAULT_FRICTION_PER_FS

    def seconds(self, kept: list[int], path: Path, failed: dict[int, str], label: str) -> float:
        """Wall seconds of ``run_md`` on the ``kept`` systems; a failure is noted in ``failed`` under ``label``."""
        start = time.perf_counter()
        summary = run_md(
            self.potential,
            [self.systems[k] for k in kept],
            n_steps=self.n_steps,
            path=path,
            temperatures=self.temperature_K,
            dt_fs=self.dt_fs,
            seeds=[self.seeds[k] for k in kept],
            frame_interval=self.n_steps,
            checkpoint_interval=self.n_steps,
            device=self.device,
            progress=False,
            friction=self.friction_per_fs,
        )
        seconds = time.perf_counter() - start
        for k, failure in zip(kept, summary.failures, strict=True):
            if failure is not None:
                failed.setdefault(k, f"{label}: rule '{failure.rule}' at {failure.time_ps:g} ps")
        return seconds


def benchmark_md(
    model: nn.Module,
    systems: Sequence[Atoms],
    n_steps: int,
    device: str | torch.device = "auto",
    *,
    temperature_K: float = 300.0,
    dt_fs: float = DEFAULT_DT_FS,
    repeats: int = 1,
) -> dict:
    """System-steps per second of the batched engine and of the ASE loop, and their ratio.

    Returns ``batched_steps_per_s``, ``ase_steps_per_s`` (each path's median round), ``ratio``
    (batched / ASE speed: the median over rounds of ASE time / batched time), ``ratio_min``,
    ``ratio_max``, ``ratios`` (one per round), ``excluded`` (systems left out of both paths, with
    the reason) plus the context: ``n_systems`` and ``n_atoms`` (of the systems timed),
    ``n_steps``, ``repeats``, ``device``, ``torch_threads`` and the median wall times.
    ``model`` is a GemNet or an ``EnergyShift`` around one; only the network's cost matters for
    speed, so both paths use the bare network.
    """
    systems = checked_run(systems, n_steps, repeats)
    device = resolve_device(device)
    potential = GemNetPotential(_bare_network(model), device=device)  # eval mode, frozen weights: shared by both paths
    calculator = GemNetCalculator(potential.network, device=device)
    seeds = system_seeds(0, len(systems))
    failed: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="gemrepro-bench-md-") as folder:
        runs = itertools.count()

        def batched(kept: list[int]) -> float:
            path = Path(folder) / f"run{next(runs)}.h5"
            run = EngineRun(potential, systems, seeds, n_steps, temperature_K, dt_fs, device)
            return run.seconds(kept, path, failed, "batched engine")

        def ase(kept: list[int]) -> float:
            seconds = 0.0
            for k in kept:
                try:
                    seconds += _ase_langevin_seconds(
                        calculator, systems[k], seeds[k], n_steps, temperature_K, dt_fs, device
                    )
                except ValueError as exc:  # the calculator refuses a collapsed geometry
                    failed.setdefault(k, f"ASE loop: {exc}")
            return seconds

        kept, seconds = timed_without_failures(systems, {"batched": batched, "ase": ase}, repeats, failed)
    system_steps = len(kept) * n_steps
    batched_seconds, ase_seconds = spread(seconds["batched"])["median"], spread(seconds["ase"])["median"]
    return {
        "batched_steps_per_s": system_steps / batched_seconds,
        "ase_steps_per_s": system_steps / ase_seconds,
        **round_ratios(seconds["ase"], seconds["batched"]),
        "n_systems": len(kept),
        "n_atoms": sum(len(systems[k]) for k in kept),
        "excluded": excluded_rows(systems, failed),
        "n_steps": int(n_steps),
        "repeats": int(repeats),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "batched_seconds": batched_seconds,
        "ase_seconds": ase_seconds,
        "batched_seconds_rounds": seconds["batched"],
        "ase_seconds_rounds": seconds["ase"],
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
    1, 2, 4, ... and all) and of each system alone. Every round times every system alone, then
    every batch size, each call right after an untimed one on the same inputs (so it reuses its
    graph, as an MD step does); medians over ``repeats`` rounds. A straight line
    t(S) = fixed + S * per_system fits the batched times: ``fixed`` is what every call costs
    whatever its size (Python, dispatch, the autograd engine; kernel launches on a GPU), and
    ``per_system`` the work a system adds. One system at a time pays about ``fixed`` for every
    system, a batch pays it once, so no batch size gives force calls a speed-up above
    ``ratio_bound`` = mean single-call time / per_system. Returns ``rows`` (n_systems,
    batched_ms, one_at_a_time_ms, ratio with ratio_min, ratio_max and ratios over rounds),
    ``fixed_ms``, ``ms_per_system``, ``r_squared``, ``mean_single_ms`` and ``ratio_bound``.
    """
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one ase.Atoms")
    repeats = check_repeats(repeats)
    if sizes is None:  # powers of two below the number of systems, and all of them
        sizes = [2**k for k in range(len(systems).bit_length()) if 2**k < len(systems)] + [len(systems)]
    sizes = sorted({int(n) for n in sizes})
    if len(sizes) < 2 or sizes[0] < 1 or sizes[-1] > len(systems):
        raise ValueError(f"sizes: expected at least two batch sizes between 1 and {len(systems)}, got {list(sizes)}")
    device = resolve_device(device)
    potential = GemNetPotential(_bare_network(model), device=device)

    def inputs_of(batch: Sequence[Atoms]) -> tuple[torch.Tensor, ...]:
        return batch_inputs([a.positions for a in batch], [a.numbers for a in batch], device=device)

    singles = [inputs_of([atoms]) for atoms in systems[: sizes[-1]]]
    batches = [inputs_of(systems[:n]) for n in sizes]
    single_ms: list[list[float]] = [[] for _ in singles]  # per system, per round
    batched_ms: list[list[float]] = [[] for _ in batches]  # per size, per round
    for _ in range(repeats):
        for k, inputs in enumerate(singles):
            single_ms[k].append(1e3 * _rewarmed_call_seconds(potential, inputs, device))
        for j, inputs in enumerate(batches):
            batched_ms[j].append(1e3 * _rewarmed_call_seconds(potential, inputs, device))
    rows = []
    for n, batched in zip(sizes, batched_ms, strict=True):
        one_at_a_time = [float(np.sum([single_ms[k][r] for k in range(n)])) for r in range(repeats)]
        rows.append(
            {
                "n_systems": n,
                "batched_ms": spread(batched)["median"],
                "one_at_a_time_ms": spread(one_at_a_time)["median"],
                **round_ratios(one_at_a_time, batched),
            }
        )
    counts = np.array([row["n_systems"] for row in rows], dtype=float)
    medians = np.array([row["batched_ms"] for row in rows])
    per_system, fixed = np.polyfit(counts, medians, 1)
    residual = medians - (fixed + per_system * counts)
    variation = float(np.sum((medians - medians.mean()) ** 2))
    mean_single = float(np.mean([spread(times)["median"] for times in single_ms]))
    return {
        "rows": rows,
        "fixed_ms": float(fixed),
        "ms_per_system": float(per_system),
        "r_squared": 1.0 - float(np.sum(residual**2)) / variation if variation > 0 else 1.0,
        "mean_single_ms": mean_single,
        "ratio_bound": mean_single / per_system if per_system > 0 else float("inf"),
        "repeats": repeats,
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
