"""The samplers of the core stages reproduce an artifact built by today's code, and see a tampered one.

Each test builds a small stored artifact through the stage's own function (models and nothing else
from the committed ``tiny`` bundle), samples it (it agrees), then changes what it stored and
samples again (it does not). A sampler that compared nothing would pass the first half only.
"""

import dataclasses
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from gemrepro.cache.bundle import unpack
from gemrepro.cache.paths import repo_root
from gemrepro.catalog import md_molecules
from gemrepro.config.scales import get_scale
from gemrepro.data.build import build_dataset
from gemrepro.reference.registry import get_method
from gemrepro.stress import cached as audits
from gemrepro.stress.store import read_table, write_table
from gemrepro.studies import committee, out_of_sample, samplers, stages, sweep
from gemrepro.studies import learning_curve as lc
from gemrepro.studies.samplers import Inputs

torch.set_num_threads(1)

SMALLEST_MODEL = "ba813d3dadd4a916"  # the bundle's 100-configuration learning-curve model
MEMBER = "538db25a7df3c623"  # member 1 of its committee


def sample(stage, roots, scratch):
    """The sampler of ``stage`` on the one stored artifact of it under ``roots[0]``."""
    (artifact,) = stages.stored_artifacts(roots[:1], stage)
    return samplers.SAMPLERS[stage](artifact, Inputs(roots, scratch))


def only(cache, stage):
    (folder,) = (cache / stage).iterdir()
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The bundle's models; one MD molecule's start structure and a 40-step sweep run of it."""
    root = tmp_path_factory.mktemp("world")
    unpack(repo_root() / "models" / "tiny.tar.xz", root / "bundle")
    inputs = Inputs([root / "bundle"], root / "unused")
    models = [inputs.find(lc.STAGE, key) for key in (SMALLEST_MODEL, MEMBER)]
    starts = sweep.start_structures(1, 0, root / "bundle")
    protocol = sweep.Protocol(0.02, (600.0,), n_sampled_frames=4)  # 40 steps, a frame every 10
    run = sweep.run_sweep_md(models[0], starts, protocol, 0, root / "bundle", shipped=False)
    return {"root": root / "bundle", "models": models, "starts": starts, "protocol": protocol, "run": run}


# ----------------------------------------------------------------------------- comparisons
def test_the_comparisons_see_values_names_and_nans(tmp_path):
    assert samplers.array_difference(np.array([1.0, np.nan]), np.array([1.5, np.nan])) == 0.5
    assert samplers.array_difference(np.array([np.nan]), np.array([1.0])) == np.inf
    assert samplers.array_difference(np.array([b"opt"]), np.array([b"d1"])) == np.inf
    assert samplers.array_difference(np.zeros(2), np.zeros(3)) == np.inf
    for name, order in (("a.h5", ("x", "y")), ("b.h5", ("y", "x"))):  # other bytes, the same content
        with h5py.File(tmp_path / name, "w") as f:
            f.attrs["method"] = "gfn2-xtb"
            for key in order:
                f.create_dataset(f"1/{key}", data=np.arange(3.0))
    assert samplers.hdf5_difference(tmp_path / "a.h5", tmp_path / "b.h5") == 0.0
    with h5py.File(tmp_path / "b.h5", "a") as f:
        f["1/x"][1] += 0.25
    assert samplers.hdf5_difference(tmp_path / "a.h5", tmp_path / "b.h5") == 0.25
    with h5py.File(tmp_path / "b.h5", "a") as f:
        f.attrs["method"] = "pbe0"
    assert samplers.hdf5_difference(tmp_path / "a.h5", tmp_path / "b.h5") == np.inf


# ----------------------------------------------------------------------------- data and starts
def test_the_dataset_sampler_rebuilds_it_from_the_stored_labels(tmp_path):
    scale = dataclasses.replace(get_scale("tiny"), n_conformers=1, n_displaced=2)
    stored = build_dataset(scale, molecules=["O", "CO"], progress=False, root=tmp_path / "cache")
    roots = [tmp_path / "cache"]
    result = sample("dataset", roots, tmp_path / "work")
    assert result.agrees and result.difference == 0.0 and "2 stored labels artifacts" in result.what
    with h5py.File(stored.file("qm7x.hdf5"), "a") as f:
        (geometry,) = [g for g in f["1"] if g.endswith("-opt")]
        f[f"1/{geometry}/eAT"][0] += 0.01
    result = sample("dataset", roots, tmp_path / "work")
    assert not result.agrees and result.difference == pytest.approx(0.01)
    with h5py.File(stored.file("qm7x.hdf5"), "a") as f:
        f[f"1/{geometry}/eAT"][0] -= 0.01
    table = pd.read_csv(stored.file("labels.csv"))
    table.loc[0, "geometry"] = "Geom-m9-i9-c9-opt"
    table.to_csv(stored.file("labels.csv"), index=False)
    assert sample("dataset", roots, tmp_path / "work").difference == np.inf


def _shift_first_atom(path, dx=0.01):
    images = read(path, index=":", format="extxyz")
    images[0].positions[0, 0] += dx
    write(path, images, format="extxyz")


def test_the_start_samplers_relax_again_and_see_moved_atoms(tmp_path, monkeypatch):
    monkeypatch.setattr(out_of_sample, "molecules_of_fig3", lambda: md_molecules(2)[1:])  # ethanol: cheap
    sweep.start_structures(1, 0, tmp_path / "cache")
    out_of_sample.out_of_sample_starts(0, tmp_path / "cache")
    roots = [tmp_path / "cache"]
    for stage in ("md-start", "oos-start"):
        result = sample(stage, roots, tmp_path / "work")
        assert result.agrees and result.difference == 0.0, stage
        _shift_first_atom(only(tmp_path / "cache", stage) / "start.xyz")
        result = sample(stage, roots, tmp_path / "work")
        assert not result.agrees and result.difference == pytest.approx(0.01, abs=1e-7), stage


def test_the_sanity_fit_sampler_fits_again_and_sees_other_errors(tmp_path, monkeypatch):
    water, method = molecule("H2O"), get_method("gfn2-xtb")
    frames = []
    for k in range(12):
        atoms = water.copy()
        atoms.rattle(0.05, seed=k)
        label = method.compute(atoms.numbers, atoms.positions)
        atoms.calc = SinglePointCalculator(atoms, energy=label.energy, forces=label.forces)
        frames.append(atoms)
    (tmp_path / "shared").mkdir()
    write(tmp_path / "shared" / "water.xyz", frames, format="extxyz")
    monkeypatch.setenv("GEMREPRO_SHARED_DATA", str(tmp_path / "shared"))
    lc.sanity_check_real_data(
        tmp_path / "shared" / "water.xyz", energy_unit="eV", n_train=8, n_validation=2, n_test=2, steps=3,
        scale=get_scale("tiny"), root=tmp_path / "cache",
    )  # fmt: skip
    roots = [tmp_path / "cache"]
    result = sample("sanity-fit", roots, tmp_path / "work")
    assert result.agrees and result.difference == 0.0 and "3 steps" in result.what
    manifest = only(tmp_path / "cache", "sanity-fit") / "manifest.json"
    content = json.loads(manifest.read_text())
    content["errors"]["model"]["forces_mae"] *= 1.01
    manifest.write_text(json.dumps(content))
    result = sample("sanity-fit", roots, tmp_path / "work")
    assert not result.agrees and result.difference == pytest.approx(0.01 / 1.01, rel=1e-6)


# ----------------------------------------------------------------------------- MD stages
def test_the_audit_sampler_reruns_the_hot_md_and_its_labels(world, tmp_path, monkeypatch):
    design = audits.AuditDesign(time_ps=0.02, temperatures=(1200.0,), nve_ps=0.002, ramp_ps=0.002, n_sampled_frames=4)
    stored, _ = audits.model_audit(world["models"][0], world["starts"], design, root=tmp_path / "cache", shipped=False)
    roots = [tmp_path / "cache", world["root"]]
    result = sample("stress-audit", roots, tmp_path / "work")
    assert result.agrees and result.difference == 0.0 and "40 hot MD steps" in result.what
    meta = json.loads(stored.file("audit.json").read_text())
    frames = read_table(stored.file("frames.csv"), meta["tables"]["frames"])
    frames.loc[frames.index[-1], "model_energy"] += 0.01
    write_table(frames, stored.file("frames.csv"))
    result = sample("stress-audit", roots, tmp_path / "work")
    assert not result.agrees and result.difference == pytest.approx(10.0, rel=1e-6)  # 0.01 eV / 1 meV
    monkeypatch.setattr(samplers, "COMPARED_STEPS", 10)  # a longer audit: its first 2 frames, no labels
    result = sample("stress-audit", roots, tmp_path / "work")
    assert result.agrees and result.difference == 0.0 and result.what == "the first 20 hot MD steps of 1 trajectories"
    with h5py.File(stored.file("trajectory.h5"), "a") as f:
        f["frames/positions"][2, 0, 0] += 0.005  # step 20
    assert sample("stress-audit", roots, tmp_path / "work").difference == pytest.approx(5.0, rel=1e-4)


def test_the_committee_samplers_evaluate_and_run_again(world, tmp_path, monkeypatch):
    monkeypatch.setattr(samplers, "COMPARED_STEPS", 20)  # the run's first 2 frames, not 400 steps
    models, run = world["models"], world["run"]
    study = sweep.Sweep(world["protocol"], world["starts"], {}, {100: run}, {}, pd.DataFrame(), pd.DataFrame())
    committee.frame_disagreement(models, run, tmp_path / "cache")
    committee.stop_on_uncertainty_run(models, study, 100, [0], 50.0, tmp_path / "cache")
    roots = [tmp_path / "cache", world["root"]]
    for stage in ("committee-disagreement", "md-committee"):
        result = sample(stage, roots, tmp_path / "work")
        assert result.agrees and result.difference < 1e-2, (stage, result)
    table = pd.read_csv(only(tmp_path / "cache", "committee-disagreement") / "disagreement.csv")
    table.loc[0, "force_disagreement"] += 0.01
    table.to_csv(only(tmp_path / "cache", "committee-disagreement") / "disagreement.csv", index=False)
    assert sample("committee-disagreement", roots, tmp_path / "work").difference == pytest.approx(10.0, rel=1e-3)
    with h5py.File(only(tmp_path / "cache", "md-committee") / "trajectory.h5", "a") as f:
        f["frames/positions"][1, 0, 0] += 0.005
    result = sample("md-committee", roots, tmp_path / "work")
    assert not result.agrees and result.difference == pytest.approx(0.005, rel=1e-3)
