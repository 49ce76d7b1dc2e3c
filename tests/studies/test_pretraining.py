"""Pretraining chapter: h(r), reference-method MD frames, corpus, fine-tuning and stability runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from ase import Atoms
from ase.io import write

from gemrepro.analysis.rdf import distance_histogram, histogram_distance, pair_distances
from gemrepro.config.designs import Plan, StabilityProtocol
from gemrepro.config.scales import SCALES
from gemrepro.data.reference_md import MDRecipe, read_frames, reference_md_frames, run_reference_md
from gemrepro.reference import free_atom_energies, get_method
from gemrepro.reference.base import ReferenceResult
from gemrepro.studies import pretraining as pt

torch.set_num_threads(1)

WATER = Atoms("OH2", positions=[[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]])


# ----------------------------------------------------------------------------- h(r)
def test_pair_distances_of_a_right_triangle():
    positions = np.array([[0.0, 0, 0], [3.0, 0, 0], [0.0, 4.0, 0]])
    assert np.allclose(pair_distances(positions), [[3.0, 4.0, 5.0]])


def test_distance_histogram_is_a_density_with_peaks_at_the_distances():
    positions = np.array([[[0.0, 0, 0], [3.0, 0, 0], [0.0, 4.0, 0]]] * 2)
    h = distance_histogram(positions, n_bins=100, max_distance=10.0)
    assert h.n_frames == 2 and len(h.r) == 100 and h.width == pytest.approx(0.1)
    assert np.sum(h.h * h.width) == pytest.approx(1.0)
    assert np.allclose(h.r[h.h > 0], [3.05, 4.05, 5.05])  # 3, 4 and 5 Å fall in [3.0, 3.1), ... bins
    assert h.h.max() == pytest.approx(1 / 3 / 0.1)


def test_histogram_distance_is_zero_for_equal_and_two_for_disjoint():
    a = distance_histogram(np.array([[0.0, 0, 0], [1.0, 0, 0]]), 50, 5.0)
    b = distance_histogram(np.array([[0.0, 0, 0], [2.0, 0, 0]]), 50, 5.0)
    assert histogram_distance(a, a) == 0.0
    assert histogram_distance(a, b) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same bins"):
        histogram_distance(a, distance_histogram(np.array([[0.0, 0, 0], [1.0, 0, 0]]), 40, 5.0))


@pytest.mark.parametrize("positions, match", [(np.zeros((1, 3)), "atoms >= 2"), (np.full((2, 3), np.nan), "finite")])
def test_distance_histogram_rejects_bad_positions(positions, match):
    with pytest.raises(ValueError, match=match):
        distance_histogram(positions)


# ----------------------------------------------------------------------------- reference MD
class FailsAfter:
    """A harmonic-well 'reference method' that stops converging after ``n_ok`` calls."""

    name = "toy"

    def __init__(self, n_ok: int) -> None:
        self.calls, self.n_ok = 0, n_ok

    def compute(self, numbers, positions, **_):
        self.calls += 1
        if self.calls > self.n_ok:
            return ReferenceResult.failed(len(numbers), "SCF did not converge", 0.0)
        displacement = positions - WATER.positions
        return ReferenceResult(float(np.sum(displacement**2)), -2.0 * displacement, True, 0.0)


def test_reference_md_samples_frames_every_interval_after_equilibration():
    recipe = MDRecipe(temperature=300.0, n_frames=4, frame_interval=3, equilibration_steps=5)
    run = run_reference_md(WATER, FailsAfter(10_000), recipe, seed=1, free_atoms={1: -1.0, 8: -2.0})
    assert run.error == "" and run.steps == recipe.n_steps == 17
    assert [f.info["step"] for f in run.frames] == [8, 11, 14, 17]
    assert run.frames[0].info["time_ps"] == pytest.approx(8 * 0.5e-3)
    frame = run.frames[-1]
    energy = np.sum((frame.positions - WATER.positions) ** 2)
    assert frame.get_potential_energy() == pytest.approx(energy)
    assert frame.info["atomization_energy"] == pytest.approx(energy + 4.0)
    assert np.allclose(frame.get_forces(), -2.0 * (frame.positions - WATER.positions))


def test_reference_md_stops_at_a_failed_calculation_and_keeps_earlier_frames():
    recipe = MDRecipe(n_frames=10, frame_interval=2, equilibration_steps=0)
    run = run_reference_md(WATER, FailsAfter(7), recipe)
    assert 0 < len(run.frames) < 10 and "did not converge" in run.error


@pytest.mark.parametrize(
    "field, value", [("n_frames", 0), ("temperature", -5.0), ("frame_interval", 1.5), ("equilibration_steps", -1)]
)
def test_md_recipe_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        MDRecipe(**{field: value})


def test_reference_md_frames_are_cached_xtb_labels(tmp_path):
    recipe = MDRecipe(temperature=500.0, n_frames=5, frame_interval=4, equilibration_steps=10)
    artifact = reference_md_frames("O", recipe, name="water", root=tmp_path)
    frames = read_frames(artifact)
    assert artifact.manifest["n_frames"] == 5 and len(frames) == 5
    xtb = get_method("gfn2-xtb").compute(frames[2].numbers, frames[2].positions)
    assert frames[2].get_potential_energy() == pytest.approx(xtb.energy, abs=1e-6)
    assert np.allclose(frames[2].get_forces(), xtb.forces, atol=1e-5)
    free = free_atom_energies(get_method("gfn2-xtb"), [1, 8], root=tmp_path)
    expected = xtb.energy - 2 * free[1] - free[8]
    assert frames[2].info["atomization_energy"] == pytest.approx(expected, abs=1e-6)
    assert -16.0 < expected < -12.0  # GFN2-xTB overbinds water (experiment: about -10 eV)
    again = reference_md_frames("O", recipe, name="water", root=tmp_path)
    assert again.path == artifact.path and again.manifest["created"] == artifact.manifest["created"]


# ----------------------------------------------------------------------------- the study
def test_plan_and_protocol_errors():
    with pytest.raises(ValueError, match="scale 'tiny' has no pretraining plan"):
        pt.plan_for(dataclasses.replace(SCALES["tiny"], pretraining=None))
    with pytest.raises(ValueError, match="n_seeds"):
        StabilityProtocol(time_ps=1.0, n_seeds=0)
    assert StabilityProtocol(time_ps=0.1, n_seeds=2).n_steps == 200
    assert (
        pt.plan_for(SCALES["paper"]).molecule == "aspirin"
        and pt.plan_for(SCALES["paper"]).n_train + pt.plan_for(SCALES["paper"]).n_validation == 10_000
    )


@pytest.fixture(scope="module")
def water_files(tmp_path_factory):
    """Water frames from xTB MD at 500 K (the target) and at 1000 K plus ammonia (a corpus)."""
    folder = tmp_path_factory.mktemp("water")
    xtb = get_method("gfn2-xtb")
    target = run_reference_md(WATER, xtb, MDRecipe(500.0, n_frames=40, frame_interval=3, equilibration_steps=20))
    hot = run_reference_md(WATER, xtb, MDRecipe(1000.0, n_frames=60, frame_interval=2, equilibration_steps=20), seed=3)
    ammonia = Atoms(
        "NH3", positions=[[0, 0, 0.116], [0, 0.939, -0.271], [0.813, -0.470, -0.271], [-0.813, -0.470, -0.271]]
    )
    hot_nh3 = run_reference_md(ammonia, xtb, MDRecipe(1000.0, n_frames=10, frame_interval=2, equilibration_steps=10))
    write(folder / "target.xyz", target.frames, format="extxyz")
    write(folder / "corpus.xyz", hot.frames + hot_nh3.frames, format="extxyz")
    return folder


@pytest.fixture()
def small_plan(monkeypatch):
    plan = Plan(
        "water",
        20,
        8,
        12,
        1,
        1,
        1,
        1000.0,
        pretrain_steps=60,
        finetune_steps=20,
        stability=StabilityProtocol(time_ps=0.01, n_seeds=3, frame_interval=5),
    )
    monkeypatch.setitem(SCALES, "tiny", dataclasses.replace(SCALES["tiny"], pretraining=plan))
    return plan


def test_target_file_is_split_into_disjoint_sets(water_files, small_plan, tmp_path):
    target = pt.finetuning_target(SCALES["tiny"], seed=2, target_file=water_files / "target.xyz", root=tmp_path)
    parts = [set(target.train), set(target.validation), set(target.test)]
    assert [len(p) for p in parts] == [20, 8, 12] and not (parts[0] & parts[1] or parts[0] & parts[2])
    assert target.formula == "H2O" and target.source.startswith("file:")
    with pytest.raises(ValueError, match="target_file"):
        pt.finetuning_target(SCALES["tiny"], target_file=tmp_path / "missing.xyz", root=tmp_path)


def test_corpus_drops_the_target_formula(water_files, small_plan):
    corpus = pt.pretraining_corpus(SCALES["tiny"], corpus_file=water_files / "corpus.xyz", exclude_formula="H2O")
    assert corpus.n_excluded == 60 and len(corpus.frames) == 10
    assert {a.get_chemical_formula() for a in corpus.frames} == {"H3N"}


def test_fine_tuning_starts_from_the_pretrained_model_and_md_runs(water_files, small_plan, tmp_path):
    target = pt.finetuning_target(SCALES["tiny"], target_file=water_files / "target.xyz", root=tmp_path)
    corpus = pt.pretraining_corpus(SCALES["tiny"], corpus_file=water_files / "corpus.xyz", exclude_formula="")
    pretrained = pt.pretrain_model(corpus, SCALES["tiny"], root=tmp_path)
    scratch = pt.train_target_model(target, SCALES["tiny"], init=None, root=tmp_path)
    tuned = pt.train_target_model(target, SCALES["tiny"], init=pretrained, root=tmp_path)
    assert tuned.manifest["params"]["init"] == pretrained.key and scratch.manifest["params"]["init"] is None
    # 20 steps from hot water frames beat 20 steps from random weights on the same held-out frames
    tuned_mae, scratch_mae = (m.manifest["metrics"]["test"]["forces_mae"] for m in (tuned, scratch))
    assert tuned_mae < 0.8 * scratch_mae

    run = pt.stability_run(tuned, target, small_plan.stability, root=tmp_path)
    table = pt.stability_table(run, small_plan.stability.time_ps)
    assert list(table["system"]) == [0, 1, 2]
    assert np.all(table["stable_time_ps"] <= 0.01) and np.all(table.loc[~table["failed"], "stable_time_ps"] == 0.01)
    positions = pt.stable_positions(run)
    assert positions.shape[1:] == (3, 3) and len(positions) >= 3  # at least every start frame
    assert pt.stability_run(tuned, target, small_plan.stability, root=tmp_path).path == run.path

    study = pt.PretrainingStudy(
        small_plan,
        target,
        corpus.sources,
        len(corpus.frames),
        [],
        pretrained,
        {"scratch": scratch, "pretrained": tuned},
        {"scratch": run, "pretrained": run},
        pd.DataFrame(),
        table,
        pd.DataFrame(),
    )
    h = pt.distance_histograms(study, n_bins=50, max_distance=5.0)
    assert set(h["source"]) == {"reference MD", "scratch", "pretrained"}
    per_source = h.groupby("source").apply(lambda g: float(np.sum(g["h"]) * 0.1), include_groups=False)
    assert np.allclose(per_source, 1.0)
    assert h.loc[h["source"] == "reference MD", "distance"].iloc[0] == 0.0
