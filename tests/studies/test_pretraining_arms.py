"""The second paper's experiment as arms of seeds: target split, corpus, epochs, matching, pilot, runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from arms_designs import micro_design
from ase import Atoms
from ase.io import write

from gemrepro.config.scales import SCALES
from gemrepro.data.reference_md import MDRecipe, run_reference_md
from gemrepro.reference import get_method
from gemrepro.studies import pretraining_arms as pa

torch.set_num_threads(1)

WATER = Atoms("OH2", positions=[[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]])
AMMONIA = Atoms("NH3", positions=[[0, 0, 0.116], [0, 0.939, -0.271], [0.813, -0.470, -0.271], [-0.813, -0.470, -0.271]])


@pytest.fixture(scope="module")
def water_files(tmp_path_factory):
    """One water trajectory at 500 K (the target, 40 frames) and hot water plus ammonia (a corpus)."""
    folder = tmp_path_factory.mktemp("arms")
    xtb = get_method("gfn2-xtb")
    target = run_reference_md(WATER, xtb, MDRecipe(500.0, n_frames=40, frame_interval=3, equilibration_steps=20))
    hot = run_reference_md(WATER, xtb, MDRecipe(1000.0, n_frames=60, frame_interval=2, equilibration_steps=20), seed=3)
    hot_nh3 = run_reference_md(AMMONIA, xtb, MDRecipe(1000.0, n_frames=10, frame_interval=2, equilibration_steps=10))
    write(folder / "target.xyz", target.frames, format="extxyz")
    write(folder / "corpus.xyz", hot.frames + hot_nh3.frames, format="extxyz")
    return folder


@pytest.fixture()
def micro(monkeypatch):
    scale = dataclasses.replace(SCALES["tiny"], arms=micro_design())
    monkeypatch.setitem(SCALES, "tiny", scale)
    return scale


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"target_runs": 1}, "target_runs"),
        ({"primary_size": 7}, "primary_size"),
        ({"train_sizes": (12, 6)}, "train_sizes"),
        ({"train_sizes": (6, 40), "primary_size": 6}, "exceeds"),
        ({"pilot_temperatures": (900.0, 500.0)}, "pilot_temperatures"),
        ({"md_seeds": 0}, "md_seeds"),
    ],
)
def test_design_rejects_what_cannot_run(changes, match):
    with pytest.raises(ValueError, match=match):
        micro_design(**changes)


def test_every_scale_has_the_same_shape():
    for name in ("tiny", "small", "paper"):
        design = pa.design_for(SCALES[name])
        assert design.training_seeds >= 3 and design.md_seeds >= 16 and design.time_ps >= 20.0
        assert len(design.train_sizes) >= 3 and design.primary_size in design.train_sizes
    assert pa.design_for(SCALES["paper"]).primary_size == 10_000
    with pytest.raises(ValueError, match="has no arms design"):
        pa.design_for(dataclasses.replace(SCALES["tiny"], arms=None))


def test_target_file_keeps_a_held_out_segment_and_nested_training_sets(water_files, micro, tmp_path):
    tgt = pa.target(micro, seed=1, target_file=water_files / "target.xyz", root=tmp_path)
    assert len(tgt.test) == 20 and len(tgt.pool) == 20 and tgt.formula == "H2O"
    assert set(tgt.validation).isdisjoint(tgt.train_indices(12))
    assert list(tgt.train_indices(6)) == list(tgt.train_indices(12)[:6])
    with pytest.raises(ValueError, match="holds only"):
        tgt.train_indices(100)


def test_epoch_config_counts_in_epochs(micro):
    config = pa.epoch_config(micro, 12, batch_size=8, max_epochs=5, decay_epochs=2, seed=0)
    assert config.eval_every == config.checkpoint_every == 2 and config.decay_steps == 4
    assert config.max_steps is None and config.max_epochs == 5 and config.patience == 2


def test_the_whole_experiment_runs_and_matches_by_the_rule(water_files, micro, tmp_path):
    study = pa.arms_study(
        micro, target_file=water_files / "target.xyz", corpus_file=water_files / "corpus.xyz", root=tmp_path
    )
    design = micro.arms
    assert len(study.models) == 2 * 2 * 2  # arms x sizes x seeds
    assert set(study.models["stop_reason"]) <= {"early_stopping", "max_epochs"}
    assert (study.models["epochs"] >= 1).all()
    # the matching rule: the matched step is the first validation at or below the scratch arm's mean
    scratch = study.models[(study.models["arm"] == "scratch") & (study.models["size"] == 12)]
    target_mae = scratch["validation_forces_mae"].mean()
    for k in range(2):
        tuned = study.artifacts["pretrained", 12, k]
        history = __import__("pandas").read_csv(tuned.file("history.csv"))
        step = tuned.manifest["matched_step"]
        reached = history.loc[history["val_forces_mae"] <= target_mae, "step"]
        assert step == (int(reached.min()) if len(reached) else None)
        assert tuned.file(pa.MATCHED_MODEL).is_file() == (step is not None)
    # the pilot chose by its rule, and the runs have the design's size
    medians = study.pilot.groupby("temperature")["stable_time_ps"].median()
    inside = medians[medians < design.time_ps]
    assert study.temperature == (inside.index[0] if len(inside) else design.pilot_temperatures[-1])
    assert len(study.pilot) == 2 * 2 * design.pilot_seeds
    per_model = study.trajectories.groupby(["arm", "training_seed"]).size()
    assert (per_model == design.md_seeds).all()
    assert len(study.family) == 8 and np.all(study.family["median_stable_time_ps"] <= design.time_ps)
    # what the chapter draws and judges comes from these tables
    history = pa.histories(study)
    assert set(history["arm"]) == {"scratch", "pretrained"} and history["stopped"].sum() == 8
    assert history["matched"].sum() == study.models["matched_step"].notna().sum()
    h = pa.distance_histograms(study)
    assert h["source"].iloc[0] == "reference MD" and "scratch" in set(h["source"])
    assert pa.detectable(study) == np.inf  # two models of two trajectories detect no ratio up to 8 with 80 % power
    errors = study.errors()
    assert list(errors.columns[:4]) == ["arm", "training_seed", "forces_mae", "matched"] and len(errors) == 4
    from gemrepro.plots import pretraining as plots

    plots.validation_curves(history)
    plots.families(study.family, study.horizon_ps)
    # everything is cached: a second call computes nothing and returns the same runs
    again = pa.arms_study(
        micro, target_file=water_files / "target.xyz", corpus_file=water_files / "corpus.xyz", root=tmp_path
    )
    assert [r.key for r in again.runs] == [r.key for r in study.runs]


def test_a_matched_fine_tuned_model_has_its_own_weights_and_errors(water_files, micro, tmp_path):
    tgt = pa.target(micro, target_file=water_files / "target.xyz", root=tmp_path)
    data = pa.corpus(micro, corpus_file=water_files / "corpus.xyz", root=tmp_path)
    pretrained = pa.pretrain(data, micro, root=tmp_path)
    # A target every validation reaches: the match is the first validated epoch.
    tuned = pa.arm_model(tgt, micro, "pretrained", 12, 0, pretrained=pretrained, match_forces_mae=1e3, root=tmp_path)
    config = pa.epoch_config(micro, 12, batch_size=8, max_epochs=3, decay_epochs=2, seed=12)
    assert tuned.manifest["matched_step"] == config.eval_every
    assert set(tuned.manifest["metrics"]) == {"validation", "test", "matched_test"}
    never = pa.arm_model(tgt, micro, "pretrained", 12, 0, pretrained=pretrained, match_forces_mae=1e-9, root=tmp_path)
    assert never.manifest["matched_step"] is None and not never.file(pa.MATCHED_MODEL).is_file()
    with pytest.raises(ValueError, match="pretrained"):
        pa.arm_model(tgt, micro, "scratch", 12, 0, pretrained=pretrained, root=tmp_path)


def test_corpus_sources_are_known_before_the_corpus_is_built(tmp_path):
    # A micro scale: the first four MD molecules (ethanol is the fourth), one conformer, two displacements;
    # two hot frames each at two temperatures.
    scale = dataclasses.replace(
        SCALES["tiny"],
        n_molecules=4,
        n_conformers=1,
        n_displaced=2,
        n_md_molecules=4,
        arms=micro_design(corpus_molecules=4, corpus_frames=2, corpus_frame_interval=2),
    )
    expected = pa.corpus_sources(scale, exclude_formula="C2H6O")
    built = pa.corpus(scale, exclude_formula="C2H6O", root=tmp_path)
    assert built.sources == expected
    names = {a.info.get("name") for a in built.frames}
    assert "ethanol" not in names and all(a.get_chemical_formula() != "C2H6O" for a in built.frames)
    assert len(expected) == 1 + 3 * 2  # the dataset, then three molecules (ethanol left out) at two temperatures


def test_a_shipped_study_is_read_back_without_recomputing_its_corpus(tmp_path, monkeypatch):
    """compute() on two processes, ship() into a bundle, then a fresh cache reads the whole study from it."""
    from gemrepro.cache import paths

    scale = dataclasses.replace(
        SCALES["tiny"],
        n_molecules=4,
        n_conformers=1,
        n_displaced=2,
        n_md_molecules=4,
        arms=micro_design(corpus_molecules=4, corpus_frames=4, corpus_frame_interval=2),
    )
    monkeypatch.setitem(SCALES, "tiny", scale)
    checkout = tmp_path / "checkout"
    (checkout / "models").mkdir(parents=True)
    monkeypatch.setattr(paths, "repo_root", lambda: checkout)
    monkeypatch.setattr(pa, "repo_root", lambda: checkout)
    bundle, n = pa.ship(scale, tmp_path / "first", workers=2)
    assert bundle == checkout / "models" / "tiny-arms.tar.xz" and bundle.is_file() and n > 10
    first = pa.arms_study(scale, root=tmp_path / "first")

    fresh = tmp_path / "fresh"
    again = pa.arms_study(scale, root=fresh)  # unpacks the bundle; must find every artifact in it
    assert [r.key for r in again.runs] == [r.key for r in first.runs]
    assert again.pretrained.key == first.pretrained.key and again.temperature == first.temperature
    assert not (fresh / "dataset").exists() and not (fresh / "labels").exists()  # the corpus was never rebuilt
