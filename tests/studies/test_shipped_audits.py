"""The committed ``tiny`` stress audits (``stress-audit`` in ``models/tiny.tar.xz``) are what the code computes.

The stress chapter audits the four learning-curve models: hot MD, xTB relabelling and the field's
NVE and heating runs, the longest chapter of the book when computed. The bundle ships them; this
test holds the chapter's parameters to the study's design (so the chapter asks for the shipped
keys), finds all four in the bundle, and recomputes the sparsest model's audit from scratch: its
tables must be the shipped ones to within rounding.
"""

from __future__ import annotations

import ast
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gemrepro.cache.paths import shipped_models
from gemrepro.catalog import MD_MOLECULES_COVER_ALL_ELEMENTS
from gemrepro.config.scales import get_scale
from gemrepro.stress import cached as audits
from gemrepro.studies.learning_curve import learning_curve, model_artifacts
from gemrepro.studies.sweep import start_structures

torch.set_num_threads(1)

CHAPTER = Path(__file__).parents[2] / "book" / "chapters" / "stress.ipynb"
POSITIONS_ATOL = 1e-3  # Å: as the other shipped-run tests, rounding across CPU types over a few hundred steps
ENERGY_ATOL = 1e-3  # eV


def chapter_parameters() -> dict:
    """The values of the stress chapter's papermill parameters cell."""
    cells = json.loads(CHAPTER.read_text())["cells"]
    (cell,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def test_the_chapter_asks_for_the_design_the_bundle_ships():
    p = chapter_parameters()
    design = audits.AuditDesign(p["time_ps"], tuple(p["temperatures"]), p["n_seeds"], p["nve_ps"], p["ramp_ps"])
    assert design == audits.CHAPTER_AUDIT


def test_the_bundle_holds_the_chapters_audits_and_one_recomputes(tmp_path):
    spec = get_scale("tiny")
    with tarfile.open(shipped_models("tiny"), "r:xz") as tar:
        shipped_entries = set(json.loads(tar.extractfile("bundle.json").read())["artifacts"])
    found = audits.chapter_audits(spec, root=tmp_path)  # models and audits from the bundle
    assert {f"{audits.STAGE}/{artifact.key}" for artifact, _ in found.values()} <= shipped_entries
    assert set(found) == set(spec.train_sizes)

    sparsest = min(found)
    shipped = found[sparsest][1]
    curve = learning_curve(spec, root=tmp_path, progress=False)
    model = dict(zip(curve["train_size"], model_artifacts(curve, root=tmp_path)))[sparsest]
    starts = start_structures(max(spec.n_md_molecules, MD_MOLECULES_COVER_ALL_ELEMENTS), 0, tmp_path)
    _, ours = audits.model_audit(model, starts, root=tmp_path / "fresh", shipped=False)

    exact = ["system", "molecule", "temperature", "seed", "failed", "rule"]
    pd.testing.assert_frame_equal(ours.trajectories[exact], shipped.trajectories[exact])
    assert ours.frames[["system", "frame", "step"]].equals(shipped.frames[["system", "frame", "step"]])
    for column, atol in (("model_energy", ENERGY_ATOL), ("reference_energy", ENERGY_ATOL), ("forces_mae", 1e-3)):
        np.testing.assert_allclose(ours.frames[column], shipped.frames[column], rtol=0, atol=atol)
    for name in ("trajectories", "nve", "ramp"):
        assert list(getattr(ours.field, name).columns) == list(getattr(shipped.field, name).columns)
    assert ours.field.lines() == shipped.field.lines()
