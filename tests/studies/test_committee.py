"""Committees: the disagreement measure, the committee potential, the uncertainty stop, lead times."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import molecule

from gemrepro.analysis.warning import (
    first_crossing,
    proxy_at_large_error,
    proxy_correlation,
    recommend_threshold,
    threshold_tradeoff,
    warnings_at,
)
from gemrepro.cli import main as cli_main
from gemrepro.config.scales import SCALES
from gemrepro.md import read_system, run_md
from gemrepro.md.committee import CommitteePotential, UncertaintyStop, disagreement
from gemrepro.md.potentials import MorseBondPotential
from gemrepro.md.state import batch_inputs as state_batch_inputs

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- the measure
def test_disagreement_is_the_max_per_atom_force_deviation_and_the_energy_std():
    # two members, two systems (atoms 0-1 and 2); member forces differ by a known vector per atom
    forces = torch.zeros(2, 3, 3, dtype=torch.float64)
    forces[1, 0] = torch.tensor([2.0, 0.0, 0.0])  # atom 0: members at +-1 from the mean -> 1.0
    forces[1, 1] = torch.tensor([0.0, 6.0, 8.0])  # atom 1: |diff| = 10 -> 5.0
    forces[1, 2] = torch.tensor([0.0, 0.0, 0.4])  # atom 2 (system 1): 0.2
    energies = torch.tensor([[1.0, 5.0], [3.0, 5.0]], dtype=torch.float64)
    index = torch.tensor([0, 0, 1])
    force_dis, spread = disagreement(energies, forces, index, 2)
    torch.testing.assert_close(force_dis, torch.tensor([5.0, 0.2], dtype=torch.float64))
    torch.testing.assert_close(spread, torch.tensor([1.0, 0.0], dtype=torch.float64))
    forces[0, 2, 0] = torch.nan  # a member off the map: infinite disagreement for its system only
    force_dis, _ = disagreement(energies, forces, index, 2)
    assert force_dis[0] == 5.0 and torch.isinf(force_dis[1])
    with pytest.raises(ValueError, match="M >= 2"):
        disagreement(energies[:1], forces[:1], index, 2)


def morse_committee(systems, repulsions=(10.0, 12.0, 14.0)):
    """Members that differ in their non-bonded repulsion, so they disagree already at the start."""
    return CommitteePotential([MorseBondPotential(systems, repulsion_energy=a) for a in repulsions])


def batch_inputs(systems):
    return state_batch_inputs([a.positions for a in systems], [a.numbers for a in systems])


def test_committee_returns_the_members_mean_and_keeps_their_disagreement():
    systems = [molecule("H2O"), molecule("CH4")]
    members = [MorseBondPotential(systems, width=w) for w in (1.5, 2.0)]
    committee = CommitteePotential(members)
    for atoms in systems:
        atoms.rattle(0.05, seed=1)  # off the members' common minimum
    inputs = batch_inputs(systems)
    energy, forces = committee(*inputs)
    (e1, f1), (e2, f2) = (m(*inputs) for m in members)
    torch.testing.assert_close(energy, (e1 + e2) / 2)
    torch.testing.assert_close(forces, (f1 + f2) / 2)
    per_atom = torch.linalg.vector_norm(f1 - f2, dim=-1) / 2  # two members: half their difference
    expected = torch.stack([per_atom[:3].max(), per_atom[3:].max()])
    torch.testing.assert_close(committee.force_disagreement, expected)
    torch.testing.assert_close(committee.energy_spread, (e1 - e2).abs() / 2)
    assert (committee.force_disagreement > 1e-3).all()  # different widths do disagree off equilibrium
    with pytest.raises(ValueError, match="at least two"):
        CommitteePotential(members[:1])


# ----------------------------------------------------------------------------- the stop in the engine
def test_uncertainty_stop_marks_systems_dead_and_leaves_the_run_alone_when_never_reached(tmp_path):
    systems = [molecule("H2O"), molecule("CH4")]
    common = dict(n_steps=40, temperatures=[600.0, 600.0], seeds=3, frame_interval=10, progress=False)
    plain = run_md(morse_committee(systems), systems, path=tmp_path / "plain.h5", **common)
    committee = morse_committee(systems)
    never = run_md(committee, systems, path=tmp_path / "never.h5", stop=UncertaintyStop(committee, 1e6), **common)
    assert plain.failures == never.failures == [None, None]
    with h5py.File(tmp_path / "plain.h5", "r") as a, h5py.File(tmp_path / "never.h5", "r") as b:
        np.testing.assert_array_equal(a["frames/positions"][()], b["frames/positions"][()])

    # a threshold between the two systems' disagreements at the start stops exactly one of them
    committee = morse_committee(systems)
    committee(*batch_inputs(systems))
    start = committee.force_disagreement
    assert start.min() > 0 and start.max() > 1.1 * start.min()
    stopped_committee = morse_committee(systems)
    stop = UncertaintyStop(stopped_committee, float(start.min() + start.max()) / 2)
    summary = run_md(stopped_committee, systems, path=tmp_path / "stop.h5", stop=stop, **common)
    first, other = int(start.argmax()), int(start.argmin())
    assert summary.failures[first].rule == "uncertainty" and summary.failures[first].step == 0
    assert summary.failures[other] is None or summary.failures[other].step > 0
    assert read_system(tmp_path / "stop.h5", first)["failure_rule"] == "uncertainty"
    with pytest.raises(ValueError, match="threshold"):
        UncertaintyStop(committee, -1.0)


def test_md_cli_committee_options(tmp_path, capsys):
    from gemrepro.model import GemNetT, save_model

    for k in range(2):
        torch.manual_seed(k)
        save_model(GemNetT.from_preset("tiny"), tmp_path / f"m{k}.pt")
    argv = [
        "md",
        "--model",
        tmp_path / "m0.pt",
        "--molecules",
        "O",
        "--time-ps",
        "0.002",
        "--device",
        "cpu",
        "--frame-interval",
        "2",
        "--quiet",
        "--json",
        "--out",
        tmp_path / "md.h5",
    ]
    # two random networks disagree by far more than 1e-6 eV/Å: the system stops at once
    code = cli_main([str(a) for a in argv + ["--committee", tmp_path / "m1.pt", "--stop-on-uncertainty", "1e-6"]])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["systems"][0]["rule"] == "uncertainty" and out["systems"][0]["failure_time_ps"] == 0.0
    code = cli_main([str(a) for a in argv[:-1] + [tmp_path / "x.h5", "--stop-on-uncertainty", "0.1"]])
    err = capsys.readouterr().err
    assert code == 2 and "--committee" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- lead times
def synthetic_runs():
    """Four trajectories: two fail at 0.2 ps, two are stable; disagreement rises before a failure."""
    times = np.linspace(0.0, 0.25, 6)  # 0, 0.05, ..., 0.25 ps
    signals = {
        0: [0.1, 0.1, 0.3, 0.6, 2.0, np.nan],  # fails at 0.2: crosses 0.3 and 0.5 at 0.15 -> lead 0.05
        1: [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # fails at 0.2 without a sign (the frame at 0.2 is not before it)
        2: [0.1, 0.2, 0.2, 0.2, 0.2, 0.2],  # stable
        3: [0.1, 0.2, 0.4, 0.2, 0.2, 0.2],  # stable, one spike
    }
    disagreement = pd.DataFrame(
        [
            {"train_size": 40, "system": s, "time_ps": t, "force_disagreement": v}
            for s, values in signals.items()
            for t, v in zip(times, values)
        ]
    )
    trajectories = pd.DataFrame(
        {
            "train_size": 40,
            "system": [0, 1, 2, 3],
            "failed": [True, True, False, False],
            "time_to_failure_ps": [0.2, 0.2, np.nan, np.nan],
        }
    )
    return disagreement, trajectories


def test_lead_times_and_outcomes_on_hand_made_trajectories():
    disagreement, trajectories = synthetic_runs()
    table = warnings_at(disagreement, trajectories, 0.3).set_index("system")
    assert list(table["outcome"]) == ["warned", "missed", "quiet", "false alarm"]
    assert table.loc[0, "alarm_ps"] == pytest.approx(0.15) and table.loc[0, "lead_time_ps"] == pytest.approx(0.05)
    assert np.isnan(table.loc[1, "alarm_ps"]) and table.loc[3, "alarm_ps"] == pytest.approx(0.1)
    late = warnings_at(disagreement, trajectories, 0.3, min_lead_ps=0.1).set_index("system")
    assert late.loc[0, "outcome"] == "late"
    assert first_crossing([0, 1, 2], [0.1, np.nan, 0.2], 1.0) == 1.0  # a non-finite member counts as an alarm
    with pytest.raises(ValueError, match="disagreement: missing"):
        warnings_at(disagreement.drop(columns="time_ps"), trajectories, 0.5)


def test_threshold_tradeoff_and_recommendation():
    disagreement, trajectories = synthetic_runs()
    curve = threshold_tradeoff(disagreement, trajectories, [0.05, 0.25, 0.5, 0.8]).set_index("threshold")
    np.testing.assert_allclose(curve["detection_rate"], [1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(curve["false_alarm_rate"], [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(curve["miss_rate"], 1 - curve["detection_rate"])
    assert curve.loc[0.25, "median_lead_ps"] == pytest.approx(0.1)  # 0.3 at 0.1 ps crosses 0.25
    # Youden's J = 0, 0, 0.5, 0: 0.5 warns of one failure in two without a false alarm
    assert recommend_threshold(curve.reset_index())["threshold"] == 0.5
    # ties go to the larger threshold: without 0.5, J = 0 everywhere and 0.8 wins
    assert recommend_threshold(curve.drop(index=0.5).reset_index())["threshold"] == 0.8
    with pytest.raises(ValueError, match="max_false_alarm_rate"):
        recommend_threshold(curve.reset_index(), max_false_alarm_rate=2.0)
    with pytest.raises(ValueError, match="thresholds"):
        threshold_tradeoff(disagreement, trajectories, [])


def test_threshold_is_chosen_on_one_set_and_tested_on_another():
    from gemrepro.analysis.warning import calibrate_and_test

    disagreement, trajectories = synthetic_runs()
    # a second copy of the four runs, where the failing runs give no warning at all: held out
    quiet = disagreement.assign(system=disagreement["system"] + 4)
    quiet.loc[quiet["system"].isin([4, 5]), "force_disagreement"] = 0.1
    both_dis = pd.concat([disagreement, quiet], ignore_index=True)
    both = pd.concat([trajectories, trajectories.assign(system=trajectories["system"] + 4)], ignore_index=True)
    held = calibrate_and_test(both_dis, both, [0.05, 0.25, 0.5, 0.8], both["system"] < 4)
    assert held.threshold == 0.5 and held.calibration["detection_rate"] == 0.5  # chosen on systems 0-3
    assert held.n_failed == 2 and held.n_stable == 2
    assert held.detection_rate == 0.0 and held.false_alarm_rate == 0.0  # on 4-7 it warns of nothing
    with pytest.raises(ValueError, match="calibrate"):
        calibrate_and_test(both_dis, both, [0.5], both["system"] < 100)


def test_proxy_correlation_ignores_failed_references():
    frames = pd.DataFrame(
        {"force_disagreement": [0.1, 0.2, 0.3, 0.4, 0.5], "forces_mae": [0.01, 0.05, np.nan, 0.2, 0.1]}
    )
    result = proxy_correlation(frames)
    assert result.n == 4 and result.rho == pytest.approx(0.8)


# ----------------------------------------------------------------------------- committee members
def test_member_zero_keeps_the_learning_curve_cache_key_and_members_differ_only_in_their_seed():
    from gemrepro.studies.learning_curve import member_seed, model_params, train_config

    base = model_params(SCALES["tiny"], 100, 0, "gfn2-xtb", "T", "dataset-key", member=0)
    # no "member" field: member 0's key is the learning-curve model's (the shipped bundle's keys)
    assert set(base) == {"scale", "seed", "reference", "dataset", "split", "model", "train", "stage_version"}
    assert base["train"]["seed"] == 0 and train_config(SCALES["tiny"], 100, 0, member=0).seed == 0
    first, second = (model_params(SCALES["tiny"], 100, 0, "gfn2-xtb", "T", "dataset-key", member=m) for m in (1, 2))
    assert first["member"] == 1 and first["dataset"] == base["dataset"] and first["split"] == base["split"]
    assert {k for k in first if first[k] != base.get(k)} == {"member", "train"}
    assert {k for k in first["train"] if first["train"][k] != base["train"][k]} == {"seed"}
    assert len({base["train"]["seed"], first["train"]["seed"], second["train"]["seed"]}) == 3
    assert member_seed(7, 0) == 7 and len({member_seed(7, 1), member_seed(8, 1), member_seed(7, 2), 7, 8}) == 5
    with pytest.raises(ValueError, match="member"):
        member_seed(0, -1)


# ----------------------------------------------------------------------------- batch evaluation after a run
def test_frame_disagreement_evaluates_every_frame_up_to_the_failure(tmp_path):
    from gemrepro.cache.artifacts import get_or_create
    from gemrepro.integrations.potential import potential_from_checkpoint
    from gemrepro.md.committee import disagreement as measure
    from gemrepro.model import GemNetT, save_model
    from gemrepro.studies.committee import disagreement_table, frame_disagreement

    def model_artifact(k):
        def build(folder):
            torch.manual_seed(k)
            save_model(GemNetT.from_preset("tiny").double(), folder / "model.pt")
            return {}

        return get_or_create("models", {"test-member": k}, build, tmp_path)

    systems = [molecule("H2O"), molecule("CH4")]
    systems[0].positions[1] += [3.0, 0.0, 0.0]  # water starts with a broken bond: dead at step 0

    def md_build(folder):
        run_md(
            MorseBondPotential(systems),
            systems,
            n_steps=6,
            path=folder / "trajectory.h5",
            frame_interval=2,
            seeds=0,
            progress=False,
        )
        return {}

    models = [model_artifact(k) for k in range(3)]
    md = get_or_create("md", {"test-run": 1}, md_build, tmp_path)
    table = disagreement_table(frame_disagreement(models, md, root=tmp_path, device="cpu", chunk=3))
    # water: only its start frame (the first dead one); methane: all four frames
    assert list(zip(table["system"], table["frame"])) == [(0, 0), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert list(table["alive"]) == [False, True, True, True, True]
    methane = read_system(md.file("trajectory.h5"), 1)
    positions = torch.as_tensor(methane["positions"][2])
    inputs = (positions, torch.as_tensor(methane["numbers"]), torch.zeros(len(positions), dtype=torch.long))
    results = [potential_from_checkpoint(m.file("model.pt"), device="cpu")(*inputs) for m in models]
    force_dis, spread = measure(
        torch.stack([e for e, _ in results]), torch.stack([f for _, f in results]), inputs[2], 1
    )
    row = table[(table["system"] == 1) & (table["frame"] == 2)].iloc[0]
    assert row["force_disagreement"] == pytest.approx(float(force_dis[0]), rel=1e-9)
    assert row["energy_spread"] == pytest.approx(float(spread[0]), rel=1e-9)
    assert row["force_disagreement"] > 0 and row["time_ps"] == pytest.approx(0.002)
    with pytest.raises(ValueError, match="two committee members"):
        frame_disagreement(models[:1], md, root=tmp_path)
    # every second frame, the last one always included
    strided = disagreement_table(frame_disagreement(models, md, root=tmp_path, device="cpu", frame_stride=2))
    assert list(strided["frame"]) == [0, 0, 2, 3]
    np.testing.assert_allclose(strided["force_disagreement"], table["force_disagreement"].iloc[[0, 1, 3, 4]])


def test_plots_draw_one_line_per_trajectory_and_the_recommended_point():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gemrepro.plots import committee as plots_committee

    disagreement, trajectories = synthetic_runs()
    disagreement, trajectories = disagreement.assign(study="sweep"), trajectories.assign(study="sweep")
    fig = plots_committee.disagreement_timelines(disagreement, trajectories, threshold=0.3)
    ax = fig.axes[0]
    red = [
        line
        for line in ax.lines
        if line.get_color() == plots_committee.FAILED and line.get_marker() == "None" and len(line.get_xdata())
    ]  # the legend's empty proxy line left out
    assert len(red) == 2 and len(red[0].get_xdata()) == 5  # system 0 drawn up to its failure at 0.2 ps
    curve = threshold_tradeoff(disagreement, trajectories, [0.05, 0.25, 0.5, 0.8])
    fig2 = plots_committee.tradeoff_plot(curve, recommended=0.5)
    star = [line for line in fig2.axes[1].lines if line.get_marker() == "*"][0]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (0.0, 0.5)
    plt.close("all")
    with pytest.raises(ValueError, match="tradeoff: missing"):
        plots_committee.tradeoff_plot(curve.drop(columns="detection_rate"))


def _frames(errors, signals):
    return pd.DataFrame({"forces_mae": errors, "force_disagreement": signals})


def test_disagreement_that_keeps_rising_with_the_error_is_told_from_one_that_saturates():
    rng = np.random.default_rng(0)
    errors = np.geomspace(0.01, 10.0, 91)[:-1] * 1.01  # 30 frames per decade, none on a decade's edge
    noise = rng.lognormal(0.0, 0.1, 90)
    rising = proxy_at_large_error(_frames(errors, 0.2 * errors * noise), alarm_threshold=0.1, large_error=1.0)
    assert (
        rising.trend == "keeps rising" and rising.top_ratio.low > 1.0 and rising.top_ratio.n == 30 == (errors > 1).sum()
    )
    assert rising.error_ratio == pytest.approx(
        errors[errors > 1].mean() / errors[(errors > 0.1) & (errors <= 1)].mean()
    )
    assert rising.bins["n_frames"].tolist() == [15] * 6  # half decades from 0.01 to 10
    # saturating at 0.1 eV/Å from an error of 0.5 eV/Å on, and falling beyond 2 eV/Å
    flat = np.where(errors < 0.5, 0.2 * errors, np.where(errors < 2.0, 0.1, 0.1 * 2.0 / errors))
    saturated = proxy_at_large_error(_frames(errors, flat * noise), alarm_threshold=0.15, large_error=1.0)
    assert saturated.trend == "plateaus or falls" and saturated.top_ratio.high < 1.5
    # every frame with error > 1 eV/Å stays below a 0.15 eV/Å alarm: all of them are misses
    assert saturated.n_large == int((errors > 1.0).sum()) == 30 and saturated.n_missed == 30
    assert saturated.miss_rate == 1.0 and rising.n_missed == 0


def test_too_few_frames_beyond_the_large_error_is_underpowered():
    errors = np.concatenate([np.linspace(0.2, 0.9, 20), [1.5, 2.0, 3.0]])
    result = proxy_at_large_error(_frames(errors, errors), alarm_threshold=1.0, large_error=1.0)
    assert result.trend == "underpowered" and result.n_large == 3 and result.n_missed == 0
