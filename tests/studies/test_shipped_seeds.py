"""The committed ``tiny`` seeds runs (``md-seeds`` in ``models/tiny.tar.xz``) are what the code computes.

The holes and committee chapters both read the seeds study's four runs (every MD molecule at
every temperature, several Langevin seeds, one run per training size): six minutes of one core
that both chapters waited on, so they are shipped. This test keeps that honest: the study asks for
them under the keys the current code computes and finds them in the bundle, and the first frames
of the sparsest model's run, recomputed from scratch, are the shipped ones to within rounding.
A separate file from ``test_shipped_models.py``, so that the two run side by side under xdist.
"""

from __future__ import annotations

import dataclasses
import json
import tarfile

import h5py
import numpy as np
import torch

from gemrepro.cache.paths import shipped_models
from gemrepro.config.scales import get_scale
from gemrepro.studies import holes
from gemrepro.studies import learning_curve as lc
from gemrepro.studies.sweep import start_images

torch.set_num_threads(1)

#: As in test_shipped_models.py: frames agree to rounding over the first steps on any CPU type.
COMPARED_STEPS = 400
POSITIONS_ATOL = 1e-3  # Å
ENERGY_ATOL = 1e-3  # eV


def test_the_bundle_holds_the_seeds_runs_and_their_first_frames_rerun(tmp_path):
    spec = get_scale("tiny")
    with tarfile.open(shipped_models("tiny", holes.SHIPPED_PART), "r:xz") as tar:
        shipped_entries = set(json.loads(tar.extractfile("bundle.json").read())["artifacts"])
    study = holes.seeds_study(spec, root=tmp_path)  # models and runs from the bundle: no MD here
    assert {f"{holes.SEEDS_STAGE}/{run.key}" for run in study.md.values()} <= shipped_entries
    assert set(study.md) == set(spec.train_sizes) and study.trajectories["failed"].any()

    sparsest = min(study.md)
    shipped = study.md[sparsest]
    frames = COMPARED_STEPS // study.protocol.frame_interval  # a prefix of whole frame intervals
    prefix_ps = frames * study.protocol.frame_interval * study.protocol.dt_fs / 1000.0
    protocol = dataclasses.replace(study.protocol, md_time_ps=prefix_ps, n_sampled_frames=frames)
    assert protocol.frame_interval == study.protocol.frame_interval  # the same stored steps, a shorter run
    images = start_images(study.starts)[: study.design.n_molecules]
    temperatures = study.design.temperatures or study.protocol.temperatures
    systems = [(atoms, t, r) for atoms in images for t in temperatures for r in range(study.design.n_seeds)]
    seeds = holes.seeds_table(shipped)["md_seed"].tolist()
    assert seeds == [holes.md_seed(0, a.info["name"], t, r) for a, t, r in systems]
    model = lc.train_scale_model(spec, sparsest, root=tmp_path, progress=False)
    assert model.key == study.models[sparsest].key
    potential = holes.potential_from_checkpoint(model.file("model.pt"))
    holes.run_systems(potential, systems, seeds, protocol, tmp_path / "prefix.h5")
    with h5py.File(shipped.file("trajectory.h5"), "r") as theirs, h5py.File(tmp_path / "prefix.h5", "r") as ours:
        n = len(ours["frames/step"])
        assert n >= 3 and ours["frames/step"][()].tolist() == theirs["frames/step"][:n].tolist()
        np.testing.assert_array_equal(ours["frames/alive"][()], theirs["frames/alive"][:n])
        for name, atol in (("positions", POSITIONS_ATOL), ("energy", ENERGY_ATOL)):
            np.testing.assert_allclose(ours[f"frames/{name}"][()], theirs[f"frames/{name}"][:n], rtol=0, atol=atol)
        worst = np.abs(ours["frames/positions"][()] - theirs["frames/positions"][:n]).max()
        print(f"largest position difference of the rerun: {worst:.2g} Å")
