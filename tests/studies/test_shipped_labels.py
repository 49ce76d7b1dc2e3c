"""The committed ``tiny`` labels (``labels`` in ``models/tiny-labels.tar.xz``) are what the code computes.

Sampling and labelling the dataset's molecules with xTB was the slowest part of two chapters (the
data and learning-curve chapters both waited on it), so the per-molecule ``labels`` artifacts ship.
This test keeps that honest: the dataset built from an empty cache finds every molecule's labels in
the bundle under the keys today's code computes (no molecule is sampled or labelled here), and the
smallest molecule, sampled and labelled again from scratch, gives the shipped geometries and labels.
"""

from __future__ import annotations

import json
import tarfile
from unittest import mock

import numpy as np
import pandas as pd

from gemrepro.cache.artifacts import artifact_key
from gemrepro.cache.paths import shipped_models
from gemrepro.config.scales import get_scale
from gemrepro.data import build

POSITIONS_ATOL = 1e-3  # Å: relaxation and displacement from the same seed, on any CPU
ENERGY_ATOL = 1e-4  # eV
FORCES_ATOL = 1e-3  # eV/Å


def _never(task: build.MoleculeTask) -> dict:
    raise AssertionError(f"{task.smiles}: labelled here; expected its labels from the bundle")


def test_the_dataset_is_built_from_the_shipped_labels_and_one_molecule_relabels_the_same(tmp_path):
    spec = get_scale("tiny")
    with tarfile.open(shipped_models("tiny", build.SHIPPED_PART), "r:xz") as tar:
        shipped = set(json.loads(tar.extractfile("bundle.json").read())["artifacts"])
    params, tasks = build.dataset_params(spec)
    assert {f"labels/{artifact_key(task.params())}" for task in tasks} <= shipped

    with mock.patch.object(build, "sample_and_label", _never):
        dataset = build.build_dataset(spec, n_workers=1, progress=False, root=tmp_path)
    table = pd.read_csv(dataset.file("labels.csv"))
    assert dataset.manifest["n_molecules"] == len(tasks) and set(table["smiles"]) == {t.smiles for t in tasks}
    assert dataset.manifest["n_configurations"] == int(table["converged"].sum()) > 0

    labels = build.label_molecules(tasks, n_workers=1, progress=False, root=tmp_path)
    smallest = min(range(len(tasks)), key=lambda i: np.load(labels[i].file("labels.npz"))["numbers"].size)
    rows = build.sample_and_label(tasks[smallest])["rows"]
    with np.load(labels[smallest].file("labels.npz")) as stored:
        assert len(rows) == len(stored["energy"]) > 1
        assert np.abs(np.stack([r["positions"] for r in rows]) - stored["positions"]).max() < POSITIONS_ATOL
        assert np.abs(np.array([r["energy"] for r in rows]) - stored["energy"]).max() < ENERGY_ATOL
        assert np.abs(np.stack([r["forces"] for r in rows]) - stored["forces"]).max() < FORCES_ATOL
