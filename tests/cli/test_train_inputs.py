"""`gemrepro train --data`: labels are read in a named unit from a named key, and a resume continues
only the run its folder holds (issue #33: labels misread without a word)."""

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from gemrepro.cache.paths import shared_data_dir
from gemrepro.cli import main as cli_main
from gemrepro.model import load_model

torch.set_num_threads(1)

FAST = [
    "--train-size",
    "8",
    "--val-size",
    "4",
    "--batch-size",
    "4",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
    "--max-steps",
    "2",
    "--quiet",
]


def ethanol() -> Path:
    folder = shared_data_dir()
    if folder is None or not (folder / "ethanol_reduced_100.xyz").is_file():
        pytest.skip("ethanol_reduced_100.xyz not available: ../shared/data beside the checkout is absent")
    return folder / "ethanol_reduced_100.xyz"


def water_file(path: Path, shift: float = 0.0) -> Path:
    """Twelve labelled waters (eV): a calculator energy and forces, and an ``atomization_energy``."""
    frames = []
    for k in range(12):
        atoms = molecule("H2O")
        atoms.positions[0, 0] += 0.01 * k + shift
        atoms.info["atomization_energy"] = -10.0 - 0.1 * k
        atoms.calc = SinglePointCalculator(atoms, energy=-2080.0 - 0.1 * k, forces=0.1 * atoms.positions)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def train(capsys, *argv) -> tuple[int, str, str]:
    code = cli_main(["train", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys, *argv) -> str:
    code, _, err = train(capsys, *argv)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- units


def test_train_refuses_rmd17_read_as_ev_and_trains_it_in_kcal_per_mol(tmp_path, capsys):
    path = ethanol()
    err = refused(capsys, "--data", path, *FAST, "--out", tmp_path / "ev")
    assert "read as eV, frame 0 has energy -97080 eV" in err and "pass --energy-unit" in err
    assert not (tmp_path / "ev").exists()  # refused before any compute
    code, out, err = train(capsys, "--data", path, "--energy-unit", "kcal/mol", *FAST, "--out", tmp_path / "kcal")
    assert code == 0, err
    assert json.loads(out)["steps"] == 2
    assert json.loads((tmp_path / "kcal" / "run.json").read_text())["energy_unit"] == "kcal/mol"


def test_data_info_warns_on_rmd17_read_as_ev(capsys):
    path = ethanol()
    assert cli_main(["data", "info", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("gemrepro data info: warning:") and "pass --energy-unit" in err and err.count("\n") == 1
    assert cli_main(["data", "info", str(path), "--energy-unit", "kcal/mol"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "max |F| 8.0933" in captured.out


# ---------------------------------------------------------------- keys


def test_a_misspelled_energy_key_names_the_keys_the_file_has(tmp_path, capsys):
    data = water_file(tmp_path / "water.extxyz")
    err = refused(capsys, "--data", data, "--energy-key", "atomisation_energy", *FAST, "--out", tmp_path / "run")
    assert "--energy-key atomisation_energy: not an energy every structure" in err
    assert "it has atomization_energy, energy" in err
    assert not (tmp_path / "run").exists()


def test_the_default_energy_is_one_key_for_every_structure(tmp_path, capsys):
    """Where some structures lack an atomization energy, all train on the calculator's, not a mixture."""
    frames = ase.io.read(water_file(tmp_path / "water.extxyz"), index=":")
    for atoms in frames[::2]:
        del atoms.info["atomization_energy"]
    ase.io.write(tmp_path / "mixed.extxyz", frames, format="extxyz")
    code, _, err = train(capsys, "--data", tmp_path / "mixed.extxyz", *FAST, "--out", tmp_path / "run")
    assert code == 0, err
    references = load_model(tmp_path / "run" / "best_model.pt", device="cpu").reference_energies()
    assert references[8] + 2 * references[1] == pytest.approx(-2080.5, abs=1.0)  # a water's total energy


def test_the_energy_unit_converts_an_atoms_info_energy_too(tmp_path, capsys):
    """ASE converts only its calculator's labels; an atomization energy in atoms.info is in the file's unit too."""
    frames = ase.io.read(water_file(tmp_path / "water.extxyz"), index=":")
    for atoms in frames:
        atoms.info["atomization_energy"] *= 23.0605  # eV to kcal/mol, like the calculator's labels below
        atoms.calc = SinglePointCalculator(atoms, energy=-2080.0 * 23.0605, forces=np.zeros((3, 3)))
    ase.io.write(tmp_path / "kcal.extxyz", frames, format="extxyz")
    argv = ["--data", tmp_path / "kcal.extxyz", "--energy-unit", "kcal/mol", *FAST, "--out", tmp_path / "run"]
    code, _, err = train(capsys, *argv)
    assert code == 0, err
    references = load_model(tmp_path / "run" / "best_model.pt", device="cpu").reference_energies()
    assert references[8] + 2 * references[1] == pytest.approx(-10.5, abs=0.5)  # eV, not kcal/mol


# ---------------------------------------------------------------- resume


@pytest.fixture
def first_run(tmp_path, capsys) -> tuple[Path, Path]:
    """A two-step run on the waters in ``run``; returns (data file, out folder)."""
    data = water_file(tmp_path / "a.extxyz")
    code, _, err = train(capsys, "--data", data, *FAST, "--out", tmp_path / "run")
    assert code == 0, err
    return data, tmp_path / "run"


def test_a_resume_says_so(first_run, capsys):
    data, out = first_run
    code, summary, err = train(capsys, "--data", data, *FAST[:-3], "--max-steps", "4", "--quiet", "--out", out)
    assert code == 0, err
    assert f"resuming from epoch 1 (step 2) in {out}" in err
    assert json.loads(summary)["steps"] == 4


def test_a_resume_on_other_data_of_the_same_size_is_refused(first_run, tmp_path, capsys):
    data, out = first_run
    other = water_file(tmp_path / "b.extxyz", shift=0.05)
    checkpoint = (out / "checkpoint.pt").read_bytes()
    split = (out / "split.json").read_text()
    err = refused(capsys, "--data", other, *FAST, "--out", out)
    assert f"--out {out}: holds a run on other inputs (--data {data} (sha256 " in err
    assert f"there, {other} (sha256 " in err and "pass a new --out or the same inputs" in err
    assert (out / "checkpoint.pt").read_bytes() == checkpoint and (out / "split.json").read_text() == split


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--energy-key", "energy"], "--energy-key atomization_energy there, energy in this command"),
        (["--energy-unit", "kcal/mol"], "--energy-unit eV there, kcal/mol in this command"),
        (["--preset", "small"], "--preset tiny there, small in this command"),
        (["--init", "MODEL"], "--init none there, "),
    ],
)
def test_a_resume_with_another_input_names_it(first_run, capsys, change, named):
    data, out = first_run
    change = [str(out / "best_model.pt") if a == "MODEL" else a for a in change]
    err = refused(capsys, "--data", data, *FAST, *change, "--out", out)
    assert named in err


def test_a_checkpoint_of_another_preset_is_one_line_without_run_json(first_run, capsys):
    """A folder written before run.json: the trainer itself refuses weights of another shape in one line."""
    data, out = first_run
    (out / "run.json").unlink(missing_ok=True)
    err = refused(capsys, "--data", data, *FAST, "--preset", "small", "--out", out)
    assert "checkpoint.pt: its weights do not fit the model given" in err
