"""The GemNet cost benchmarks: cases and variants in turns, the per-atom and Q/T ratios with their spread."""

import json
import math

import pytest
import torch

from gemrepro.benchmarks import model as bench_model
from gemrepro.benchmarks.model import benchmark_model, compare_variants, per_atom_ratio
from gemrepro.cli import main as cli_main
from gemrepro.model import GemNetT

torch.set_num_threads(1)


def test_the_cases_take_turns_and_each_timed_call_follows_an_untimed_one(monkeypatch):
    calls: list[tuple[int, bool]] = []

    def known_seconds(model, batch, rewarm=True):
        """1 ms per atom, and twice that for the 8-atom molecule: its per-atom cost is known."""
        calls.append((int(batch.num_nodes), rewarm))
        return 1e-3 * int(batch.num_nodes) * (2 if int(batch.num_nodes) == 8 else 1)

    monkeypatch.setattr(bench_model, "_evaluation_seconds", known_seconds)
    torch.manual_seed(0)
    rows = benchmark_model(GemNetT.from_preset("tiny"), batch_size=2, atoms_per_molecule=5, sizes=(4, 8, 16), repeats=2)
    cases = [10, 4, 8, 16]
    assert calls == [(n, False) for n in cases] + [(n, True) for n in cases] * 2  # first calls, then round by round
    assert [len(row["seconds_rounds"]) for row in rows] == [2, 2, 2, 2]
    ratio = per_atom_ratio(rows)
    assert (ratio["largest_atoms"], ratio["median_atoms"]) == (16, 8)
    assert ratio["ratio"] == pytest.approx(0.5) and ratio["ratios"] == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="at least 2 single-molecule sizes"):
        per_atom_ratio(rows[:2])


def test_gemnet_t_and_q_take_turns_on_the_same_batch(monkeypatch):
    variants: list[str] = []

    def known_seconds(model, batch, rewarm=True):
        variants.append(model.variant)
        return {"T": 1.0, "Q": 3.0}[model.variant] * (len(variants) if len(variants) > 2 else 1)

    monkeypatch.setattr(bench_model, "_evaluation_seconds", known_seconds)
    result = compare_variants(batch_size=2, atoms_per_molecule=6, repeats=3, device="cpu")
    assert variants == ["T", "Q"] * 4  # first calls, then T, Q, T, Q, T, Q
    # each round's Q over the T just before it: 3*4/(1*3), 3*6/(1*5), 3*8/(1*7)
    assert result["ratios"] == pytest.approx([4.0, 3.6, 24 / 7])
    assert result["ratio"] == result["cost_ratio_q_to_t"] == pytest.approx(3.6)
    assert result["ratio_min"] == pytest.approx(24 / 7) and result["ratio_max"] == pytest.approx(4.0)


def test_bench_model_and_compare_print_a_finite_ratio_with_its_spread(capsys):
    assert cli_main(["bench", "model", "--compare", "--batch-size", "2", "--repeats", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "cost ratio Q/T: " in out and "(rounds " in out and "1 torch threads" in out
    assert cli_main(["bench", "model", "--compare", "--batch-size", "1", "--repeats", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["torch_threads"] == 1 and math.isfinite(result["ratio"]) and len(result["ratios"]) == 2
    assert result["ratio_min"] <= result["ratio"] <= result["ratio_max"]
    assert cli_main(["bench", "model", "--batch-size", "1", "--repeats", "1", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threads"] == 1 and math.isfinite(result["ratio"]) and result["ratio_min"] <= result["ratio_max"]
    assert (result["largest_atoms"], result["median_atoms"]) == (256, 64)
    assert cli_main(["bench", "model", "--repeats", "0"]) == 2
    assert "--repeats: expected at least 1, got 0" in capsys.readouterr().err
