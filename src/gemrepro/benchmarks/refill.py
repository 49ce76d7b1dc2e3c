"""What refilling slots buys: a campaign where about half the trajectories fail early, run both ways.

The same queue of trajectories (the same molecules, seeds, model, time step and slots) runs with
:func:`gemrepro.md.queue.run_queue` twice per round, once refilling each slot as soon as its
trajectory ends and once in fixed waves of ``slots`` trajectories whose failed members stay
frozen in the batch until the whole wave ends (what a plain batched run does). Both do the same
useful work — every trajectory integrated to its failure or to ``n_steps`` — so the ratio of their
system-steps per second is, up to a failure moved by a step by rounding, the ratio of their
wall times. Rounds alternate which goes first and
the median of the rounds is reported with the lowest and highest round, so a machine whose speed
drifts slows both alike. Each clock is :func:`~gemrepro.md.queue.run_queue`'s own wall time, the
same definition in both modes; one untimed trajectory warms the engine up first.

The campaign alternates a mild and a hot temperature; at the hot one a small model fails within
tens to hundreds of steps. ``failed_fraction`` reports how many did, so a reader can see whether
the campaign was the one intended (a random-weight model fails at both temperatures).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from torch import nn

from gemrepro.benchmarks.md import checked_run
from gemrepro.benchmarks.timing import spread
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.md.integrators import DEFAULT_DT_FS
from gemrepro.md.queue import QueueSummary, run_queue
from gemrepro.model import resolve_device


def campaign_temperatures(n_trajectories: int, mild_K: float, hot_K: float) -> list[float]:
    """Every other trajectory hot, so failures are spread through the queue rather than bunched."""
    return [hot_K if k % 2 else mild_K for k in range(n_trajectories)]


def benchmark_refill(
    model: nn.Module,
    systems: Sequence[Atoms],
    n_steps: int,
    *,
    slots: int,
    mild_K: float = 300.0,
    hot_K: float = 6000.0,
    dt_fs: float = DEFAULT_DT_FS,
    repeats: int = 1,
    device: str | torch.device = "auto",
) -> dict[str, float | int | str | list[float]]:
    """System-steps per second of a campaign with and without refilled slots, and their ratio.

    Returns ``refill_steps_per_s``, ``waves_steps_per_s`` (medians over rounds), ``ratio`` (refill /
    waves speed, the median over rounds), ``ratio_min``, ``ratio_max``, ``ratios`` per round, each mode's ``utilisation`` (useful / evaluated system-steps),
    ``failed_fraction``, ``median_steps_lived`` and the context. ``model`` keeps its element
    references (an ``EnergyShift``) only for the failure physics; the network is what costs time.
    """
    systems = checked_run(systems, n_steps, repeats)
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= len(systems):
        raise ValueError(f"slots: expected a number of batch slots in [1, {len(systems)}], got {slots!r}")
    if not (0 < mild_K and 0 < hot_K and np.isfinite(mild_K) and np.isfinite(hot_K)):
        raise ValueError(f"temperatures: expected positive mild and hot temperatures in K, got {mild_K}, {hot_K}")
    device = resolve_device(device)
    potential = GemNetPotential(model, device=device)
    temperatures = campaign_temperatures(len(systems), mild_K, hot_K)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    runs: dict[bool, QueueSummary] = {}
    with tempfile.TemporaryDirectory(prefix="gemrepro-bench-refill-") as folder:
        run_queue(
            potential, systems[:1], n_steps=1, folder=Path(folder) / "warm", slots=1, device=device, progress=False
        )
        for round_ in range(int(repeats)):
            for refill in (True, False) if round_ % 2 == 0 else (False, True):
                summary = run_queue(
                    potential,
                    systems,
                    n_steps=n_steps,
                    folder=Path(folder) / f"{round_}-{refill}",
                    slots=slots,
                    temperatures=temperatures,
                    dt_fs=dt_fs,
                    refill=refill,
                    frame_interval=n_steps,
                    checkpoint_interval=n_steps,
                    device=device,
                    progress=False,
                )
                seconds[refill].append(summary.wall_time_s)
                runs[refill] = summary
    refill_run, waves_run = runs[True], runs[False]
    # each mode's own work: rounding in the batched potential may move a failure by a step between them
    refill_rate = refill_run.system_steps / spread(seconds[True])["median"]
    waves_rate = waves_run.system_steps / spread(seconds[False])["median"]
    ratios = [
        (refill_run.system_steps / r) / (waves_run.system_steps / w)
        for r, w in zip(seconds[True], seconds[False], strict=True)
    ]
    ratio = spread(ratios)
    return {
        "refill_steps_per_s": refill_rate,
        "waves_steps_per_s": waves_rate,
        "ratio": ratio["median"],
        "ratio_min": ratio["min"],
        "ratio_max": ratio["max"],
        "ratios": ratios,
        "refill_system_steps": refill_run.system_steps,
        "waves_system_steps": waves_run.system_steps,
        "refill_utilisation": refill_run.utilisation,
        "waves_utilisation": waves_run.utilisation,
        "failed_fraction": float(np.mean([f is not None for f in refill_run.failures])),
        "median_steps_lived": float(np.median(refill_run.steps)),
        "n_trajectories": len(systems),
        "slots": slots,
        "n_steps": int(n_steps),
        "mild_K": float(mild_K),
        "hot_K": float(hot_K),
        "repeats": int(repeats),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "refill_seconds": float(np.median(seconds[True])),
        "waves_seconds": float(np.median(seconds[False])),
    }
