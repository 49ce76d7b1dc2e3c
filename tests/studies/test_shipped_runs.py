"""The committed ``tiny`` MD runs are what the code computes: the long runs and the temperature
sweep's runs, their first steps recomputed from scratch (see ``test_shipped_models.py`` for the
models and for the tolerances). A file of its own so that it runs beside the model tests under xdist.
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from test_shipped_models import (
    COMPARED_STEPS,
    ENERGY_ATOL,
    FORCES_ATOL,
    POSITIONS_ATOL,
    _bundle_metadata,
)

from gemrepro.cache.artifacts import artifact_key
from gemrepro.config.scales import get_scale
from gemrepro.data.build import build_dataset
from gemrepro.md import read_system
from gemrepro.md.queue import trajectory_path
from gemrepro.studies import learning_curve as lc
from gemrepro.studies import long_runs, sweep
from gemrepro.studies.sweep import n_md_molecules, start_structures

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-cache")
    return root, build_dataset(scale=get_scale("tiny"), progress=False, root=root)


def test_the_bundle_holds_the_long_runs_and_their_first_half_picosecond_reruns(tiny_dataset, tmp_path):
    """The shipped 10 ps runs are what the code computes: the first 1,000 steps of the sparsest
    model's run, recomputed from scratch, give the same frames (to within rounding, see COMPARED_STEPS)
    and the same early failures."""
    root, _ = tiny_dataset  # may hold a retrained model under the bundled key (the test above): not used here
    shipped = long_runs.long_runs(get_scale("tiny"), root=root)
    sparsest = min(shipped.runs)
    assert set(shipped.runs) == {100, 3200} and len(shipped.trajectories) == 2 * 20
    assert set(_bundle_metadata()["artifacts"]) >= {f"{long_runs.STAGE}/{run.key}" for run in shipped.runs.values()}
    starts = start_structures(n_md_molecules(get_scale("tiny")), 0, root)
    design = dataclasses.replace(shipped.design, time_ps=0.5)
    bundled = lc.train_scale_model(get_scale("tiny"), sparsest, root=tmp_path / "from-bundle", progress=False)
    assert bundled.key == shipped.models[sparsest].key
    rerun = long_runs.long_run(get_scale("tiny"), bundled, starts, design, root=root, shipped=False)
    long_table = long_runs.long_runs_table(shipped.runs[sparsest])
    short_table = long_runs.long_runs_table(rerun)
    early = long_table["failed"] & (long_table["failure_step"] <= design.n_steps)
    assert early.sum() >= 2  # the prefix holds failures, so their steps are compared too
    assert short_table["failed"].tolist() == early.tolist()
    assert short_table.loc[early, "failure_step"].tolist() == long_table.loc[early, "failure_step"].tolist()
    worst = 0.0
    for k in range(len(short_table)):
        ours = read_system(trajectory_path(rerun.file("runs"), k), 0)
        theirs = read_system(trajectory_path(shipped.runs[sparsest].file("runs"), k), 0)
        n = len(ours["step"])
        assert theirs["step"][:n].tolist() == ours["step"].tolist()
        early_frames = ours["step"] <= COMPARED_STEPS
        assert early_frames.sum() >= 2
        ours_early, theirs_early = ours["positions"][early_frames], theirs["positions"][:n][early_frames]
        np.testing.assert_allclose(ours_early, theirs_early, rtol=0, atol=POSITIONS_ATOL)
        np.testing.assert_allclose(
            ours["energy"][early_frames], theirs["energy"][:n][early_frames], rtol=0, atol=ENERGY_ATOL
        )
        worst = max(worst, float(np.abs(ours_early - theirs_early).max()))
    print(f"largest position difference of the rerun: {worst:.2g} Å")


def test_the_bundle_holds_the_sweep_runs_and_their_first_half_picosecond_reruns(tiny_dataset, tmp_path):
    """The shipped 10 ps temperature-sweep runs are what the code computes: the first stored frames of
    the sparsest model's run (every molecule at every temperature), recomputed from scratch with the
    same frame interval and noise, are the same to within rounding, and so are the failures among them."""
    root, _ = tiny_dataset
    shipped_root = tmp_path / "from-bundle"
    spec = get_scale("tiny")
    protocol = sweep.protocol_for(get_scale("tiny"))
    assert protocol.md_time_ps == spec.sweep_length_ps == 10.0
    starts = start_structures(n_md_molecules(get_scale("tiny")), 0, root)
    models = {
        n: lc.train_scale_model(get_scale("tiny"), n, root=shipped_root, progress=False) for n in spec.train_sizes
    }
    keys = {n: artifact_key(sweep.md_params(model.key, starts.key, protocol, 0)) for n, model in models.items()}
    assert set(_bundle_metadata()["artifacts"]) >= {f"{sweep.MD_STAGE}/{key}" for key in keys.values()}
    sparsest = min(models)
    run = sweep.run_sweep_md(models[sparsest], starts, protocol, 0, shipped_root, scale=get_scale("tiny"))
    assert run.key == keys[sparsest] and run.manifest["steps"] == protocol.n_steps
    n_frames = 4  # 0.55 ps: 4 frame intervals of 277 steps
    n_steps = n_frames * protocol.frame_interval
    prefix = sweep.simulate_sweep(models[sparsest], starts, protocol, 0, tmp_path / "prefix.h5", n_steps=n_steps)
    with h5py.File(run.file("trajectory.h5"), "r") as theirs, h5py.File(tmp_path / "prefix.h5", "r") as ours:
        assert ours["frames/step"][()].tolist() == theirs["frames/step"][: n_frames + 1].tolist()
        np.testing.assert_array_equal(ours["frames/alive"][()], theirs["frames/alive"][: n_frames + 1])
        early = int((ours["frames/step"][()] <= COMPARED_STEPS).sum())
        assert early >= 2
        for name, atol in (("positions", POSITIONS_ATOL), ("forces", FORCES_ATOL), ("energy", ENERGY_ATOL)):
            np.testing.assert_allclose(
                ours[f"frames/{name}"][:early], theirs[f"frames/{name}"][:early], rtol=0, atol=atol
            )
        worst = np.abs(ours["frames/positions"][:early] - theirs["frames/positions"][:early]).max()
        print(f"largest position difference of the rerun: {worst:.2g} Å")
    table = sweep.systems_table(run)
    early = table["failed"] & (table["failure_step"] <= n_steps)
    assert [f is not None for f in prefix.failures] == early.tolist()
    assert [f.step for f in prefix.failures if f is not None] == table.loc[early, "failure_step"].tolist()
