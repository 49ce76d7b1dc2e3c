"""The temperature-sweep pieces: frame choice, relabelling cache and failures, error tables."""

import contextlib

import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import molecule

from gemrepro.analysis.errors import (
    converged_percent,
    force_mae,
    frame_geometry,
    mean_over_molecules,
    stable_fraction,
    trajectory_errors,
)
from gemrepro.analysis.proportions import binomial_interval, with_intervals
from gemrepro.config.scales import SCALES
from gemrepro.md import run_md
from gemrepro.md.potentials import ExplodingPotential, MorseBondPotential
from gemrepro.studies import sweep

torch.set_num_threads(1)


def test_sample_frames_uniform_and_ends_at_the_last_frame():
    alive = np.ones(301, dtype=bool)
    picked = sweep.sample_frames(alive, 72)
    assert len(picked) == 72 and len(np.unique(picked)) == 72
    assert picked[-1] == 300 and picked[0] == 4  # round(300/72) = 4: frame 0 (the start) is not sampled
    assert np.all(np.abs(np.diff(picked) - 300 / 72) <= 1)


def test_sample_frames_stop_at_the_failure_frame():
    alive = np.ones(301, dtype=bool)
    alive[150:] = False  # died between frames 149 and 150; frame 150 holds the failed geometry
    picked = sweep.sample_frames(alive, 72)
    assert picked[-1] == 150 and len(picked) == 72 and picked.max() == 150
    alive[10:] = False
    assert list(sweep.sample_frames(alive, 72)) == list(range(1, 11))  # short: every frame up to the failure
    alive[:] = False
    assert list(sweep.sample_frames(alive, 72)) == [0]


def test_sample_frames_rejects_bad_input():
    with pytest.raises(ValueError, match="alive"):
        sweep.sample_frames(np.ones((2, 3), dtype=bool), 4)
    with pytest.raises(ValueError, match="n: expected"):
        sweep.sample_frames(np.ones(10, dtype=bool), 0)


class _FakeArtifact:
    """Just what ``relabel`` reads from an MD artifact."""

    def __init__(self, folder, key="fake-md"):
        self.path, self.key = folder, key

    def file(self, name):
        return self.path / name


def _morse_run(folder, **options):
    """Water and methane at 300 K under a Morse potential; methane is blown apart and fails."""
    systems = [molecule("H2O"), molecule("CH4")]
    for atoms, name in zip(systems, ("water", "methane")):
        atoms.info["name"] = name
    potential = ExplodingPotential(MorseBondPotential(systems), exploding=[1], push=20.0)
    summary = run_md(
        potential,
        systems,
        n_steps=300,
        path=folder / "trajectory.h5",
        temperatures=300.0,
        seeds=3,
        frame_interval=5,
        progress=False,
        **options,
    )
    rows = [
        {
            "system": s,
            "molecule": a.info["name"],
            "formula": a.get_chemical_formula(),
            "n_atoms": len(a),
            "temperature": 300.0,
            "failed": f is not None,
            "failure_step": f.step if f else -1,
            "time_to_failure_ps": f.time_ps if f else np.nan,
            "failure_rule": f.rule if f else "",
        }
        for s, (a, f) in enumerate(zip(systems, summary.failures))
    ]
    pd.DataFrame(rows).to_csv(folder / "systems.csv", index=False)
    return summary


@pytest.fixture(scope="module")
def md_run(tmp_path_factory):
    """Two molecules at 300 K under a Morse potential; the second is blown apart and fails."""
    folder = tmp_path_factory.mktemp("md")
    return _FakeArtifact(folder), _morse_run(folder)


@pytest.fixture(scope="module")
def continued_run(tmp_path_factory):
    """The run of ``md_run`` with ``after_failure="continue"``: methane fails and runs on to the end."""
    folder = tmp_path_factory.mktemp("md-continued")
    return _FakeArtifact(folder, "fake-continued-md"), _morse_run(folder, after_failure="continue")


def test_sampled_frames_of_a_continued_run_span_the_whole_run(continued_run, md_run):
    md, summary = continued_run
    _, frozen_summary = md_run
    assert summary.alive == [True, True] and summary.failures == frozen_summary.failures
    fail_step = summary.failures[1].step
    frames = sweep.sampled_frames(md, 8)
    for s in (0, 1):  # both trajectories: 8 frames from the first after the start to the end of the run
        part = frames[frames.system == s]
        assert len(part) == 8 and part["frame"].max() == 60 and part["frame"].min() >= 1
    methane = frames[frames.system == 1]
    assert methane["after_failure"].tolist() == (methane["step"] >= fail_step).tolist()
    assert methane["after_failure"].sum() >= 6  # the failure came early: most of the sample is after it
    assert not frames[frames.system == 0]["after_failure"].any() and not frames["failure_frame"].any()
    assert list(frames.columns[:6]) == ["system", "frame", "step", "time_ps", "failure_frame", "after_failure"]
    # ending the sample at the failure gives what the frozen run gives
    until = sweep.sampled_frames(md, 8, until_failure=True)
    frozen = sweep.sampled_frames(md_run[0], 8)
    columns = ["system", "frame", "step", "failure_frame", "after_failure"]
    pd.testing.assert_frame_equal(until[columns], frozen[columns])
    cut = until[until.system == 1]
    assert cut["step"].max() - 5 < fail_step <= cut["step"].max() and cut["failure_frame"].tolist()[-1]
    assert cut["after_failure"].tolist() == [False] * (len(cut) - 1) + [True]
    # the last frames, which the expensive subsample takes, are post-failure ones for the failed molecule
    sizes = pd.DataFrame({"system": [0, 1], "n_electrons": [10, 10]})
    assert sweep.pbe0_subsample(frames[frames.system == 1], sizes, per_cell=3)["after_failure"].all()


def test_the_sweep_runs_on_after_a_failure(tmp_path, monkeypatch):
    from ase.io import write

    starts = tmp_path / "starts"
    starts.mkdir()
    images = [molecule("H2O"), molecule("CH4")]
    for atoms, name in zip(images, ("water", "methane")):
        atoms.info["name"] = name
    write(starts / "start.xyz", images, format="extxyz")
    # the "model" tears every system apart: in the sweep, every trajectory still runs its full length
    monkeypatch.setattr(
        "gemrepro.studies.sweep.potential_from_checkpoint",
        lambda path, device="cpu": ExplodingPotential(
            MorseBondPotential([a for a in images for _ in range(2)]), exploding=[0, 1, 2, 3], push=20.0
        ),
    )
    protocol = sweep.Protocol(md_time_ps=0.02, temperatures=(300.0, 600.0), n_sampled_frames=4)
    md = sweep.run_sweep_md(
        _FakeArtifact(tmp_path, "model-key"), _FakeArtifact(starts, "starts-key"), protocol, root=tmp_path / "artifacts"
    )
    assert md.manifest["params"]["after_failure"] == "continue" and md.manifest["params"]["stage_version"] == 2
    table = sweep.systems_table(md)
    assert table["failed"].all() and (table["failure_step"] > 0).all() and (table["failure_rule"] != "").all()
    frames = sweep.sampled_frames(md, protocol.n_sampled_frames)
    assert (frames.groupby("system")["frame"].max() == protocol.n_steps // protocol.frame_interval).all()
    assert frames.groupby("system")["after_failure"].any().all()
    from gemrepro.cache.artifacts import artifact_key

    assert md.key == artifact_key(sweep.md_params("model-key", "starts-key", protocol))


def test_sampled_frames_of_a_run(md_run):
    md, summary = md_run
    assert summary.alive == [True, False]
    frames = sweep.sampled_frames(md, 8)
    water, methane = frames[frames.system == 0], frames[frames.system == 1]
    assert len(water) == 8 and water["frame"].max() == 60  # 300 steps / 5 = frame 60, the end of the run
    fail_step = summary.failures[1].step
    last = methane.iloc[-1]
    assert last["failure_frame"] and not methane.iloc[:-1]["failure_frame"].any()
    assert last["step"] - 5 < fail_step <= last["step"]  # the first stored frame after the failure
    assert list(frames.columns[:5]) == ["system", "frame", "step", "time_ps", "failure_frame"]
    assert frames["after_failure"].tolist() == frames["failure_frame"].tolist()  # frozen: only the failure frame


def test_relabel_records_failures_and_is_cached(md_run, tmp_path, monkeypatch):
    md, summary = md_run
    frames = sweep.sampled_frames(md, 3)
    calls = []

    def fake_compute(jobs, method, options, client):
        # the failing molecule's frames "do not converge"; water gets a known energy and zero forces
        (run_jobs,) = jobs.values()
        calls.append(len(run_jobs))
        out = []
        for job in run_jobs:
            n = len(job["numbers"])
            if job["system"] == 1:
                out.append(
                    {
                        "energy": np.nan,
                        "forces": np.full((n, 3), np.nan),
                        "converged": False,
                        "error": "SCF not converged",
                        "wall_time": 0.1,
                    }
                )
            else:
                out.append(
                    {"energy": -100.0, "forces": np.zeros((n, 3)), "converged": True, "error": "", "wall_time": 0.1}
                )
        return {name: out for name in jobs}

    monkeypatch.setattr(sweep, "_compute", fake_compute)
    monkeypatch.setattr("gemrepro.studies.sweep.dask_client", lambda *args: contextlib.nullcontext())
    free = {1: -10.0, 6: -40.0, 8: -50.0}
    monkeypatch.setattr("gemrepro.studies.sweep.free_atom_energies", lambda method, elements, root=None: free)
    first = sweep.relabel(md, frames, "gfn2-xtb", root=tmp_path)
    again = sweep.relabel(md, frames, "gfn2-xtb", root=tmp_path)
    assert calls == [len(frames)] and again.path == first.path  # the second call reads the cache
    table = sweep.load_frames(first)
    assert len(table) == len(frames) and (table["system"] == 0).sum() == 3
    assert table["converged"].tolist() == (table["system"] == 0).tolist()
    water = table[table.system == 0]
    # atomization energy of H2O: -100 - (2 * -10 + -50) = -30 eV
    assert np.allclose(water["reference_atomization_energy"], -30.0)
    assert np.allclose(water["energy_error"], water["model_energy"] + 30.0)
    with np.load(first.file("forces.npz")) as arrays:
        model_forces = arrays["model"][:3]
    assert np.isclose(water["forces_mae"].iloc[0], np.abs(model_forces).mean())
    assert (table[table.system == 1]["error"] == "SCF not converged").all()
    assert table[table.system == 1]["reference_atomization_energy"].isna().all()


def test_relabelled_frames_of_a_continued_run_flag_the_post_failure_ones(continued_run, tmp_path, monkeypatch):
    md, summary = continued_run
    frames = sweep.sampled_frames(md, 6)

    def fake_compute(jobs, method, options, client):
        return {
            name: [
                {
                    "energy": -100.0,
                    "forces": np.zeros((len(job["numbers"]), 3)),
                    "converged": True,
                    "error": "",
                    "wall_time": 0.1,
                }
                for job in run_jobs
            ]
            for name, run_jobs in jobs.items()
        }

    monkeypatch.setattr(sweep, "_compute", fake_compute)
    monkeypatch.setattr("gemrepro.studies.sweep.dask_client", lambda *args: contextlib.nullcontext())
    monkeypatch.setattr(
        "gemrepro.studies.sweep.free_atom_energies", lambda method, elements, root=None: {1: -10.0, 6: -40.0, 8: -50.0}
    )
    table = sweep.load_frames(sweep.relabel(md, frames, "gfn2-xtb", root=tmp_path))
    merged = table.merge(frames, on=["system", "frame"], suffixes=("", "_sampled"))
    assert len(merged) == len(frames) == 12
    assert merged["after_failure"].tolist() == merged["after_failure_sampled"].tolist()
    assert merged["failure_frame"].tolist() == merged["failure_frame_sampled"].tolist()
    methane = table[table.system == 1]
    assert (
        methane["after_failure"].sum() >= 4
        and (methane["step"] >= summary.failures[1].step).eq(methane["after_failure"]).all()
    )


def test_label_frames_never_raises_on_broken_geometry():
    water = molecule("H2O")
    broken = water.positions.copy()
    broken[0] = np.nan
    out = sweep.label_frames("gfn2-xtb", {}, water.numbers, [water.positions, broken])
    assert out[0]["converged"] and np.isfinite(out[0]["energy"])
    assert not out[1]["converged"] and out[1]["error"] == "non-finite coordinates"


def _frames():
    return pd.DataFrame(
        {
            "train_size": [4, 4, 4, 4, 40, 40],
            "molecule": ["a", "a", "a", "b", "a", "a"],
            "temperature": [300.0] * 6,
            "energy_error": [1.0, -3.0, 100.0, 0.5, 0.1, -0.3],
            "forces_mae": [0.2, 0.4, np.nan, 0.1, 0.01, 0.03],
            "converged": [True, True, False, True, True, True],
        }
    )


def test_trajectory_errors_against_hand_numbers():
    table = trajectory_errors(_frames()).set_index(["train_size", "molecule"])
    assert table.loc[(4, "a"), "n_frames"] == 3 and table.loc[(4, "a"), "n_converged"] == 2
    assert table.loc[(4, "a"), "energy_mae"] == pytest.approx(2.0)  # the unconverged 100 eV is left out
    assert table.loc[(4, "a"), "forces_mae"] == pytest.approx(0.3)
    assert table.loc[(4, "a"), "converged_fraction"] == pytest.approx(2 / 3)
    assert table.loc[(40, "a"), "energy_mae"] == pytest.approx(0.2)
    means = mean_over_molecules(trajectory_errors(_frames())).set_index("train_size")
    assert means.loc[4, "energy_mae"] == pytest.approx((2.0 + 0.5) / 2)


def test_converged_percent_table():
    table = converged_percent(_frames()).set_index("train_size")
    assert table.loc[4, "calculations"] == 4 and table.loc[4, "converged"] == 3
    assert table.loc[4, "converged_percent"] == pytest.approx(75.0)
    assert table.loc[40, "converged_percent"] == pytest.approx(100.0)


def test_stable_fraction_and_force_mae():
    trajectories = pd.DataFrame(
        {"train_size": [4, 4, 4, 40], "temperature": [1200.0] * 4, "failed": [True, True, False, False]}
    )
    table = stable_fraction(trajectories).set_index("train_size")
    assert table.loc[4, "stable"] == 1 and table.loc[4, "stable_fraction"] == pytest.approx(1 / 3)
    assert table.loc[40, "stable_fraction"] == 1.0
    # exact binomial intervals: 1 of 3 stable spans 0.0084-0.9057; 1 of 1 cannot exclude 2.5 %
    bounds = with_intervals(table)
    assert (bounds.loc[4, "lower"], bounds.loc[4, "upper"]) == pytest.approx((0.0084, 0.9057), abs=1e-4)
    assert (bounds.loc[40, "lower"], bounds.loc[40, "upper"]) == pytest.approx((0.025, 1.0), abs=1e-4)
    with pytest.raises(ValueError, match="successes"):
        binomial_interval(4, 3)
    assert force_mae(np.ones((2, 3)), np.zeros((2, 3))) == 1.0
    with pytest.raises(ValueError, match="forces"):
        force_mae(np.ones((2, 3)), np.zeros((3, 3)))


def test_frame_geometry_sees_a_stretched_bond():
    water = molecule("H2O")
    stretched = water.positions.copy()
    stretched[1] += (stretched[1] - stretched[0]) * 1.0  # O-H bond doubled
    geometry = frame_geometry(water.numbers, stretched, water.positions)
    oh = np.linalg.norm(water.positions[1] - water.positions[0])
    assert geometry["longest_bond"] == pytest.approx(2 * oh)
    assert geometry["shortest_bond"] == pytest.approx(oh)
    assert geometry["max_bond_deviation"] == pytest.approx(oh)


def test_pbe0_subsample_takes_the_last_frames_of_the_smallest_molecule():
    frames = pd.DataFrame(
        {
            "system": [0, 0, 0, 1, 1, 1, 2, 2],
            "frame": [1, 2, 3, 1, 2, 3, 1, 2],
            "temperature": [300.0] * 6 + [1200.0] * 2,
        }
    )
    systems = pd.DataFrame({"system": [0, 1, 2], "n_electrons": [26, 10, 18]})
    chosen = sweep.pbe0_subsample(frames, systems, per_cell=2)
    assert chosen[["system", "frame"]].values.tolist() == [[1, 2], [1, 3], [2, 1], [2, 2]]
    only_hot = sweep.pbe0_subsample(frames, systems, per_cell=1, temperatures=[1200])
    assert only_hot[["system", "frame"]].values.tolist() == [[2, 2]]


def test_protocol_and_bad_input():
    protocol = sweep.protocol_for(SCALES["tiny"])
    assert protocol.n_steps * protocol.dt_fs / 1000 == pytest.approx(protocol.md_time_ps)
    assert protocol.n_steps // protocol.frame_interval >= protocol.n_sampled_frames
    with pytest.raises(ValueError, match="md_time_ps"):
        sweep.Protocol(md_time_ps=-1.0, temperatures=(300.0,))
    with pytest.raises(ValueError, match="frames: missing"):
        sweep.relabel(_FakeArtifact(None), pd.DataFrame({"x": [1]}))
