"""The committed ``tiny`` model bundle is what the code trains: same keys, and a retrained model matches.

Training all twelve ``tiny`` learning-curve models to convergence takes longer on two CPU cores
than the book may, so they are committed (``models/tiny.tar.xz``). These tests keep that honest:
every model the ``tiny`` chapters ask for is in the bundle under the key the current code computes
(a change to data, model or recipe changes the key and fails here until the bundle is rebuilt),
and the sparsest seed-0 model, retrained from scratch, reproduces the bundled one.
"""

from __future__ import annotations

import json
import tarfile

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from gemrepro.cache.artifacts import Artifact, artifact_key
from gemrepro.cache.paths import shipped_models
from gemrepro.config.scales import get_scale
from gemrepro.data.build import build_dataset
from gemrepro.studies import learning_curve as lc
from gemrepro.studies import sweep

torch.set_num_threads(1)

#: How closely a rerun matches a shipped run. The network runs in float32, and float32 sums are
#: rounded differently on different CPU types (vector widths, fused multiply-adds): on one machine a
#: rerun is bit for bit; across machines frames differ by ~1e-7 Å after a few hundred steps, and
#: the difference grows chaotically in a molecule that is breaking (1e-3 Å after 600 steps, 1 Å
#: after 1,000 in a glycine that fails soon after). So frames are compared over the first
#: ``COMPARED_STEPS`` steps (worst seen across machines: 7e-5 Å), the stored steps, alive flags and
#: failure steps over the whole prefix, exactly. A change to the integrator, the noise, the seeds or
#: the model moves positions by 1e-2 Å or more within 200 steps.
COMPARED_STEPS = 400
POSITIONS_ATOL = 1e-3  # Å
ENERGY_ATOL = 1e-3  # eV
FORCES_ATOL = 1e-2  # eV/Å


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-cache")
    return root, build_dataset(scale=get_scale("tiny"), progress=False, root=root)


def _bundle_metadata() -> dict:
    bundle = shipped_models("tiny")
    assert bundle is not None, "models/tiny.tar.xz is missing: run `gemrepro artifacts ship-models --scale tiny`"
    with tarfile.open(bundle, "r:xz") as tar:
        return json.loads(tar.extractfile("bundle.json").read())


def test_bundle_holds_every_tiny_model_under_the_current_key(tiny_dataset):
    _, dataset = tiny_dataset
    spec = get_scale("tiny")
    shipped = set(_bundle_metadata()["artifacts"])
    wanted = {
        f"{lc.STAGE}/{artifact_key(lc.model_params(spec, n, 0, 'gfn2-xtb', 'T', dataset.key, m))}"
        for m in range(spec.n_training_seeds)
        for n in spec.train_sizes
    }
    assert len(wanted) == len(spec.train_sizes) * spec.n_training_seeds
    assert wanted <= shipped, f"{len(wanted - shipped)} tiny models are not in the bundle under the current keys"


def test_a_retrained_tiny_model_matches_the_bundled_one(tiny_dataset, tmp_path):
    root, dataset = tiny_dataset
    size = get_scale("tiny").train_sizes[0]
    bundled = lc.train_scale_model(get_scale("tiny"), size, root=tmp_path / "from-bundle", progress=False)
    assert (tmp_path / "from-bundle" / lc.STAGE / bundled.key / "model.pt").is_file()
    retrained = lc.train_scale_model(get_scale("tiny"), size, root=root, progress=False, shipped=False)
    assert retrained.key == bundled.key
    ours, theirs = retrained.manifest, bundled.manifest
    assert ours["stop_reason"] == theirs["stop_reason"] == "early_stopping"
    # The retrain cannot match bit for bit: the fixture labels the dataset afresh, and GFN2-xTB labels
    # differ in their last bits between machines or library builds (same parameters, same key): the
    # least-squares element references already differ by ~7e-12 eV from the bundled model's before step 1
    # (the training code of 7494af6, where the bundled model was trained, and of today give
    # bit-identical runs on one machine and one dataset); training amplifies that. Forces carry 95 % of
    # the loss and must agree within 10 %; the energy (5 % of the loss, 75 training molecules' worth of
    # constraint) moves more: a retrain on freshly built data gives 0.395 eV against the bundle's 0.355
    # (+11 %), best step 1100 against 1600. 25 % still fails on what the test is for: wrong references
    # or units (eV-scale errors), another stop reason, or a stop far from the bundled one.
    assert ours["metrics"]["test"]["forces_mae"] == pytest.approx(theirs["metrics"]["test"]["forces_mae"], rel=0.1)
    assert ours["metrics"]["test"]["energy_mae"] == pytest.approx(theirs["metrics"]["test"]["energy_mae"], rel=0.25)
    assert abs(ours["best_step"] - theirs["best_step"]) <= 5 * lc.recipe(get_scale("tiny")).eval_every


#: A recomputed PBE0 single point against the shipped one: the same code on another CPU type.
PBE0_ENERGY_ATOL = 1e-4  # eV
PBE0_FORCES_ATOL = 1e-3  # eV/Å


def test_shipped_pbe0_labels_match_a_recomputed_sample(tmp_path):
    """The convergence chapter reads its PBE0 single points from the bundle: recompute a stratified
    sample (the smallest converged frame and the smallest that did not converge) and compare."""
    from gemrepro.cache.bundle import unpack
    from gemrepro.reference import get_method

    unpack(shipped_models("tiny"), tmp_path)
    entries = [e for e in _bundle_metadata()["artifacts"] if e.startswith(f"{sweep.LABEL_STAGE}/")]
    manifests = {e: json.loads((tmp_path / e / "manifest.json").read_text()) for e in entries}
    pbe0 = [e for e, m in manifests.items() if m["params"]["method"] == "pbe0"]
    assert pbe0, "the bundle holds no PBE0 labels: run `gemrepro artifacts ship-models --scale tiny`"
    rows = []
    for entry in pbe0:
        table = sweep.load_frames(Artifact(tmp_path / entry, manifests[entry]))
        rows.append(table.assign(entry=entry, row=range(len(table))))
    frames = pd.concat(rows, ignore_index=True).sort_values(["n_atoms", "entry", "row"])
    sample = [frames[frames["converged"]].iloc[0], frames[~frames["converged"]].iloc[0]]
    method = get_method("pbe0")
    for row in sample:
        md = tmp_path / sweep.MD_STAGE / manifests[row["entry"]]["params"]["md"] / "trajectory.h5"
        with h5py.File(md, "r") as f:
            offsets = f["systems/atom_offset"][()]
            a, b = int(offsets[row["system"]]), int(offsets[row["system"] + 1])
            numbers, positions = f["systems/numbers"][a:b], f["frames/positions"][int(row["frame"]), a:b]
        result = method.compute(numbers, positions)
        assert result.converged == bool(row["converged"]), f"{row['molecule']} frame {row['frame']}"
        if result.converged:
            assert result.energy == pytest.approx(row["reference_energy"], abs=PBE0_ENERGY_ATOL)
            forces = np.load(tmp_path / row["entry"] / "forces.npz")
            k = int(row["row"])
            shipped = forces["reference"][forces["atom_offset"][k] : forces["atom_offset"][k + 1]]
            np.testing.assert_allclose(result.forces, shipped, atol=PBE0_FORCES_ATOL)
