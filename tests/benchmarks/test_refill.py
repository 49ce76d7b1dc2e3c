"""The refill benchmark: both modes of the same campaign in turns, the ratio with its spread."""

import pytest
import torch
from ase.build import molecule

from gemrepro.benchmarks import refill
from gemrepro.benchmarks.workload import silent_random_model

torch.set_num_threads(1)


def test_refilled_slots_and_fixed_waves_take_turns(monkeypatch):
    modes: list[str] = []
    real_run_queue = refill.run_queue

    def recorded(potential, systems, **kwargs):
        modes.append({True: "refill", False: "waves"}.get(kwargs.get("refill"), "warm"))
        return real_run_queue(potential, systems, **kwargs)

    monkeypatch.setattr(refill, "run_queue", recorded)
    systems = [molecule("H2O"), molecule("CH4"), molecule("NH3")]
    result = refill.benchmark_refill(silent_random_model("T", "tiny"), systems, 2, slots=2, repeats=3, device="cpu")
    assert modes == ["warm", "refill", "waves", "waves", "refill", "refill", "waves"]  # each round: both, in turns
    assert len(result["ratios"]) == 3 and result["ratio"] == pytest.approx(sorted(result["ratios"])[1])
    assert result["ratio_min"] == min(result["ratios"]) and result["ratio_max"] == max(result["ratios"])
