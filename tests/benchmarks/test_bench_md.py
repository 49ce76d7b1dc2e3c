"""The MD benchmarks: both paths in turns on the same systems, failures left out of both, the command's output.

No test asserts a speed; the clocks are real, and where a test needs known times it replaces a path.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from gemrepro.analysis.stability import FailureRecord
from gemrepro.benchmarks import md as bench_md
from gemrepro.benchmarks.md import batch_scaling, benchmark_md
from gemrepro.cli import main as cli_main
from gemrepro.model import GemNetT

torch.set_num_threads(1)


def tiny_gemnet() -> GemNetT:
    torch.manual_seed(0)
    return GemNetT.from_preset("tiny").float()


SYSTEMS = [molecule("H2O"), molecule("CH4"), molecule("NH3")]


def recording(monkeypatch, refuse=lambda formula, call: False) -> list[tuple[str, ...]]:
    """Record which path ran which systems, in order; the ASE path refuses where ``refuse(formula, call)``."""
    calls: list[tuple[str, ...]] = []
    real_run_md = bench_md.run_md
    counts: dict[str, int] = {}

    def run_md(potential, systems, **kwargs):
        calls.append(("batched", *(a.get_chemical_formula() for a in systems)))
        return real_run_md(potential, systems, **kwargs)

    def ase(calculator, atoms, seed, n_steps, *rest):
        formula = atoms.get_chemical_formula()
        counts[formula] = counts.get(formula, 0) + 1
        calls.append(("ase", formula))
        if refuse(formula, counts[formula]):
            raise ValueError(f"atoms ({formula}): atoms 0 and 1 are 0.407 Å apart; not a structure to simulate")
        return 0.01

    monkeypatch.setattr(bench_md, "run_md", run_md)
    monkeypatch.setattr(bench_md, "_ase_langevin_seconds", ase)
    return calls


def test_the_paths_take_turns_after_an_untimed_round_on_every_system(monkeypatch):
    calls = recording(monkeypatch)
    result = benchmark_md(tiny_gemnet(), SYSTEMS, n_steps=2, device="cpu", repeats=2)
    one_round = [("batched", "H2O", "CH4", "H3N"), ("ase", "H2O"), ("ase", "CH4"), ("ase", "H3N")]
    assert calls == one_round * 3  # untimed, then two timed rounds: batched, ASE, batched, ASE
    assert result["ase_seconds_rounds"] == pytest.approx([0.03, 0.03])
    ratios = [a / b for a, b in zip(result["ase_seconds_rounds"], result["batched_seconds_rounds"], strict=True)]
    assert result["ratios"] == pytest.approx(ratios)
    assert result["ratio"] == pytest.approx(np.median(ratios))
    assert result["ratio_min"] == pytest.approx(min(ratios)) and result["ratio_max"] == pytest.approx(max(ratios))
    assert result["ase_steps_per_s"] == pytest.approx(3 * 2 / 0.03)  # 3 systems x 2 steps over the median round
    assert result["n_systems"] == 3 and result["excluded"] == [] and result["repeats"] == 2


def test_the_ase_clock_holds_each_system_s_first_force_call_as_the_batched_one_does(monkeypatch):
    """Each clock spans the user's call: n_steps + 1 force calls per system on both paths."""
    calls: list[str] = []
    real_calculate = bench_md.GemNetCalculator.calculate

    def counted(self, *args, **kwargs):
        calls.append("ase")
        return real_calculate(self, *args, **kwargs)

    monkeypatch.setattr(bench_md.GemNetCalculator, "calculate", counted)
    seconds = bench_md._ase_langevin_seconds(
        bench_md.GemNetCalculator(tiny_gemnet(), device="cpu"), molecule("H2O"), 7, 3, 300.0, 0.5, torch.device("cpu")
    )
    assert seconds > 0 and len(calls) == 3 + 1


def test_a_geometry_the_ase_calculator_refuses_leaves_that_system_out_of_both_paths(monkeypatch, capsys):
    calls = recording(monkeypatch, refuse=lambda formula, call: formula == "CH4")
    result = benchmark_md(tiny_gemnet(), SYSTEMS, n_steps=1, device="cpu", repeats=2)
    assert [row["system"] for row in result["excluded"]] == [1]
    assert result["excluded"][0]["formula"] == "CH4" and "ASE loop: atoms (CH4)" in result["excluded"][0]["reason"]
    timed = calls[4:]
    assert timed == [("batched", "H2O", "H3N"), ("ase", "H2O"), ("ase", "H3N")] * 2
    assert result["n_systems"] == 2 and result["n_atoms"] == 3 + 4 and math.isfinite(result["ratio"])


def test_a_failure_in_a_timed_round_starts_the_rounds_again_without_it(monkeypatch):
    calls = recording(monkeypatch, refuse=lambda formula, call: formula == "H2O" and call == 2)
    result = benchmark_md(tiny_gemnet(), SYSTEMS, n_steps=1, device="cpu", repeats=2)
    assert result["excluded"][0]["system"] == 0 and len(result["ratios"]) == 2
    assert calls[-6:] == [("batched", "CH4", "H3N"), ("ase", "CH4"), ("ase", "H3N")] * 2


def test_a_system_the_batched_engine_finds_failed_is_left_out_of_both_paths(monkeypatch):
    calls = recording(monkeypatch)
    real_run_md = bench_md.run_md

    def failing(potential, systems, **kwargs):
        summary = real_run_md(potential, systems, **kwargs)
        failures = [
            FailureRecord(1, 0.0005, "bond", (0, 1)) if a.get_chemical_formula() == "H3N" else f
            for a, f in zip(systems, summary.failures, strict=True)
        ]
        return dataclasses.replace(summary, failures=failures)

    monkeypatch.setattr(bench_md, "run_md", failing)
    result = benchmark_md(tiny_gemnet(), SYSTEMS, n_steps=1, device="cpu", repeats=1)
    assert result["excluded"] == [{"system": 2, "formula": "H3N", "reason": "batched engine: rule 'bond' at 0.0005 ps"}]
    assert ("ase", "H3N") not in calls[4:] and result["n_systems"] == 2


def test_nothing_left_to_time_is_an_error_naming_the_failures(monkeypatch):
    recording(monkeypatch, refuse=lambda formula, call: True)
    with pytest.raises(ValueError, match=r"every system failed.*CH4: ASE loop"):
        benchmark_md(tiny_gemnet(), SYSTEMS, n_steps=1, device="cpu", repeats=1)
    with pytest.raises(ValueError, match="repeats"):
        benchmark_md(tiny_gemnet(), SYSTEMS, n_steps=1, device="cpu", repeats=0)


def test_batch_scaling_times_every_case_once_per_round_and_splits_fixed_from_per_system_cost(monkeypatch):
    order: list[int] = []
    outlier = iter(range(10**6))

    def known_seconds(potential, inputs, device):
        """A call of S systems takes 2 ms + 1 ms per system; the fifth call (the one-system batch of round 1) is a 100 s outlier."""
        n_systems = int(inputs[2].max()) + 1
        order.append(n_systems)
        return 100.0 if next(outlier) == 4 else (2 + n_systems) * 1e-3

    monkeypatch.setattr(bench_md, "_rewarmed_call_seconds", known_seconds)
    systems = [molecule("H2O"), molecule("CH4"), molecule("NH3"), molecule("H2O")]
    result = batch_scaling(tiny_gemnet(), systems, device="cpu", repeats=3)
    assert order == [1, 1, 1, 1, 1, 2, 4] * 3  # each round: every system alone, then every batch size
    rows = result["rows"]
    assert [row["n_systems"] for row in rows] == [1, 2, 4]
    assert [row["batched_ms"] for row in rows] == pytest.approx([3.0, 4.0, 6.0])  # medians: the outlier never counts
    assert [row["one_at_a_time_ms"] for row in rows] == pytest.approx([3.0, 6.0, 12.0])
    assert [row["ratio"] for row in rows] == pytest.approx([1.0, 1.5, 2.0])
    assert rows[1]["ratio_max"] == pytest.approx(1.5) and rows[2]["ratio_min"] == pytest.approx(2.0)
    assert rows[0]["ratio_min"] == pytest.approx(3 / 1e5)  # the outlier shows in the spread, not the median
    assert result["fixed_ms"] == pytest.approx(2.0) and result["ms_per_system"] == pytest.approx(1.0)
    assert result["mean_single_ms"] == pytest.approx(3.0) and result["ratio_bound"] == pytest.approx(3.0)
    monkeypatch.undo()
    custom = batch_scaling(tiny_gemnet(), systems, sizes=[1, 3], device="cpu", repeats=1)
    assert [row["n_systems"] for row in custom["rows"]] == [1, 3] and custom["rows"][1]["batched_ms"] > 0
    with pytest.raises(ValueError, match="sizes"):
        batch_scaling(tiny_gemnet(), systems, sizes=[2], device="cpu")
    with pytest.raises(ValueError, match="repeats"):
        batch_scaling(tiny_gemnet(), systems, device="cpu", repeats=0)


def run_bench(capsys, *argv: str) -> tuple[int, str]:
    code = cli_main(["bench", "md", "--device", "cpu", *argv])
    return code, capsys.readouterr().out


def test_bench_md_prints_a_finite_ratio_with_its_spread_on_one_thread(capsys):
    code, out = run_bench(capsys, "--systems", "2", "--steps", "1", "--repeats", "2", "--json")
    result = json.loads(out)
    assert code == 0 and result["torch_threads"] == 1 and result["model"].startswith("trained tiny GemNet-T")
    assert result["n_systems"] == 2 and result["excluded"] == [] and len(result["ratios"]) == 2
    assert math.isfinite(result["ratio"]) and result["ratio_min"] <= result["ratio"] <= result["ratio_max"]
    largest = result["scaling"]["rows"][-1]
    assert largest["n_systems"] == 2 and largest["ratio_min"] <= largest["ratio"] <= largest["ratio_max"]
    code, out = run_bench(capsys, "--systems", "1", "--steps", "1", "--repeats", "1", "--preset", "tiny")
    assert code == 0 and "random tiny GemNet-T, energy read-out zeroed" in out
    assert "ratio:" in out and "(rounds " in out and "1 torch threads" in out


def test_bench_md_reports_a_failed_system_and_goes_on(capsys, monkeypatch):
    recording(monkeypatch, refuse=lambda formula, call: formula == "C2H5NO2")  # glycine, the second system
    code, out = run_bench(capsys, "--systems", "2", "--steps", "1", "--repeats", "1")
    assert code == 0 and "left out of both paths: 1 system(s) that failed" in out
    assert "system 1 (C2H5NO2): ASE loop: atoms (C2H5NO2)" in out and "1 systems (" in out
    assert "ratio:" in out and "(rounds " in out


def test_the_random_model_costs_the_same_but_exerts_no_force():
    from gemrepro.benchmarks.workload import silent_random_model
    from gemrepro.integrations.potential import GemNetPotential
    from gemrepro.md.state import batch_inputs

    silent = GemNetPotential(silent_random_model("T", "tiny"), device="cpu")
    energy, forces = silent(*batch_inputs([a.positions for a in SYSTEMS], [a.numbers for a in SYSTEMS]))
    assert torch.count_nonzero(forces) == 0 and torch.count_nonzero(energy) == 0
    # the same parameters as any tiny GemNet-T, except the zeroed read-out
    assert sum(p.numel() for p in silent.network.parameters()) == sum(p.numel() for p in tiny_gemnet().parameters())


def test_the_default_model_is_the_shipped_trained_one(tmp_path):
    from gemrepro.benchmarks.workload import shipped_model

    model, label = shipped_model("T")
    assert "3200 training structures" in label and model.model.config.variant == "T"
    assert shipped_model("Q") is None  # no GemNet-Q in the bundle: bench md falls back to a random preset
    assert Path(__file__).resolve().parents[2].joinpath("models", "tiny.tar.xz").is_file()
