"""The robustness audit: a broken potential fails it, the reference method passes it, and
calculators that raise, return NaN or hang fail only their own trajectory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import bulk, molecule
from ase.io import write
from stress_calculators import gfn2_xtb, sabotaged, weak_lennard_jones

from gemrepro.cli import main
from gemrepro.cli.structures import load_structures
from gemrepro.md.state import batch_inputs
from gemrepro.stress.audit import run_audit
from gemrepro.stress.calculators import CalculatorPotential
from gemrepro.stress.field import FieldProtocol
from gemrepro.stress.report import write_report
from gemrepro.stress.worker import CalculatorWorker, resolve_factory
from gemrepro.studies.sweep import Protocol

torch.set_num_threads(1)


PROTOCOL = Protocol(0.05, (300.0, 1200.0), n_sampled_frames=2)  # 100 steps of 0.5 fs


def test_reference_method_passes_its_own_audit(tmp_path):
    result = run_audit(CalculatorPotential(gfn2_xtb), {"water": molecule("H2O")}, PROTOCOL, tmp_path)
    assert not result.trajectories["failed"].any()
    assert result.verdict(PROTOCOL.md_time_ps).passed
    frames = result.frames
    assert len(frames) == 2 * 3 and frames["converged"].all()  # start + 2 sampled frames per trajectory
    assert frames["time_ps"].max() == pytest.approx(0.05)
    # the potential *is* the reference: errors are numerical noise only
    assert frames["forces_mae"].max() < 1e-3
    assert np.abs(frames["energy_error"]).max() < 1e-5


def test_weak_potential_fails_the_audit_and_the_report_is_self_contained(tmp_path):
    molecules = {"water": molecule("H2O"), "methane": molecule("CH4")}
    result = run_audit(CalculatorPotential(weak_lennard_jones), molecules, PROTOCOL, tmp_path, n_seeds=2)
    t = result.trajectories
    assert len(t) == 8 and t["failed"].all()
    assert set(t["rule"]) <= {"bond", "hydrogen_loss"}
    assert (t["stable_time_ps"] < 0.05).all() and (t["stable_time_ps"] > 0).all()
    verdict = result.verdict(0.05)
    assert not verdict.passed and verdict.n_failed_early == 8
    failed_geometries = result.frames[result.frames["frame"] == -1]
    assert len(failed_geometries) == 8
    assert failed_geometries["forces_mae"].min() > 0.5  # far from GFN2-xTB where it breaks
    assert np.allclose(failed_geometries.sort_values("system")["time_ps"], t["time_to_failure_ps"])
    # the captured failed geometry really breaks the bond rule
    s = int(t["system"].iloc[0])
    broken = result.atoms_of(s, -1)
    start = molecules[t["molecule"].iloc[0]]
    assert np.abs(broken.get_all_distances() - start.get_all_distances()).max() > 0.5
    # the reference charges eV for the bond the weak potential let go: every failure is a hole
    assert (t["origin"] == "hole").all() and (t["origin_excess_eV"] > 2.0).all()

    facts = write_report(result, tmp_path / "report.html", tmp_path / "summary.json", "weak LJ", min_stable_ps=0.05)
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # survival, error vs time, worst frames
    assert 'src="http' not in page and "<script" not in page
    assert "FAILED" in page
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored == facts and stored["verdict"]["passed"] is False and stored["n_failed"] == 8
    assert {k: stored["failure_origins"][k] for k in ("hole", "chemistry", "undetermined")} == {
        "hole": 8,
        "chemistry": 0,
        "undetermined": 0,
    }
    assert "Hole or real chemistry?" in page


def test_bonds_the_reference_itself_breaks_are_chemistry_not_holes(tmp_path):
    """GFN2-xTB as the potential at 10,000 K tears water apart; judged by itself, that is real chemistry."""
    result = run_audit(
        CalculatorPotential(gfn2_xtb),
        {"water": molecule("H2O")},
        Protocol(0.1, (10000.0,), n_sampled_frames=2),
        tmp_path,
        n_seeds=3,
    )
    failed = result.trajectories[result.trajectories["failed"]]
    assert len(failed) >= 2
    assert (failed["origin"] == "chemistry").all() and (failed["origin_excess_eV"].abs() < 1e-3).all()
    assert (result.trajectories.loc[~result.trajectories["failed"], "origin"] == "").all()


def test_raising_and_nan_calculators_fail_only_their_trajectory(tmp_path):
    molecules = {"water": molecule("H2O"), "methane": molecule("CH4"), "nitrogen": molecule("N2")}
    potential = CalculatorPotential(sabotaged)
    result = run_audit(potential, molecules, Protocol(0.02, (300.0,)), tmp_path, reference=None)
    t = result.trajectories.set_index("molecule")
    assert t.loc["water", "failed"] and t.loc["water", "rule"] == "nonfinite"
    assert t.loc["water", "detail"] == "RuntimeError: SCF exploded"
    assert t.loc["water", "stable_time_ps"] == 0.0  # fails at its very first evaluation
    assert t.loc["methane", "failed"] and "non-finite" in t.loc["methane", "detail"]
    assert not t.loc["nitrogen", "failed"] and t.loc["nitrogen", "detail"] == ""
    # failed systems are never asked again: 41 calls for nitrogen, one each for the others
    assert potential.n_calls == 41 + 1


def test_hanging_calculator_is_killed_and_the_audit_goes_on(tmp_path):
    molecules = {"ammonia": molecule("NH3"), "nitrogen": molecule("N2")}
    with CalculatorPotential(sabotaged, timeout_s=1.0) as potential:
        result = run_audit(potential, molecules, Protocol(0.01, (300.0,)), tmp_path, reference=None)
        assert potential._worker.restarts == 1
    t = result.trajectories.set_index("molecule")
    assert t.loc["ammonia", "failed"] and "no answer within 1 s" in t.loc["ammonia", "detail"]
    assert 0 < t.loc["ammonia", "stable_time_ps"] < 0.01
    assert not t.loc["nitrogen", "failed"]  # served by the restarted worker


def test_worker_reports_factory_errors_in_one_line():
    with pytest.raises(ValueError, match="MODULE:FACTORY"):
        resolve_factory("tblite.ase.TBLite")
    with pytest.raises(ValueError, match="has no attribute"):
        resolve_factory("ase.calculators.lj:NoSuchCalculator")
    with pytest.raises(ValueError, match="timeout_s"):
        CalculatorWorker(weak_lennard_jones, timeout_s=0.0)


def test_molecules_from_names_smiles_and_files(tmp_path):
    path = tmp_path / "formaldehyde.xyz"
    molecule("H2CO").write(path)
    molecules = load_structures(["ethanol", "C#N", str(path)])
    assert list(molecules) == ["ethanol", "C#N", "formaldehyde[0]"]
    assert molecules["ethanol"].get_chemical_formula() == "C2H6O"
    assert molecules["C#N"].get_chemical_formula() == "CHN"
    assert molecules["formaldehyde[0]"].get_chemical_formula() == "CH2O"
    with pytest.raises(ValueError, match="does not exist"):
        load_structures([str(tmp_path / "missing.xyz")])


def test_cli_gates_on_min_stable_time(tmp_path, capsys):
    common = [
        "stress",
        "--molecules",
        "O",
        "--temperatures",
        "1200",
        "--seeds",
        "1",
        "--time-ps",
        "0.05",
        "--reference",
        "none",
        "--timeout-s",
        "0",
        "--quiet",
    ]
    status = main(
        [
            *common,
            "--calculator",
            "stress_calculators:weak_lennard_jones",
            "--min-stable-ps",
            "0.05",
            "--out",
            str(tmp_path / "lj"),
        ]
    )
    assert status == 1 and "FAILED" in capsys.readouterr().out
    summary = json.loads((tmp_path / "lj" / "summary.json").read_text())
    assert summary["verdict"]["passed"] is False and summary["n_failed"] == 1
    assert (tmp_path / "lj" / "report.html").is_file()
    assert main([*common, "--calculator", "no-colon", "--out", str(tmp_path / "x")]) == 2
    assert "MODULE:FACTORY" in capsys.readouterr().err
    assert (
        main(
            [
                *common,
                "--calculator",
                "stress_calculators:weak_lennard_jones",
                "--min-stable-ps",
                "1",
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )


def test_cli_reports_the_fields_scores_for_a_model(tmp_path, capsys):
    from gemrepro.model import GemNetT, save_model

    torch.manual_seed(0)
    save_model(GemNetT.from_preset("tiny"), tmp_path / "random.pt")  # random weights: any number will do
    common = [
        "stress",
        "--model",
        str(tmp_path / "random.pt"),
        "--molecules",
        "O",
        "--temperatures",
        "300",
        "--seeds",
        "1",
        "--time-ps",
        "0.01",
        "--reference",
        "none",
        "--device",
        "cpu",
        "--quiet",
        "--allow-unknown-elements",
    ]
    assert main([*common, "--nve-ps", "0.02", "--ramp-ps", "0.01", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    for name in (
        "MDsim",
        "MLIPAudit",
        "LAMBench",
        "MLIP Arena",
        "arXiv:2210.07237",
        "instadeepai/mlipaudit",
        "deepmodeling/LAMBench",
        "atomind-ai/mlip-arena",
    ):
        assert name in out, name
    facts = json.loads((tmp_path / "a" / "summary.json").read_text())["field_scores"]
    assert facts["protocol"]["nve_ps"] == 0.02 and facts["ramp"][0]["n_steps"] == 20
    assert facts["nve"][0]["n_steps"] == 20 and len(facts["trajectories"]) == 1
    page = (tmp_path / "a" / "report.html").read_text()
    assert "The field's stability scores</h2>" in page and "arXiv:2210.07237" in page
    assert main([*common, "--no-field-scores", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["field_scores"] is None
    capsys.readouterr()
    assert main([*common, "--nve-ps", "0", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--nve-ps: expected a positive NVE time in ps" in err


def test_an_audit_on_refilled_slots_finds_the_same_failures_and_frames(tmp_path, capsys):
    """A random-weight GemNet fails early at different steps; two refilled slots give the one-batch audit's results."""
    from gemrepro.integrations.potential import GemNetPotential
    from gemrepro.model import GemNetT, save_model

    torch.manual_seed(0)
    model = GemNetT.from_preset("tiny").double()
    molecules = {"water": molecule("H2O"), "methane": molecule("CH4"), "methanol": molecule("CH3OH")}
    protocol = Protocol(0.1, (600.0, 2400.0), n_sampled_frames=2)
    batch = run_audit(GemNetPotential(model, device="cpu"), molecules, protocol, tmp_path / "batch")
    slots = run_audit(GemNetPotential(model, device="cpu"), molecules, protocol, tmp_path / "slots", slots=2)
    assert batch.trajectories["failed"].sum() >= 3  # the comparison covers failures
    columns = ["molecule", "temperature", "failed", "time_to_failure_ps", "rule", "atoms", "origin"]
    pd.testing.assert_frame_equal(slots.trajectories[columns], batch.trajectories[columns])
    keys = ["system", "frame", "step"]
    pd.testing.assert_frame_equal(slots.frames[keys], batch.frames[keys])
    np.testing.assert_allclose(slots.frames["forces_mae"], batch.frames["forces_mae"], rtol=1e-6)
    assert (tmp_path / "slots" / "trajectories" / "trajectory_00005.h5").is_file()
    with pytest.raises(ValueError, match="slots: refilled slots are for batched model potentials"):
        run_audit(CalculatorPotential(gfn2_xtb), molecules, protocol, tmp_path / "calc", slots=2)
    save_model(model, tmp_path / "random.pt")
    assert (
        main(
            [
                "stress",
                "--calculator",
                "stress_calculators:gfn2_xtb",
                "--molecules",
                "O",
                "--slots",
                "2",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "--slots: refilled batch slots need --model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- cells, and calculators that cannot start
def stress_argv(tmp_path, calculator: str, *molecules, out: str = "audit") -> list[str]:
    return [
        "stress",
        "--calculator",
        f"stress_calculators:{calculator}",
        "--molecules",
        *[str(m) for m in molecules],
        "--temperatures",
        "300",
        "--seeds",
        "1",
        "--time-ps",
        "0.005",
        "--nve-ps",
        "0.005",
        "--ramp-ps",
        "0.005",
        "--reference",
        "none",
        "--timeout-s",
        "0",
        "--quiet",
        "--out",
        str(tmp_path / out),
    ]


def test_a_structure_files_cell_reaches_the_calculator(tmp_path, capsys):
    """A periodic metal from an extxyz file (Lattice, pbc) runs as the crystal, not a cluster."""
    path = tmp_path / "copper.extxyz"
    write(path, bulk("Cu", "fcc", a=3.6, cubic=True))
    assert main(stress_argv(tmp_path, "cell_requiring_emt", path)) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["n_failed"] == 0 and summary["n_trajectories"] == 1
    capsys.readouterr()
    # a molecular reference cannot relabel a crystal: said before any MD
    argv = stress_argv(tmp_path, "cell_requiring_emt", path, out="b")
    argv[argv.index("--reference") + 1] = "gfn2-xtb"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gfn2-xtb relabels isolated molecules" in err and "--reference none" in err


def test_calculator_potential_hands_each_system_its_cell():
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True)
    potential = CalculatorPotential(resolve_factory("stress_calculators:cell_requiring_emt"))
    potential.set_cells(np.array([crystal.cell.array]), np.array([crystal.pbc]))
    energy, forces = potential(*batch_inputs([crystal.positions], [crystal.numbers]))
    assert bool(torch.isfinite(energy).all()) and potential.errors == {}


def test_box_puts_a_molecule_in_a_periodic_vacuum_box(tmp_path, capsys):
    assert main(stress_argv(tmp_path, "cell_requiring_dimer", "N#N") + ["--box", "12"]) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["n_failed"] == 0
    boxed = load_structures(["N#N"], box=12.0)["N#N"]
    assert boxed.pbc.all() and np.allclose(boxed.cell.lengths(), 12.0)
    assert np.allclose(boxed.positions.mean(axis=0), 6.0, atol=0.6)  # centred
    for box, expected in (("3", "--box 3: too small for N#N"), ("-1", "--box: expected a positive box side")):
        capsys.readouterr()
        assert main(stress_argv(tmp_path, "cell_requiring_dimer", "N#N", out="x") + ["--box", box]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
        assert not (tmp_path / "x" / "trajectory.h5").exists()


def test_a_calculator_failing_at_its_first_call_is_one_line_before_any_md(tmp_path, capsys):
    """A materials potential on a cell-less molecule fails every call; that is one error, not n unstable runs."""
    assert main(stress_argv(tmp_path, "cell_requiring_dimer", "N#N")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "--calculator stress_calculators:cell_requiring_dimer: fails at its first call" in err
    assert "on the start structure of N#N (LinAlgError: Singular matrix)" in err and "--box" in err
    assert not (tmp_path / "audit" / "trajectory.h5").exists()


def test_a_trajectory_that_never_took_a_step_is_stable_by_no_score(tmp_path):
    molecules = {"water": molecule("H2O"), "nitrogen": molecule("N2")}  # water raises at its first call
    result = run_audit(
        CalculatorPotential(sabotaged),
        molecules,
        Protocol(0.005, (300.0,)),
        tmp_path,
        reference=None,
        field=FieldProtocol(0.005, 0.005),
    )
    scores = result.field.trajectories.set_index("molecule")
    water = scores.loc["water"]
    assert water["mdsim_unstable"] and water["mdsim_stable_ps"] == 0.0 and not water["mdsim_censored"]
    assert water["mlipaudit_score"] == 0.0 and not water["mlipaudit_censored"]
    assert not scores.loc["nitrogen", "mdsim_unstable"]
    assert "1 of 2 trajectories unstable" in result.field.lines()["mdsim"]
    ramp, nve = result.field.ramp.set_index("molecule"), result.field.nve.set_index("molecule")
    assert ramp.loc["water", "arena_fraction"] == 0.0 and nve.loc["water", "lambench_instability"] == 5.0
