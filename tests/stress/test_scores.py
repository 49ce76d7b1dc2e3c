"""The field's stability scores on hand-made trajectories whose answer is known, the heating ramp
in the engine, and the scores in a stress audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from stress_calculators import gfn2_xtb, weak_lennard_jones

from gemrepro.analysis import scores
from gemrepro.md import read_system, run_md
from gemrepro.md.potentials import MorseBondPotential
from gemrepro.stress.audit import run_audit
from gemrepro.stress.calculators import CalculatorPotential
from gemrepro.stress.field import FieldProtocol
from gemrepro.studies.sweep import Protocol

torch.set_num_threads(1)

REFERENCE = (
    Path(__file__).resolve().parents[1] / "field_scores_reference.json"
)  # the packages' own numbers; see its "about"


def repeated(atoms, n_frames: int) -> np.ndarray:
    return np.repeat(atoms.positions[None], n_frames, axis=0).copy()


def test_mdsim_fires_at_the_frame_a_bond_is_stretched_past_half_an_angstrom():
    water = molecule("H2O")
    frames = repeated(water, 10)
    direction = (water.positions[1] - water.positions[0]) / np.linalg.norm(water.positions[1] - water.positions[0])
    frames[4, 1] += 0.45 * direction  # within the tolerance
    frames[7:, 1] += 0.6 * direction
    assert scores.mdsim_unstable_frame(water.numbers, frames) == 7
    assert scores.mdsim_unstable_frame(water.numbers, frames[:7]) == -1
    frames[2, 2] = np.nan  # a NaN geometry is not stable either
    assert scores.mdsim_unstable_frame(water.numbers, frames) == 2


def test_mlipaudit_drift_needs_the_hydrogen_gone_to_the_end():
    methane = molecule("CH4")
    frames = repeated(methane, 12)
    away = methane.positions[1] - methane.positions[0]
    away /= np.linalg.norm(away)
    for k in range(3, 12):
        frames[k, 1] = methane.positions[0] + (1.09 + 0.5 * (k - 2)) * away  # 1.59, 2.09, 2.59 Å at k = 5, ...
    assert scores.mlipaudit_drift_frame(methane.numbers, frames) == 5  # first frame beyond 2.5 Å of every C
    back = frames.copy()
    back[-1, 1] = methane.positions[1]  # returns at the end: no drift
    assert scores.mlipaudit_drift_frame(methane.numbers, back) == -1
    hydrogen2 = molecule("H2")  # no heavy atom: nothing to drift from
    assert scores.mlipaudit_drift_frame(hydrogen2.numbers, repeated(hydrogen2, 3)) == -1


def test_mlipaudit_explosion_and_score():
    assert scores.mlipaudit_explosion_frame([300, 320, 290, 10_400, 500], 300.0) == 3  # above target + 10 000 K
    assert scores.mlipaudit_explosion_frame([3, 5, 600, 20], 300.0) == 2  # 120 x the frame before
    assert scores.mlipaudit_explosion_frame([300, 310, 305], 300.0) == -1
    assert scores.mlipaudit_score(-1, -1, 10) == 1.0
    assert scores.mlipaudit_score(-1, 4, 10) == pytest.approx(0.7)
    assert scores.mlipaudit_score(5, -1, 10) == pytest.approx(0.25)
    assert scores.mlipaudit_score(-1, 11, 10) == 1.0  # the fraction is capped at 1 (frame 0 is extra here)
    methane = molecule("CH4")
    frames = repeated(methane, 4)
    frames[2:, 1] += 5.0
    exploded = scores.mlipaudit_stability(
        methane.numbers, frames, [300, 300, 20_000, 20_000], 300.0, n_expected_frames=4
    )
    assert exploded == {"explosion_frame": 2, "drift_frame": -1, "score": 0.25}  # drift not checked then
    drifted = scores.mlipaudit_stability(methane.numbers, frames, [300] * 4, 300.0, n_expected_frames=4)
    assert drifted == {"explosion_frame": -1, "drift_frame": 2, "score": 0.75}


def test_lambench_drift_is_the_slope_after_warmup_per_atom():
    n_steps, interval, dt_fs = 1000, 10, 1.0
    steps = np.arange(0, n_steps + 1, interval)
    times_ps = steps * dt_fs / 1000.0
    rng = np.random.default_rng(0)
    energies = -50.0 - 0.02 * times_ps + 1e-6 * rng.standard_normal(len(steps))  # -0.02 eV/ps over 4 atoms
    energies[steps < 200] += 3.0 * times_ps[steps < 200]  # a different slope in the 20 % warm-up
    drift = scores.lambench_energy_drift(steps, energies, dt_fs=dt_fs, n_atoms=4, n_steps=n_steps)
    assert drift == pytest.approx(0.005, rel=1e-3)
    assert scores.LAMBENCH_TIME_FACTOR == pytest.approx(10.1805, rel=1e-4)  # 1 / ase.units.fs
    assert scores.lambench_energy_drift(steps[:20], energies[:20], dt_fs=dt_fs, n_atoms=4, n_steps=n_steps) is None


def test_lambench_instability_error():
    assert scores.lambench_instability(5e-4 * 100, True) == pytest.approx(2.0)
    assert scores.lambench_instability(1e-6, True) == 0.0  # clipped at 0
    assert scores.lambench_instability(5e-4 * 1e5, True) == 5.0  # log10 >= 5
    assert scores.lambench_instability(1e-3, False) == 5.0  # did not finish
    assert scores.lambench_instability(None, True) == 5.0


def test_mlip_arena_ramp_and_fraction():
    np.testing.assert_allclose(scores.heating_ramp(4), [300, 975, 1650, 2325, 3000])
    steps = np.arange(0, 101, 10)
    energies = np.where(steps <= 70, -10.0, np.nan)
    final = scores.final_valid_step(steps, energies)
    assert final == 70 and scores.mlip_arena_fraction(final, 100) == pytest.approx(0.7)
    assert scores.final_valid_step(steps, np.full(len(steps), np.inf)) == 0
    with pytest.raises(ValueError, match="final_step"):
        scores.mlip_arena_fraction(120, 100)


def test_scores_agree_with_the_packages_own_code():
    reference = json.loads(REFERENCE.read_text())
    for t in reference["mlipaudit"]["trajectories"]:
        ours = scores.mlipaudit_stability(
            t["numbers"],
            t["positions"],
            t["temperature"],
            t["target_K"],
            n_expected_frames=t["n_expected_frames"],
            reference_positions=t["reference_positions"],
        )
        assert ours["explosion_frame"] == t["mlipaudit"]["explosion_frame"]
        assert ours["drift_frame"] == t["mlipaudit"]["drift_frame"] > 0  # every one of them drifts
        assert ours["score"] == pytest.approx(t["mlipaudit"]["score"], abs=1e-12)
    explosions = reference["mlipaudit"]["explosions"]
    assert [
        scores.mlipaudit_explosion_frame(T, explosions["target_K"]) for T in explosions["temperatures"]
    ] == explosions["mlipaudit"]
    for run in reference["lambench"]:
        drift = scores.lambench_energy_drift(
            run["steps"],
            run["total_energies"],
            dt_fs=run["timestep_fs"],
            n_atoms=run["n_atoms"],
            n_steps=run["n_steps"],
        )
        # LAMBench's number is ours times 1 / ase.units.fs: it fits against time in ASE units
        assert drift * scores.LAMBENCH_TIME_FACTOR == pytest.approx(run["lambench_slope"], rel=1e-6)
    arena = reference["mlip_arena"]
    np.testing.assert_allclose(scores.heating_ramp(arena["schedule_n"])[::1000], arena["schedule_every_1000"])
    for case in arena["cases"]:
        steps = np.asarray(case["steps"])
        bad = case["nan_from_step"]
        energies = np.where(steps >= (np.inf if bad is None else bad), np.nan, -14.0)
        final = scores.final_valid_step(steps, energies)
        assert scores.mlip_arena_fraction(final, case["target_steps"]) == pytest.approx(case["normalized_final_step"])


def test_temperature_schedule_heats_the_thermostat_and_a_constant_one_changes_nothing(tmp_path):
    systems = [molecule("CH4") for _ in range(8)]
    potential = MorseBondPotential(systems)
    common = dict(
        n_steps=400, temperatures=300.0, seeds=list(range(8)), friction=0.1, frame_interval=10, progress=False
    )
    run_md(potential, systems, path=tmp_path / "ramp.h5", temperature_schedule=scores.heating_ramp(400), **common)
    temps = np.stack([read_system(tmp_path / "ramp.h5", s)["temperature_kin"] for s in range(8)]).mean(axis=0)
    assert temps[:5].mean() < 600 and temps[-5:].mean() > 2000  # follows 300 -> 3000 K (1/friction = 10 fs)
    run_md(potential, systems, path=tmp_path / "plain.h5", **common)
    run_md(potential, systems, path=tmp_path / "flat.h5", temperature_schedule=np.full(401, 300.0), **common)
    plain = read_system(tmp_path / "plain.h5", 3)["positions"]
    assert np.array_equal(plain, read_system(tmp_path / "flat.h5", 3)["positions"])
    with pytest.raises(ValueError, match="temperature_schedule: expected shape"):
        run_md(potential, systems, path=tmp_path / "bad.h5", temperature_schedule=np.full(5, 300.0), **common)
    with pytest.raises(ValueError, match="needs a thermostat"):
        run_md(
            potential,
            systems,
            path=tmp_path / "bad.h5",
            integrator="verlet",
            temperature_schedule=scores.heating_ramp(400),
            **common,
        )


def test_stress_audit_reports_the_four_scores_for_a_sound_potential(tmp_path):
    result = run_audit(
        CalculatorPotential(gfn2_xtb),
        {"water": molecule("H2O")},
        Protocol(0.05, (300.0,)),
        tmp_path,
        reference=None,
        field=FieldProtocol(nve_ps=0.1, ramp_ps=0.05),
    )
    field = result.field
    assert len(field.trajectories) == 1 and len(field.nve) == 1 and len(field.ramp) == 1
    t = field.trajectories.iloc[0]
    assert not t["mdsim_unstable"] and t["mdsim_stable_ps"] == pytest.approx(0.05) and t["mlipaudit_score"] == 1.0
    assert not t["mdsim_censored"] and not t["mlipaudit_censored"]  # it never failed: nothing to be blind to
    nve = field.nve.iloc[0]
    assert nve["completed"] and 0 < nve["drift_ev_atom_ps"] < 0.05 and nve["lambench_instability"] < 5
    # LAMBench's printed drift is per ASE time unit, sqrt(amu Å^2 / eV) = 10.1805 fs, not per fs
    assert nve["lambench_reported_drift"] / nve["drift_ev_atom_ps"] == pytest.approx(10.1805, rel=1e-4)
    assert field.ramp.iloc[0]["arena_fraction"] == 1.0
    lines = field.lines()
    assert list(lines) == ["mdsim", "mlipaudit", "lambench", "mlip_arena"]
    assert all("n=1" in lines[key] for key in ("mlipaudit", "lambench", "mlip_arena")) and "0 of 1" in lines["mdsim"]
    facts = json.loads(json.dumps(field.as_dict()))
    assert set(facts["scores"]) == set(lines) and "arXiv:2210.07237" in facts["scores"]["mdsim"]["source"]


def test_a_weak_potential_fails_mdsim_when_the_audit_fails_it(tmp_path):
    molecules = {"water": molecule("H2O"), "methane": molecule("CH4")}
    result = run_audit(
        CalculatorPotential(weak_lennard_jones),
        molecules,
        Protocol(0.05, (1200.0,)),
        tmp_path,
        reference=None,
        field=FieldProtocol(nve_ps=0.02, ramp_ps=0.05),
    )
    merged = result.trajectories.merge(result.field.trajectories, on="system")
    bond = merged[merged["rule"] == "bond"]
    assert len(bond) > 0 and bond["mdsim_unstable"].all()
    assert np.allclose(bond["mdsim_stable_ps"], bond["time_to_failure_ps"])  # the failed geometry's own step
    # frozen at a 0.5 Å stretch (an X-H bond of ~1.6 Å, short of MLIPAudit's 2.5 Å) and not hot: MLIPAudit
    # sees neither a drift nor an explosion and scores the failed runs as sound (censored)
    assert len(bond) == len(merged) == 2
    assert (bond["mlipaudit_explosion_frame"] == -1).all() and (bond["mlipaudit_drift_frame"] == -1).all()
    assert (bond["mlipaudit_score"] == 1.0).all() and bond["mlipaudit_censored"].all()
    assert not bond["mdsim_censored"].any()  # MDsim's own 0.5 Å rule fired
    ramp = result.field.ramp
    assert (ramp["first_failure_rule"] != "").all() and (ramp["first_failure_K"] < 3000).all()
