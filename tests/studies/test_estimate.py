"""Resource estimates: measured per-step costs (cached) scaled by a scale's sizes."""

from __future__ import annotations

import math

import pytest

import gemrepro.studies.estimate as estimate
from gemrepro.cache.artifacts import Artifact
from gemrepro.config.scales import SCALES, get_scale
from gemrepro.studies.estimate import Assumptions, estimate_resources, measure_costs
from gemrepro.studies.learning_curve import recipe
from gemrepro.studies.sweep import protocol_for

MEASURED = {
    "hardware": "test CPU (2 cores)",
    "device": "cpu",
    "torch_threads": 1,
    "training": {
        "T": {"seconds_per_step": 0.5, "parameters": 1000, "batch_size": 32, "steps_timed": 2},
        "Q": {"seconds_per_step": 1.5, "parameters": 2000, "batch_size": 32, "steps_timed": 2},
    },
    "md": {
        "variant": "Q",
        "seconds_per_step": 0.2,
        "n_systems": 60,
        "n_atoms": 900,
        "bytes_per_frame": 50_000,
        "steps_timed": 3,
    },
    "reference": {
        "method": "gfn2-xtb",
        "seconds_per_label": 0.01,
        "labels_timed": 4,
        "mean_atoms": 15.0,
        "disk_bytes_per_configuration": 4000.0,
        "memory_bytes_per_configuration": 400.0,
    },
}


def _fake_measurements(monkeypatch, tmp_path, device="cpu"):
    measured = {**MEASURED, "device": device}
    monkeypatch.setattr(
        estimate, "measure_costs", lambda *args, **kwargs: Artifact(tmp_path / "cost", {"measurements": measured})
    )


def _amount(result, item: str) -> float:
    table = result.table()
    return float(table.loc[table["item"].str.strip() == item, "amount"].iloc[0])


def test_paper_estimate_scales_the_measured_costs_by_the_paper_sizes(monkeypatch, tmp_path):
    _fake_measurements(monkeypatch, tmp_path)
    result = estimate_resources(SCALES["paper"], assumptions=Assumptions(gpu_speedup_over_cpu=10.0))
    steps = sum(recipe(SCALES["paper"]).max_steps)  # 4 x 1.5M
    assert math.isclose(_amount(result, "training GemNet-Q"), steps * 1.5 / 3600 / 10)
    assert math.isclose(_amount(result, "training"), steps * (0.5 + 1.5) / 3600 / 10)
    n_steps = protocol_for(SCALES["paper"]).n_steps
    assert n_steps == 2_000_000  # 1 ns at 0.5 fs
    assert math.isclose(_amount(result, "MD"), 4 * n_steps * 0.2 / 3600 / 10)
    assert math.isclose(_amount(result, "simulated time"), 240.0)  # 4 models x 60 trajectories x 1 ns; paper 245 ns
    n_configurations = get_scale("paper").n_configurations
    assert n_configurations == 6950 * 6 * 101
    assert math.isclose(_amount(result, "reference labels"), (n_configurations + 4 * 60 * 72) * 0.01 / 3600)
    assert math.isclose(_amount(result, "dataset"), n_configurations * 4000 / 1e9)
    assert math.isclose(_amount(result, "disk"), _amount(result, "dataset") + _amount(result, "trajectories"))
    assert math.isclose(result.total("GPU-hours"), _amount(result, "training") + _amount(result, "MD"))
    table = result.table()
    assert list(table.columns) == ["item", "amount", "unit", "basis"]
    assert table.loc[table["unit"] == "GPU-hours", "basis"].str.contains("assumed GPU speed-up").iloc[1:].all()


def test_a_gpu_measurement_is_used_without_a_speed_up_assumption(monkeypatch, tmp_path):
    _fake_measurements(monkeypatch, tmp_path, device="cuda:0")
    result = estimate_resources(SCALES["small"], assumptions=Assumptions(gpu_speedup_over_cpu=10.0))
    assert math.isclose(_amount(result, "MD"), 4 * protocol_for(SCALES["small"]).n_steps * 0.2 / 3600)
    assert not result.table()["basis"].str.contains("assumed").any()


def test_estimate_cli_prints_ours_beside_the_paper(monkeypatch, tmp_path, capsys):
    from gemrepro.cli import main

    _fake_measurements(monkeypatch, tmp_path)
    monkeypatch.setattr(Artifact, "provenance", lambda self: "cost-measurements/test")
    assert main(["estimate", "--scale", "paper", "--gpu-speedup", "20"]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours" in out and "CPU-hours" in out and "several GPU weeks" in out and "245" in out
    assert "assumption: a GPU runs GemNet steps 20x faster" in out


@pytest.mark.parametrize("factor", [0.0, -3.0, float("nan")])
def test_bad_speed_up_is_a_one_line_error(factor):
    with pytest.raises(ValueError, match="gpu_speedup_over_cpu: expected a positive factor"):
        Assumptions(gpu_speedup_over_cpu=factor)


def test_measurements_are_real_and_cached(monkeypatch, tmp_path):
    """One real (small) measurement at tiny: positive costs, sizes of the batch, instant second call."""
    molecules, systems, temperatures = estimate._md_batch(SCALES["tiny"])
    assert len(systems) == len(molecules) * 3 and temperatures[:3] == [300.0, 600.0, 1200.0]
    monkeypatch.setattr(estimate, "_md_batch", lambda scale: (molecules[:1], systems[:3], temperatures[:3]))
    first = measure_costs(SCALES["tiny"], root=tmp_path, n_train_steps=1, n_md_steps=1, n_labels=1)
    m = first.manifest["measurements"]
    assert m["training"]["T"]["batch_size"] == recipe(SCALES["tiny"]).batch_size
    assert m["training"]["T"]["seconds_per_step"] > 0 and m["md"]["seconds_per_step"] > 0
    assert m["md"]["n_systems"] == 3 and m["md"]["n_atoms"] == 3 * len(molecules[0])
    # one frame holds at least positions and forces in float64 for every atom
    assert m["md"]["bytes_per_frame"] >= 2 * 3 * 8 * m["md"]["n_atoms"]
    assert m["reference"]["method"] == "gfn2-xtb" and m["reference"]["seconds_per_label"] > 0
    # a graph holds positions and forces (float32) of every atom
    assert m["reference"]["memory_bytes_per_configuration"] >= 2 * 3 * 4 * len(molecules[0])

    def no_measuring(*args, **kwargs):
        raise AssertionError("a cached measurement was measured again")

    monkeypatch.setattr(estimate, "training_step_cost", no_measuring)
    second = measure_costs(SCALES["tiny"], root=tmp_path, n_train_steps=1, n_md_steps=1, n_labels=1)
    assert second.path == first.path and second.manifest == first.manifest
    with pytest.raises(ValueError, match="n_md_steps: expected a positive integer"):
        measure_costs(SCALES["tiny"], root=tmp_path, n_md_steps=0)
