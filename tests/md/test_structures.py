"""Input a user brings: files of many molecules, broken geometry, elements a model never saw, mixed committees."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read as ase_read
from ase.io import write

from gemrepro.analysis.geometry import check_geometry, geometry_problem
from gemrepro.cli import main as cli_main
from gemrepro.cli.structures import load_structures, parse_select
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.md import export_extxyz, read_system, run_md
from gemrepro.md.committee import CommitteePotential
from gemrepro.md.potentials import MorseBondPotential
from gemrepro.md.state import batch_inputs
from gemrepro.model import EnergyShift, GemNetQ, GemNetT, save_model

torch.set_num_threads(1)

REFERENCES = {1: -13.6, 6: -1029.8, 8: -2041.3}  # a model trained on H, C and O
SHARED_QM7X = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "qm7x_reduced_100.xyz"


def trained_file(path: Path, variant: str = "T") -> Path:
    torch.manual_seed(0)
    network = (GemNetT if variant == "T" else GemNetQ).from_preset("tiny")
    save_model(EnergyShift(network, REFERENCES), path)
    return path


def run_cli(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def overlapping_water() -> Atoms:
    atoms = molecule("H2O")
    atoms.positions[2] = atoms.positions[1]  # both hydrogens on one spot
    return atoms


# ----------------------------------------------------------------------------- geometry
def test_geometry_check_names_the_atoms_of_an_overlap_and_of_nan_coordinates():
    water = molecule("H2O")
    assert geometry_problem(water.numbers, water.positions) is None
    problem = geometry_problem(overlapping_water().numbers, overlapping_water().positions)
    assert "atoms 1 (H) and 2 (H) are 0.000 Å apart" in problem
    broken = water.positions.copy()
    broken[0, 1] = np.nan
    assert "non-finite coordinates (NaN or inf) at atom(s) 0" in geometry_problem(water.numbers, broken)
    with pytest.raises(ValueError, match=r"^mine frame 3: atoms 1 \(H\) and 2 \(H\)"):
        check_geometry(overlapping_water().numbers, overlapping_water().positions, "mine frame 3")


def test_run_md_refuses_bad_geometry_before_any_step(tmp_path):
    calls = []

    def potential(positions, numbers, system_index):
        calls.append(1)
        return torch.zeros(int(system_index.max()) + 1, dtype=positions.dtype), torch.zeros_like(positions)

    with pytest.raises(ValueError, match=r"systems\[1\] \(H2O\): atoms 1 \(H\) and 2 \(H\)"):
        run_md(potential, [molecule("CH4"), overlapping_water()], n_steps=5, path=tmp_path / "md.h5", progress=False)
    assert not calls and not (tmp_path / "md.h5").exists()


# ----------------------------------------------------------------------------- many-molecule files
def test_parse_select_takes_numbers_lists_and_slices_and_rejects_the_rest():
    assert parse_select(None, 4, "f") == [0, 1, 2, 3]
    assert parse_select("2", 4, "f") == [2]
    assert parse_select("0,3,-1", 5, "f") == [0, 3, 4]
    assert parse_select("1:7:2", 10, "f") == [1, 3, 5]
    assert parse_select(":2", 10, "f") == [0, 1]
    with pytest.raises(ValueError, match=r"frame\(s\) \[9\] outside f's 4 frames"):
        parse_select("1,9", 4, "f")
    with pytest.raises(ValueError, match="picks none"):
        parse_select("3:1", 4, "f")
    with pytest.raises(ValueError, match="expected frame numbers"):
        parse_select("first", 4, "f")


def test_a_slice_past_the_end_is_refused_like_a_frame_past_the_end():
    """``98:1000`` of 100 frames once gave frames 98 and 99 without a word, while ``200`` was refused."""
    assert parse_select("98:100", 100, "f") == [98, 99]  # a stop at the end is the whole tail
    assert parse_select("-2:", 100, "f") == [98, 99]
    for text, bound in (("98:1000", "1000"), ("200:", "200"), ("100:", "100"), ("-101:", "-101"), ("0:101:10", "101")):
        with pytest.raises(ValueError, match=rf"^--select '{text}': {bound} lies outside f's 100 frames") as caught:
            parse_select(text, 100, "f")
        assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"^--select: frame\(s\) \[200\] outside f's 100 frames"):
        parse_select("200", 100, "f")


def test_every_frame_of_a_file_is_a_structure_of_its_own(tmp_path):
    path = tmp_path / "mixed.extxyz"
    write(path, [molecule("H2O"), molecule("CH4"), molecule("CH3OH")])
    structures = load_structures(["ethanol", str(path)])
    assert list(structures) == ["ethanol", "mixed[0]", "mixed[1]", "mixed[2]"]
    assert [a.get_chemical_formula() for a in structures.values()] == ["C2H6O", "H2O", "CH4", "CH4O"]
    assert structures["ethanol"].info["key"] == "CCO"  # the canonical SMILES: seeds as before files were read
    keys = {a.info["key"] for a in structures.values()}
    assert len(keys) == 4
    assert list(load_structures([str(path)], select="0,2")) == ["mixed[0]", "mixed[2]"]
    with pytest.raises(ValueError, match="--select: picks frames of structure files"):
        load_structures(["ethanol"], select="0")


def test_a_broken_frame_is_named_with_its_file_frame_and_atoms(tmp_path):
    path = tmp_path / "bad.xyz"
    write(path, [molecule("CH4"), overlapping_water()])
    with pytest.raises(ValueError, match=r"--molecules .*bad.xyz frame 1: atoms 1 \(H\) and 2 \(H\) are 0.000 Å"):
        load_structures([str(path)])
    assert list(load_structures([str(path)], select="0")) == ["bad[0]"]
    path.write_text("3\n\nO 0 0 0\nH 0.96 0 nan\nH -0.24 0.93 0\n")
    with pytest.raises(ValueError, match="bad.xyz frame 0: positions contain NaN"):
        load_structures([str(path)])


def test_md_cli_runs_every_frame_of_a_many_molecule_file(tmp_path, capsys):
    model = trained_file(tmp_path / "model.pt")
    path = tmp_path / "set.xyz"
    write(path, [molecule(name) for name in ("H2O", "CH4", "CH3OH", "C2H6", "HCOOH", "CH3CHO")])
    code, out, err = run_cli(
        capsys,
        "md",
        "--model",
        model,
        "--molecules",
        path,
        "--select",
        "0:5",
        "--temperatures",
        "300",
        "600",
        "--time-ps",
        "0.002",
        "--frame-interval",
        "2",
        "--device",
        "cpu",
        "--out",
        tmp_path / "md.h5",
    )
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [r[1] for r in rows] == [f"set[{k}]" for k in range(5) for _ in (300, 600)]
    assert [float(r[2]) for r in rows] == [300.0, 600.0] * 5
    assert "10 frames" not in out and "steps (0.002 ps)" in out
    code, out, _ = run_cli(
        capsys,
        "md",
        "--model",
        model,
        "--molecules",
        path,
        "--select",
        "1",
        "--time-ps",
        "0.001",
        "--device",
        "cpu",
        "--quiet",
        "--json",
        "--out",
        tmp_path / "one.h5",
    )
    assert code == 0 and [s["molecule"] for s in json.loads(out)["systems"]] == ["set[1]"]
    # 0.001 ps is 2 steps, shorter than the default 100-step frame interval: its last step is stored too
    assert json.loads(out)["n_frames"] == 2
    assert read_system(tmp_path / "one.h5", 0)["step"].tolist() == [0, 2]


@pytest.mark.skipif(not SHARED_QM7X.is_file(), reason="../shared/data is not beside this checkout")
def test_md_cli_reads_a_real_qm7x_file_with_select(tmp_path, capsys):
    model = tmp_path / "model.pt"
    torch.manual_seed(0)
    save_model(
        EnergyShift(
            GemNetT.from_preset("tiny"), {1: -13.6, 6: -1029.8, 7: -1485.0, 8: -2041.3, 16: -10830.0, 17: -12577.0}
        ),
        model,
    )
    code, out, err = run_cli(
        capsys,
        "md",
        "--model",
        model,
        "--molecules",
        SHARED_QM7X,
        "--select",
        "0:100:25",
        "--time-ps",
        "0.001",
        "--device",
        "cpu",
        "--quiet",
        "--json",
        "--out",
        tmp_path / "md.h5",
    )
    assert code == 0, err
    names = [s["molecule"] for s in json.loads(out)["systems"]]
    assert names == [f"qm7x_reduced_100[{k}]" for k in (0, 25, 50, 75)]


def test_stress_cli_audits_every_frame_of_a_file(tmp_path, capsys):
    model = trained_file(tmp_path / "model.pt")
    path = tmp_path / "set.xyz"
    write(path, [molecule("H2O"), molecule("CH4"), molecule("CH3OH")])
    code, out, err = run_cli(
        capsys,
        "stress",
        "--model",
        model,
        "--molecules",
        path,
        "--temperatures",
        "300",
        "--seeds",
        "1",
        "--time-ps",
        "0.002",
        "--frames",
        "2",
        "--reference",
        "none",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        tmp_path / "audit",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert summary["n_trajectories"] == 3
    assert "of 3 trajectories" in out


# ----------------------------------------------------------------------------- elements the model never saw
def test_a_trained_potential_refuses_elements_it_never_saw_unless_allowed():
    torch.manual_seed(0)
    network = GemNetT.from_preset("tiny")
    potential = GemNetPotential(EnergyShift(network, REFERENCES), device="cpu")
    fluoro = molecule("CF4")
    assert potential.unknown_elements(fluoro.numbers) == [9]
    positions, numbers, index = batch_inputs([fluoro.positions], [fluoro.numbers])
    with pytest.raises(ValueError, match=r"holds F, which the model was not trained on \(it knows H, C, O\)"):
        potential(positions, numbers, index)
    allowed = GemNetPotential(EnergyShift(network, REFERENCES), device="cpu", allow_unknown_elements=True)
    energy, forces = allowed(positions, numbers, index)
    assert torch.isfinite(energy).all() and forces.shape == (len(fluoro), 3)
    # a bare GemNet keeps no record of its training elements: nothing to refuse
    assert GemNetPotential(network, device="cpu").unknown_elements(fluoro.numbers) == []


def test_md_cli_refuses_unknown_elements_naming_them_or_runs_marked(tmp_path, capsys):
    model = trained_file(tmp_path / "model.pt")
    write(tmp_path / "cf4.xyz", molecule("CF4"))
    argv = ["md", "--model", model, "--time-ps", "0.001", "--device", "cpu", "--quiet", "--out", tmp_path / "md.h5"]
    code, out, err = run_cli(capsys, *argv, "--molecules", "ethanol", "CC#N")
    assert code == 2 and err.count("\n") == 1
    assert "--molecules CC#N: holds N, which the model was not trained on (it knows H, C, O)" in err
    assert not (tmp_path / "md.h5").exists()
    code, out, err = run_cli(
        capsys, *argv, "--molecules", "ethanol", tmp_path / "cf4.xyz", "--allow-unknown-elements", "--json"
    )
    assert code == 0 and "warning: cf4[0] holds F, which the model was not trained on" in err
    marks = {s["molecule"]: s["unknown_elements"] for s in json.loads(out)["systems"]}
    assert marks == {"ethanol": "", "cf4[0]": "F"}


def test_stress_cli_refuses_unknown_elements(tmp_path, capsys):
    model = trained_file(tmp_path / "model.pt")
    code, _, err = run_cli(
        capsys,
        "stress",
        "--model",
        model,
        "--molecules",
        "ClC",
        "--time-ps",
        "0.001",
        "--reference",
        "none",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        tmp_path / "audit",
    )
    assert code == 2 and "holds Cl, which the model was not trained on" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- committees
def test_a_committee_of_gemnet_t_and_q_is_refused(tmp_path, capsys):
    t_model, q_model = trained_file(tmp_path / "t.pt"), trained_file(tmp_path / "q.pt", "Q")
    code, _, err = run_cli(
        capsys,
        "md",
        "--model",
        t_model,
        "--committee",
        q_model,
        "--molecules",
        "O",
        "--time-ps",
        "0.001",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        tmp_path / "md.h5",
    )
    assert code == 2 and err.count("\n") == 1
    assert f"{q_model} is a GemNet-Q, --model {t_model} a GemNet-T; a committee is of one kind" in err
    torch.manual_seed(0)
    members = [
        GemNetPotential(GemNetT.from_preset("tiny"), device="cpu"),
        GemNetPotential(GemNetQ.from_preset("tiny"), device="cpu"),
    ]
    with pytest.raises(ValueError, match="a committee is of one kind of model, got 0: GemNet-T, 1: GemNet-Q"):
        CommitteePotential(members)


# ----------------------------------------------------------------------------- cells
def test_a_structure_files_cell_and_pbc_are_kept(tmp_path):
    path = tmp_path / "frames.extxyz"
    write(path, [bulk("Cu", "fcc", a=3.6, cubic=True), molecule("H2O")])
    crystal, water = load_structures([str(path)]).values()
    assert crystal.pbc.all() and np.allclose(crystal.cell.lengths(), 3.6)
    assert not water.pbc.any()


def test_md_refuses_a_periodic_structure_or_a_box_for_the_molecular_gemnet(tmp_path, capsys):
    model = trained_file(tmp_path / "model.pt")
    crystal = Atoms("CH4", positions=molecule("CH4").positions + 2.5, cell=[5.0] * 3, pbc=True)
    write(tmp_path / "crystal.extxyz", crystal)
    common = ["md", "--model", model, "--time-ps", "0.001", "--device", "cpu", "--quiet"]
    code, _, err = run_cli(capsys, *common, "--molecules", tmp_path / "crystal.extxyz", "--out", tmp_path / "a.h5")
    assert code == 2 and err.count("\n") == 1, err
    assert "--molecules crystal[0]: periodic (pbc T T T, cell 5 x 5 x 5 Å)" in err
    assert "the GemNet model is for isolated molecules" in err
    code, _, err = run_cli(capsys, *common, "--molecules", "C", "--box", "15", "--out", tmp_path / "b.h5")
    assert code == 2 and err.count("\n") == 1, err
    assert "--box: the GemNet model is for isolated molecules" in err
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def test_run_md_keeps_cells_for_a_potential_that_takes_them_and_refuses_them_otherwise(tmp_path):
    boxed = molecule("H2O", cell=[8.0] * 3, pbc=True)
    boxed.center()
    with pytest.raises(ValueError, match=r"systems\[0\] \(H2O\): periodic .* takes no cell"):
        run_md(MorseBondPotential([boxed]), [boxed], n_steps=2, path=tmp_path / "refused.h5", progress=False)
    morse = MorseBondPotential([boxed, molecule("H2O")])

    class CellTaking:
        def __init__(self) -> None:
            self.cells = None

        def set_cells(self, cells, pbc) -> None:
            self.cells = (cells, pbc)

        def __call__(self, positions, numbers, system_index):
            return morse(positions, numbers, system_index)

    potential = CellTaking()
    run_md(potential, [boxed, molecule("H2O")], n_steps=2, path=tmp_path / "md.h5", frame_interval=1, progress=False)
    assert np.allclose(potential.cells[0][0], boxed.cell.array) and potential.cells[1].tolist() == [
        [True] * 3,
        [False] * 3,
    ]
    assert read_system(tmp_path / "md.h5", 0)["pbc"].all()
    export_extxyz(tmp_path / "md.h5", 0, tmp_path / "boxed.extxyz")
    assert np.allclose(ase_read(tmp_path / "boxed.extxyz").cell.lengths(), 8.0)
