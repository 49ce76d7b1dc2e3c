"""An audit written with write_audit reads back identical: tables (dtypes, empty strings, NaNs, every
float bit), failure geometries, field scores and the trajectory the plots read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import molecule
from stress_calculators import weak_lennard_jones

from gemrepro.stress.audit import run_audit
from gemrepro.stress.calculators import CalculatorPotential
from gemrepro.stress.field import FieldProtocol
from gemrepro.stress.store import read_audit, read_table, write_audit, write_table
from gemrepro.studies.sweep import Protocol

torch.set_num_threads(1)


def test_an_audit_reads_back_as_it_was_written(tmp_path):
    molecules = {"water": molecule("H2O"), "methane": molecule("CH4")}
    protocol = Protocol(0.02, (300.0, 1200.0), n_sampled_frames=2)
    result = run_audit(
        CalculatorPotential(weak_lennard_jones),
        molecules,
        protocol,
        tmp_path / "run",
        field=FieldProtocol(nve_ps=0.01, ramp_ps=0.01),
    )
    failed = result.trajectories["failed"]
    assert failed.any() and not failed.all()  # both kinds of row: origin "" and a verdict
    write_audit(result, tmp_path / "stored")
    back = read_audit(tmp_path / "stored")

    pd.testing.assert_frame_equal(back.trajectories, result.trajectories, check_exact=True)
    pd.testing.assert_frame_equal(back.frames, result.frames, check_exact=True)
    for name in ("trajectories", "nve", "ramp"):
        pd.testing.assert_frame_equal(getattr(back.field, name), getattr(result.field, name), check_exact=True)
    assert back.field.protocol == result.field.protocol and back.field.lines() == result.field.lines()
    assert back.protocol == result.protocol and back.reference == result.reference
    assert back.failure_positions.keys() == result.failure_positions.keys()
    for system, positions in result.failure_positions.items():
        np.testing.assert_array_equal(back.failure_positions[system], positions)
    system = int(result.trajectories["system"].iloc[0])
    np.testing.assert_array_equal(back.atoms_of(system, 1).positions, result.atoms_of(system, 1).positions)
    np.testing.assert_array_equal(back.atoms_of(system, -1).positions, result.atoms_of(system, -1).positions)


def test_a_table_keeps_empty_strings_missing_floats_and_every_bit(tmp_path):
    table = pd.DataFrame(
        {
            "rule": ["", "bond", ""],
            "origin": ["hole", "", "undetermined"],
            "time_ps": [0.1 + 0.2, np.nan, 1 / 3],
            "failed": [True, False, True],
            "system": np.array([0, 1, 2], dtype=np.int64),
        }
    )
    dtypes = write_table(table, tmp_path / "t.csv")
    back = read_table(tmp_path / "t.csv", dtypes)
    pd.testing.assert_frame_equal(back, table, check_exact=True)
    assert back["time_ps"][0] == 0.1 + 0.2 and back["rule"][0] == ""


def test_a_folder_without_an_audit_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a folder written by write_audit"):
        read_audit(tmp_path)
