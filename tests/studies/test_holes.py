"""The holes chapter's pieces: bond signal, post-hoc failures, the hole search, cross-trajectory errors."""

import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import molecule

from gemrepro.analysis.stability import detect_failure
from gemrepro.analysis.timeline import bond_signal, error_jump, hole_onset, trajectory_timeline
from gemrepro.config.designs import SeedsDesign
from gemrepro.md import read_system
from gemrepro.md.potentials import ExplodingPotential, MorseBondPotential
from gemrepro.studies import holes
from gemrepro.studies.sweep import Protocol

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- timeline
def _stretched_h2(distances):
    reference = np.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]])
    positions = np.zeros((len(distances), 2, 3))
    positions[:, 1, 0] = distances
    return np.array([1, 1]), reference, positions


def test_bond_signal_is_the_largest_bond_deviation():
    numbers, reference, positions = _stretched_h2([0.74, 1.0, 1.5, 0.5])
    signal = bond_signal(numbers, reference, positions)
    assert np.allclose(signal, [0.0, 0.26, 0.76, 0.24])
    positions[1, 0, 0] = np.nan
    assert np.isinf(bond_signal(numbers, reference, positions)[1])
    assert hole_onset(np.array([0.0, 0.1, 0.2, 0.3]), signal) == pytest.approx(0.2)
    assert np.isnan(hole_onset(np.arange(4.0), np.zeros(4)))
    with pytest.raises(ValueError, match="positions"):
        bond_signal(numbers, reference, positions[:, :1])
    with pytest.raises(ValueError, match="tolerance"):
        hole_onset(np.arange(4.0), signal, tolerance=0)


def test_timeline_merges_the_relabelled_frames():
    numbers, reference, positions = _stretched_h2([0.74, 0.8, 1.4])
    trajectory = {
        "numbers": numbers,
        "reference_positions": reference,
        "positions": positions,
        "time_ps": np.array([0.0, 0.05, 0.1]),
        "alive": np.ones(3, dtype=bool),
    }
    labels = pd.DataFrame(
        {
            "frame": [1, 2],
            "energy_error": [0.1, 25.0],
            "forces_mae": [0.2, 3.0],
            "converged": [True, True],
            "system": [0, 0],
        }
    )
    table = trajectory_timeline(trajectory, labels)
    assert list(table["frame"]) == [0, 1, 2]
    assert np.isnan(table.loc[0, "energy_error"]) and table.loc[2, "energy_error"] == 25.0
    assert table.loc[2, "max_bond_deviation"] == pytest.approx(0.66)
    with pytest.raises(ValueError, match="trajectory"):
        trajectory_timeline({"numbers": numbers})


def test_error_jump_compares_typical_error_before_with_the_worst_after():
    timeline = pd.DataFrame(
        {
            "time_ps": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            "energy_error": [np.nan, 0.2, -0.4, 3.0, -30.0, 99.0],
            "converged": [False, True, True, True, True, False],
        }
    )
    assert error_jump(timeline, 0.3) == {"before": pytest.approx(0.3), "after": 30.0}
    assert np.isnan(error_jump(timeline, 10.0)["after"])
    with pytest.raises(ValueError, match="failure_ps"):
        error_jump(timeline, float("nan"))


# ----------------------------------------------------------------------------- seeds runs
@pytest.fixture(scope="module")
def exploded_run(tmp_path_factory):
    """Water and methane, two seeds each; methane is pushed apart and breaks its bonds."""
    folder = tmp_path_factory.mktemp("seeds")
    water, methane = molecule("H2O"), molecule("CH4")
    water.info["name"], methane.info["name"] = "water", "methane"
    systems = [(water, 300.0, 0), (water, 300.0, 1), (methane, 300.0, 0), (methane, 300.0, 1)]
    potential = ExplodingPotential(MorseBondPotential([a for a, _, _ in systems]), exploding=[2, 3], push=4.0)
    seeds = [holes.md_seed(0, a.info["name"], t, r) for a, t, r in systems]
    protocol = Protocol(md_time_ps=0.1, temperatures=(300.0,), n_sampled_frames=40)
    rows, summary = holes.run_systems(potential, systems, seeds, protocol, folder / "trajectory.h5")
    return folder / "trajectory.h5", pd.DataFrame(rows), protocol


def test_seeds_are_distinct_and_stable():
    seeds = {holes.md_seed(0, m, t, r) for m in ("water", "ethanol") for t in (300.0, 600.0) for r in range(3)}
    assert len(seeds) == 12
    assert holes.md_seed(0, "water", 300.0, 1) == holes.md_seed(0, "water", 300, 1)
    assert holes.md_seed(1, "water", 300.0, 1) != holes.md_seed(0, "water", 300.0, 1)


def test_run_continues_into_the_hole_and_failures_come_from_the_frames(exploded_run):
    path, table, protocol = exploded_run
    assert list(table["failed"]) == [False, False, True, True]
    assert set(table.loc[table["failed"], "failure_rule"]) <= {"bond", "hydrogen_loss"}
    methane = read_system(path, 2)
    # the bond rule did not stop the run: frames after the failure still move
    failure_frame = int(np.flatnonzero(methane["step"] == table.loc[2, "failure_step"])[0])
    assert methane["alive"][failure_frame] and failure_frame < len(methane["step"]) - 1
    # ... it stopped only once a bond was three times the rule's tolerance off
    assert table.loc[2, "stop_rule"] == "bond" and methane["failure_step"] > table.loc[2, "failure_step"]
    signal = bond_signal(methane["numbers"], methane["reference_positions"], methane["positions"])
    assert signal[int(np.argmin(methane["alive"]))] > 1.5
    record = detect_failure(
        methane["positions"],
        methane["numbers"],
        steps=methane["step"],
        reference_positions=methane["reference_positions"],
        forces=methane["forces"],
    )
    assert record.step == table.loc[2, "failure_step"]
    assert table.loc[2, "time_to_failure_ps"] == pytest.approx(record.step * protocol.dt_fs / 1000)
    # two seeds of the same system give different trajectories
    water0, water1 = read_system(path, 0), read_system(path, 1)
    assert not np.allclose(water0["positions"][-1], water1["positions"][-1])


def test_post_hoc_analysis_reads_a_run_that_continued_after_failures(tmp_path):
    from gemrepro.md import run_md

    systems = [molecule("H2O"), molecule("CH4")]
    potential = ExplodingPotential(MorseBondPotential(systems), exploding=[1], push=4.0)
    summary = run_md(
        potential,
        systems,
        n_steps=200,
        path=tmp_path / "md.h5",
        seeds=[1, 2],
        frame_interval=5,
        progress=False,
        after_failure="continue",
    )
    online = summary.failures[1]
    assert online is not None and summary.alive == [True, True]
    methane = read_system(tmp_path / "md.h5", 1)
    offline = holes.post_hoc_failures(methane, 0.5)
    # checked at every step online, at every stored frame offline: the first stored frame at or after it
    first_after = int(methane["step"][methane["step"] >= online.step][0])
    assert offline["failed"] and offline["failure_step"] == first_after and offline["failure_rule"] == online.rule
    timeline = trajectory_timeline(holes._until_stop(methane))  # nothing was frozen: every frame
    assert len(timeline) == summary.n_frames
    assert timeline["after_failure"].tolist() == (methane["step"] >= online.step).tolist()


def test_post_hoc_failure_of_a_system_the_run_stopped():
    numbers, reference, positions = _stretched_h2([0.74, 0.76, 0.75])
    trajectory = {
        "numbers": numbers,
        "reference_positions": reference,
        "positions": positions,
        "step": np.array([0, 10, 20]),
        "time_ps": np.array([0.0, 0.005, 0.01]),
        "energy": np.zeros(3),
        "forces": np.zeros((3, 2, 3)),
        "alive": np.array([True, True, True]),
        "failure_step": 13,
        "failure_rule": "force",
    }
    out = holes.post_hoc_failures(trajectory, dt_fs=0.5)
    assert out == {"failed": True, "failure_step": 13, "time_to_failure_ps": 0.0065, "failure_rule": "force"}
    trajectory["failure_step"], trajectory["failure_rule"] = -1, ""
    assert holes.post_hoc_failures(trajectory, dt_fs=0.5)["failed"] is False


# ----------------------------------------------------------------------------- choosing the hole
def _trajectories():
    """4-configuration model fails early everywhere; 40 fails once late; 400 never fails. Run: 1 ps."""
    rows = []
    for size, failures in ((4, [0.05, 0.1, 0.02, 0.3]), (40, [np.nan, 0.8, np.nan, 0.1]), (400, [np.nan] * 4)):
        for k, t in enumerate(failures):
            rows.append(
                {
                    "train_size": size,
                    "temperature": 600.0,
                    "molecule": f"m{k % 2}",
                    "system": k,
                    "failed": bool(np.isfinite(t)),
                    "time_to_failure_ps": t,
                }
            )
    return pd.DataFrame(rows)


def test_sparse_model_is_the_sparsest_that_does_not_fail_at_once():
    table = _trajectories()
    assert holes.sparse_model(table, 1.0, 600.0) == 40  # median stable time of 4: 0.075 ps; of 40: 0.9 ps
    assert holes.sparse_model(table, 1.0, 600.0, min_fraction=0.05) == 4
    with pytest.raises(ValueError, match="temperature"):
        holes.sparse_model(table, 1.0, 300.0)
    with pytest.raises(ValueError, match="no model"):
        holes.sparse_model(table[table["train_size"] == 4], 1.0, 600.0)


def test_hole_search_picks_the_latest_failure_after_a_stable_stretch():
    search = holes.hole_search(_trajectories(), 40, 600.0, horizon_ps=1.0, min_fraction=0.25)
    assert list(search["system"]) == [1, 3, 0, 2]  # failed first, latest failure first
    assert list(search["hole"]) == [True, False, False, False]  # 0.1 ps is "at once"
    assert list(search["stable_fraction"]) == pytest.approx([0.8, 0.1, 1.0, 1.0])
    hole = holes.pick_hole(search)
    assert hole["system"] == 1 and hole["time_to_failure_ps"] == 0.8
    assert holes.pick_hole(holes.hole_search(_trajectories(), 400, 600.0, 1.0)) is None
    with pytest.raises(ValueError, match="no trajectories"):
        holes.hole_search(_trajectories(), 4000, 600.0, 1.0)


def test_survival_summary_and_its_correlation_with_test_error():
    table = pd.concat([_trajectories(), _trajectories().assign(temperature=1200.0)], ignore_index=True)
    summary = holes.survival_summary(table, horizon_ps=1.0)
    row = summary[(summary["train_size"] == 4) & (summary["temperature"] == 600.0)].iloc[0]
    assert row["failed"] == 4 and row["mean_stable_ps"] == pytest.approx(0.1175)
    assert row["median_stable_ps"] == pytest.approx(0.075)
    assert summary.loc[summary["train_size"] == 400, "mean_stable_fraction"].tolist() == [1.0, 1.0]
    test_errors = pd.DataFrame({"train_size": [4, 40, 400], "forces_mae": [1.0, 0.3, 0.1]})
    merged, rho = holes.error_vs_survival(test_errors, summary)
    assert len(merged) == 6 and rho["600 K"].rho == pytest.approx(-1.0) and rho["all"].n == 6
    assert holes.error_vs_survival(test_errors.iloc[:2], summary)[1]["600 K"] is None  # two points: undefined


def test_seeds_design_rejects_bad_input():
    with pytest.raises(ValueError, match="n_seeds"):
        SeedsDesign(n_molecules=2, n_seeds=0)
    with pytest.raises(ValueError, match="temperatures"):
        SeedsDesign(n_molecules=2, n_seeds=1, temperatures=(-5.0,))


def test_find_hole_goes_on_to_the_next_temperature_then_the_next_model():
    cold = _trajectories()
    hot = cold.assign(temperature=1200.0, time_to_failure_ps=cold["time_to_failure_ps"] / 2)
    table = pd.concat(
        [cold[cold["train_size"] != 40], cold[cold["train_size"] == 40].assign(failed=False), hot], ignore_index=True
    )
    searched, hole = holes.find_hole(table, [40, 400], [600.0, 1200.0], horizon_ps=1.0)
    assert list(searched["temperature"].unique()) == [600.0, 1200.0] and set(searched["train_size"]) == {40}
    assert hole["temperature"] == 1200.0 and hole["time_to_failure_ps"] == pytest.approx(0.4)
    searched, hole = holes.find_hole(table, [40, 400], [600.0], horizon_ps=1.0)
    assert hole is None and len(searched) == 8 and set(searched["train_size"]) == {40, 400}
    searched, hole = holes.find_hole(table, [400, 4], [600.0], horizon_ps=1.0)
    assert hole["train_size"] == 4 and hole["time_to_failure_ps"] == 0.3  # the 4-model's latest failure


# ----------------------------------------------------------------------------- cross-trajectory errors
class _Folder:
    """What the holes functions read from an artifact: ``key`` and ``file(name)``."""

    def __init__(self, path, key):
        self.path, self.key = path, key

    def file(self, name):
        return self.path / name


def test_forces_on_frames_reproduces_the_forces_the_model_ran_on(tmp_path):
    from gemrepro.integrations.potential import potential_from_checkpoint
    from gemrepro.model import GemNetT, save_model

    models = []
    for k in range(2):
        torch.manual_seed(k)
        (tmp_path / f"model{k}").mkdir()
        save_model(GemNetT.from_preset("tiny").float(), tmp_path / f"model{k}" / "model.pt")
        models.append(_Folder(tmp_path / f"model{k}", f"m{k}"))
    water, ammonia = molecule("H2O"), molecule("NH3")
    systems = [(water, 300.0, 0), (ammonia, 300.0, 0)]
    protocol = Protocol(md_time_ps=0.005, temperatures=(300.0,), n_sampled_frames=5)
    holes.run_systems(
        potential_from_checkpoint(models[0].file("model.pt"), device="cpu"),
        systems,
        [1, 2],
        protocol,
        tmp_path / "trajectory.h5",
    )
    md = _Folder(tmp_path, "md")
    # a relabelling whose "reference" forces are the forces model 0 integrated ammonia with
    ammonia_run = read_system(tmp_path / "trajectory.h5", 1)
    frames = [1, 3, 5]
    labels = tmp_path / "labels"
    labels.mkdir()
    pd.DataFrame(
        {
            "system": 1,
            "frame": frames,
            "time_ps": ammonia_run["time_ps"][frames],
            "converged": [True, True, False],
            "error": "",
        }
    ).to_csv(labels / "frames.csv", index=False)
    np.savez(
        labels / "forces.npz", reference=np.concatenate(ammonia_run["forces"][frames]), atom_offset=np.arange(4) * 4
    )
    same = holes.forces_on_frames(models[0], md, _Folder(labels, "l"), system=1)
    other = holes.forces_on_frames(models[1], md, _Folder(labels, "l"), system=1)
    assert list(same["frame"]) == frames and np.isnan(same.loc[2, "forces_mae"])  # not converged: no label
    assert not same["after_failure"].any()  # labels without failure columns: nothing after a failure
    assert same["forces_mae"].max() < 1e-4 < other["forces_mae"].min()
    with pytest.raises(ValueError, match="system"):
        holes.forces_on_frames(models[0], md, _Folder(labels, "l"), system=0)


def test_structure_drawing_marks_the_broken_bond_red():
    import matplotlib

    matplotlib.use("Agg")
    from ase import Atoms

    from gemrepro.plots import holes as plots_holes

    reference = np.array([[0.0, 0.0, 0.0], [1.09, 0.0, 0.0], [-0.5, 0.9, 0.0]])
    broken = reference.copy()
    broken[1, 0] = 2.0  # the first C-H bond 0.91 Å longer than at the start
    numbers = np.array([6, 1, 1])
    fig = plots_holes.structures(
        {"start": (0.0, Atoms(numbers, reference)), "end": (0.2, Atoms(numbers, broken))}, reference
    )
    start_ax, end_ax = fig.axes[:2]
    assert [line.get_linestyle() for line in start_ax.lines] == ["-", "-"]
    assert sorted(line.get_linestyle() for line in end_ax.lines) == ["-", "--"]
    assert "1 bond(s) past 0.5 Å" in end_ax.get_title()
    with pytest.raises(ValueError, match="timeline"):
        plots_holes.error_timeline(pd.DataFrame({"time_ps": [0.0]}))


def test_failure_origins_compare_the_frames_nearest_each_failure():
    trajectories = pd.DataFrame(
        {
            "train_size": [100, 100, 3200],
            "system": [0, 1, 0],
            "molecule": ["ethanol", "water", "ethanol"],
            "temperature": [1200.0, 1200.0, 600.0],
            "failed": [True, False, True],
            "time_to_failure_ps": [0.5, np.nan, 0.3],
        }
    )
    # frames at 0.1 ps steps; model energies (AE, eV) fall into the failure, the reference's rise or follow
    rows = []
    for size, system, reference_rise in ((100, 0, 5.0), (100, 1, 0.0), (3200, 0, 0.1)):
        for k, t in enumerate(np.arange(0.0, 1.0, 0.1)):
            after = t >= (0.5 if size == 100 else 0.3)
            rows.append(
                {
                    "train_size": size,
                    "system": system,
                    "step": k * 200,
                    "time_ps": t,
                    "converged": True,
                    "model_energy": -50.0 - (0.2 if after else 0.0) - 0.01 * k,
                    "reference_atomization_energy": -48.0 + (reference_rise if after else 0.0) - 0.01 * k,
                }
            )
    frames = pd.DataFrame(rows)
    frames.loc[(frames["train_size"] == 100) & (frames["time_ps"].round(1) == 0.4), "converged"] = False
    table = holes.failure_origins(trajectories, frames)
    assert table["verdict"].tolist() == ["hole", "chemistry"]  # the stable water has no row
    hole = table.iloc[0]
    assert hole["before_ps"] == pytest.approx(0.2)  # the unconverged 0.4 ps frame is skipped
    assert hole["after_ps"] == pytest.approx(0.0, abs=1e-12)
    assert hole["model_delta_eV"] == pytest.approx(-0.2 - 0.02) and hole["reference_delta_eV"] == pytest.approx(
        5.0 - 0.02
    )
    assert table.iloc[1]["excess_eV"] == pytest.approx(0.3)
