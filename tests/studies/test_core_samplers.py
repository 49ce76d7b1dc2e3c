"""The samplers of the core stages reproduce an artifact built by today's code, and see a tampered one.

Each test builds a small stored artifact through the stage's own function (models and nothing else
from the committed ``tiny`` bundle), samples it (it agrees), then changes what it stored and
samples again (it does not). A sampler that compared nothing would pass the first half only.
"""

import dataclasses

import h5py
import numpy as np
import pandas as pd
import pytest
from ase.io import read, write

from gemrepro.catalog import md_molecules
from gemrepro.config.scales import get_scale
from gemrepro.data.build import build_dataset
from gemrepro.studies import out_of_sample, samplers, stages, sweep
from gemrepro.studies.samplers import Inputs


def sample(stage, roots, scratch):
    """The sampler of ``stage`` on the one stored artifact of it under ``roots[0]``."""
    (artifact,) = stages.stored_artifacts(roots[:1], stage)
    return samplers.SAMPLERS[stage](artifact, Inputs(roots, scratch))


def only(cache, stage):
    (folder,) = (cache / stage).iterdir()
    return folder


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
