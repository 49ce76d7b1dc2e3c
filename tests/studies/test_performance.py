"""Performance appendix: hardware-keyed measurement artifacts, the linearity fit, the figures."""

from __future__ import annotations

import dataclasses
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gemrepro.config.scales import SCALES  # noqa: E402
from gemrepro.plots import performance as plots_performance  # noqa: E402
from gemrepro.studies import performance  # noqa: E402

torch.set_num_threads(1)


def size_rows(seconds_of) -> list[dict]:
    rows = [{"case": "batch", "num_atoms": 100, "seconds": 1.0}]
    for n in (10, 20, 40, 80, 160):
        rows.append(
            {"case": "size", "num_atoms": n, "seconds": seconds_of(n), "microseconds_per_atom": 1e6 * seconds_of(n) / n}
        )
    return rows


def test_cost_linearity_recovers_a_line_and_flags_quadratic_growth():
    line = performance.cost_linearity(size_rows(lambda n: 0.002 + 5e-4 * n))
    assert line["slope_us_per_atom"] == pytest.approx(500.0)
    assert line["intercept_ms"] == pytest.approx(2.0)
    assert line["r_squared"] == pytest.approx(1.0)
    assert line["per_atom_ratio"] < 1  # the fixed overhead is amortised over more atoms
    quadratic = performance.cost_linearity(size_rows(lambda n: 1e-6 * n**2))
    assert quadratic["r_squared"] < 0.97
    assert quadratic["per_atom_ratio"] == pytest.approx(160 / 40)  # largest over median size
    with pytest.raises(ValueError, match="at least 3"):
        performance.cost_linearity(size_rows(lambda n: n)[:3])


def test_hardware_fingerprint_names_this_cpu_and_the_device():
    fingerprint = performance.hardware_fingerprint("cpu")
    assert fingerprint["device"] == "cpu" and fingerprint["gpu"] is None
    assert fingerprint["cores"] >= 1 and fingerprint["torch_threads"] == 1
    assert fingerprint["cpu"] in performance.hardware_label(fingerprint)
    gpu = dict(fingerprint, gpu="NVIDIA H100", device="cuda")
    assert performance.hardware_label(gpu).startswith("NVIDIA H100")
    with pytest.raises(ValueError, match="scale 'tiny' has no performance plan"):
        performance.plan_for(dataclasses.replace(SCALES["tiny"], performance=None))


def test_measurements_are_cached_per_hardware_and_collected_side_by_side(tmp_path, monkeypatch):
    first = performance.measure_model_cost(sizes=(4, 8, 12, 16), repeats=1, device="cpu", root=tmp_path)
    rows = first.manifest["result"]["rows"]
    assert [r["num_atoms"] for r in rows if r["case"] == "size"] == [4, 8, 12, 16]
    assert json.loads(first.file("result.json").read_text()) == first.manifest["result"]
    again = performance.measure_model_cost(sizes=(4, 8, 12, 16), repeats=1, device="cpu", root=tmp_path)
    assert again.key == first.key and again.manifest["created"] == first.manifest["created"]  # loaded, not re-measured

    # The same measurement on another machine is another artifact, kept beside the first.
    real = performance.hardware_fingerprint
    monkeypatch.setattr(
        performance, "hardware_fingerprint", lambda device="auto": dict(real("cpu"), gpu="Test GPU", device="cuda")
    )
    other = performance.measure_model_cost(sizes=(4, 8, 12, 16), repeats=1, device="cpu", root=tmp_path)
    assert other.key != first.key
    table = performance.collect_measurements(tmp_path)
    assert sorted(table["device"]) == ["cpu", "cuda"]
    assert set(table["measurement"]) == {"model-cost"}
    assert table["hardware"].str.contains("Test GPU").sum() == 1
    # each row carries its own artifact's headline, the fitted slope in µs per atom (noisy: either sign)
    slopes = {a.key: a.manifest["result"]["linearity"]["slope_us_per_atom"] for a in (first, other)}
    assert dict(zip(table["key"], table["value"])) == slopes and slopes[first.key] != slopes[other.key]
    assert (table["quantity"] == "µs per atom (slope)").all()

    # Another setting on this machine is kept too, but ``like`` compares only equal settings.
    monkeypatch.setattr(performance, "hardware_fingerprint", real)
    performance.measure_model_cost(sizes=(4, 8, 12), repeats=1, device="cpu", root=tmp_path)
    assert len(performance.collect_measurements(tmp_path)) == 3
    like = performance.PerformanceResults(first, first, first, first)
    assert sorted(performance.collect_measurements(tmp_path, like=like)["key"]) == sorted([first.key, other.key])
    with pytest.raises(ValueError, match="sizes"):
        performance.measure_model_cost(sizes=(0, 4), root=tmp_path)


def test_training_throughput_times_updates(tmp_path):
    artifact = performance.measure_training(batch_size=2, n_steps=3, atoms_per_molecule=5, device="cpu", root=tmp_path)
    result = artifact.manifest["result"]
    assert np.isfinite(result["seconds_per_step"]) and result["seconds_per_step"] > 0 and result["batch_size"] == 2
    assert result["parameters"] > 1000
    with pytest.raises(ValueError, match="n_steps"):
        performance.measure_training(n_steps=1, root=tmp_path)


def test_figures_name_their_hardware():
    md = {
        "ase_steps_per_s": 10.0,
        "batched_steps_per_s": 30.0,
        "ratio": 3.0,
        "n_systems": 4,
        "n_steps": 20,
        "device": "cpu",
    }
    figures = [
        plots_performance.md_speedup(md, "Test CPU"),
        plots_performance.model_cost(
            size_rows(lambda n: 1e-3 * n), performance.cost_linearity(size_rows(lambda n: 1e-3 * n)), "Test CPU"
        ),
        plots_performance.labelling_scaling(
            [{"n_workers": 1, "labels_per_s": 5.0}, {"n_workers": 2, "labels_per_s": 9.0}], "gfn2-xtb", "Test CPU"
        ),
        plots_performance.training_throughput(
            {
                "batch_size": 8,
                "atoms_per_molecule": 17,
                "samples_per_s": 6.0,
                "parameters": 50_000,
                "seconds_per_step": 1.3,
            },
            "Test CPU",
        ),
        plots_performance.batch_scaling(
            {
                "rows": [
                    {
                        "n_systems": n,
                        "batched_ms": 20 + 2 * n,
                        "one_at_a_time_ms": 22 * n,
                        "ratio": 22 * n / (20 + 2 * n),
                    }
                    for n in (1, 4, 16)
                ],
                "fixed_ms": 20.0,
                "ms_per_system": 2.0,
                "ratio_bound": 11.0,
                "device": "cpu",
            },
            "Test CPU",
        ),
    ]
    for fig in figures:
        assert any("measured on Test CPU" in t.get_text() for t in fig.texts)
        plt.close(fig)
    assert "3.0x" in figures[0].axes[0].get_title()
    assert any("11.0x" in text.get_text() for text in figures[-1].axes[1].get_legend().get_texts())
    with pytest.raises(ValueError, match="at least one measurement"):
        plots_performance.measurements_by_hardware(performance.collect_measurements("/nonexistent"))
