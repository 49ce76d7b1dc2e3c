"""Files that are not what a command expects get one line naming the file, never a traceback."""

import builtins
import errno
import io

import h5py
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from gemrepro.cli import main as cli_main
from gemrepro.md import runner
from gemrepro.md.runner import load_checkpoint
from gemrepro.md.trajectory import TrajectoryWriter
from gemrepro.model import GemNetQ, GemNetT, save_model

torch.set_num_threads(1)


def one_line_error(capsys, *argv) -> str:
    code = cli_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "weights_only" not in err, err
    return err


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    save_model(GemNetT.from_preset("tiny"), tmp_path / "t.pt")
    payload = torch.load(tmp_path / "t.pt", weights_only=True)
    payload["model_class"] = "gemrepro.model.gemnet:GemNetQ"  # a Q network and config over T weights
    payload["model_config"] = GemNetQ.from_preset("tiny").config.to_dict()
    torch.save(payload, tmp_path / "wrong_variant.pt")
    (tmp_path / "garbage.pt").write_text("not a model\n")
    (tmp_path / "a_file").write_text("x\n")
    with h5py.File(tmp_path / "dataset.h5", "w") as handle:
        handle.create_dataset("energies", data=[1.0, 2.0])
    return tmp_path


def test_a_checkpoint_of_the_wrong_variant_is_one_line(files, capsys):
    err = one_line_error(
        capsys,
        "md",
        "--model",
        files / "wrong_variant.pt",
        "--molecules",
        "O",
        "--time-ps",
        "0.001",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        files / "md.h5",
    )
    assert "wrong_variant.pt': its weights do not fit the GemNet-Q its config describes" in err


def test_a_garbage_model_file_is_named_without_torchs_advice(files, capsys):
    err = one_line_error(
        capsys,
        "md",
        "--model",
        files / "garbage.pt",
        "--molecules",
        "O",
        "--time-ps",
        "0.001",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        files / "md.h5",
    )
    assert "garbage.pt' is not a gemrepro model file" in err


def test_train_init_of_a_garbage_file_is_one_line(files, capsys, tmp_path):
    frames = []
    for k in range(6):
        atoms = molecule("H2O")
        atoms.positions[0, 0] += 0.01 * k
        atoms.calc = SinglePointCalculator(atoms, energy=-2000.0 - k, forces=0 * atoms.positions)
        frames.append(atoms)
    write(tmp_path / "water.extxyz", frames)
    err = one_line_error(
        capsys,
        "train",
        "--data",
        tmp_path / "water.extxyz",
        "--energy-key",
        "energy",
        "--init",
        files / "garbage.pt",
        "--max-steps",
        "1",
        "--quiet",
        "--out",
        files / "run",
    )
    assert "garbage.pt' is not a gemrepro model file" in err


def test_md_export_of_a_file_that_is_not_a_trajectory(files, capsys):
    err = one_line_error(capsys, "md-export", files / "dataset.h5", "--system", "0", "--out", files / "x.extxyz")
    assert "dataset.h5: an HDF5 file but not a gemrepro md trajectory" in err
    err = one_line_error(capsys, "md-export", files / "garbage.pt", "--system", "0", "--out", files / "x.extxyz")
    assert "garbage.pt: not an HDF5 file; expected a trajectory written by gemrepro md" in err
    assert not (files / "x.extxyz").exists()


def test_gemrepro_data_that_is_a_file(files, capsys, monkeypatch):
    monkeypatch.setenv("GEMREPRO_DATA", str(files / "a_file"))
    err = one_line_error(capsys, "campaign", "--scale", "tiny", "--dry-run")
    assert f"GEMREPRO_DATA={files / 'a_file'}: is a file; expected a folder" in err


@pytest.mark.parametrize("command", ["md", "stress"])
def test_an_output_path_that_cannot_be_written_is_one_line(files, capsys, command):
    out = files / "a_file" / ("md.h5" if command == "md" else "audit")  # a path below a file: no folder can exist
    argv = [
        command,
        "--model",
        files / "t.pt",
        "--molecules",
        "O",
        "--time-ps",
        "0.001",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out,
    ]
    if command == "stress":
        argv += ["--reference", "none", "--temperatures", "300", "--seeds", "1"]
    err = one_line_error(capsys, *argv)
    assert "a_file" in err and "expected a folder there" in err


def test_md_export_keeps_an_existing_file(files, capsys):
    (files / "kept.extxyz").write_text("someone's dataset\n")
    err = one_line_error(capsys, "md-export", files / "dataset.h5", "--system", "0", "--out", files / "kept.extxyz")
    assert "kept.extxyz: exists; pass --overwrite" in err
    assert (files / "kept.extxyz").read_text() == "someone's dataset\n"


def test_stress_keeps_a_finished_audit(files, capsys):
    audit = files / "audit"
    audit.mkdir()
    (audit / "report.html").write_text("<p>last week's audit</p>\n")
    argv = ["stress", "--model", files / "t.pt", "--molecules", "O", "--time-ps", "0.001", "--device", "cpu"]
    argv += ["--quiet", "--reference", "none", "--temperatures", "300", "--seeds", "1", "--out", audit]
    err = one_line_error(capsys, *argv)
    assert "holds a finished audit (report.html); pass --overwrite" in err
    assert (audit / "report.html").read_text() == "<p>last week's audit</p>\n"
    assert not (audit / "trajectory.h5").exists()  # refused before any MD
    code = cli_main([str(a) for a in [*argv, "--overwrite", "--no-field-scores"]])
    assert code == 0, capsys.readouterr().err
    assert "last week" not in (audit / "report.html").read_text()


# ----------------------------------------------------------------------------- a full disk during gemrepro md
def md_argv(files, *extra) -> list:
    """Six steps of tiny-GemNet MD of water, a frame and a checkpoint every two."""
    return [
        "md",
        "--model",
        files / "t.pt",
        "--molecules",
        "O",
        "--time-ps",
        "0.003",
        "--frame-interval",
        "2",
        "--checkpoint-interval",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        files / "md.h5",
        *extra,
    ]


def resumes_to_the_end(files, capsys, from_step: int) -> None:
    """The checkpoint left behind loads, and the same command resumes from it and finishes."""
    state, _, _ = load_checkpoint(files / "md.h5.ckpt", "cpu")
    assert state.step == from_step
    assert cli_main([str(a) for a in md_argv(files)]) == 0
    out = capsys.readouterr().out
    assert f"resumed from step {from_step}" in out and "6 steps" in out
    with h5py.File(files / "md.h5", "r") as handle:
        assert handle["frames/step"][()].tolist() == [0, 2, 4, 6]


def test_a_full_disk_while_writing_a_frame_is_one_line_and_the_run_resumes(files, capsys, monkeypatch):
    append = TrajectoryWriter.append

    def full_disk_after_step_2(self, state, dt_fs):
        if state.step > 2:
            raise OSError(errno.ENOSPC)  # what a write on a full disk raises, bare as h5py may give it
        append(self, state, dt_fs)

    monkeypatch.setattr(TrajectoryWriter, "append", full_disk_after_step_2)
    err = one_line_error(capsys, *md_argv(files))
    assert "md.h5: No space left on device (writing step 4)" in err
    assert "md.h5.ckpt of step 2 is whole" in err and "rerun the same command to resume" in err
    monkeypatch.undo()
    resumes_to_the_end(files, capsys, from_step=2)


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_last_one_whole(files, capsys, monkeypatch):
    """torch.save turns the OSError of a failed write into a RuntimeError; neither may leave a
    traceback, a truncated checkpoint or a temporary file behind."""

    class FullDisk(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[:16])  # a part gets out, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    opened = []

    def open_once_then_full(path, mode="r", *args, **kwargs):
        opened.append(path)
        if len(opened) == 1:  # the checkpoint of step 0 is written whole
            return builtins.open(path, mode, *args, **kwargs)
        return FullDisk(path, mode)

    monkeypatch.setattr(runner, "open", open_once_then_full, raising=False)
    err = one_line_error(capsys, *md_argv(files))
    assert "md.h5.ckpt: No space left on device (checkpoint not written)" in err
    assert "of step 0 is whole" in err
    assert sorted(p.name for p in files.iterdir() if p.name.startswith(".md.h5")) == []  # no temporary left
    monkeypatch.undo()
    resumes_to_the_end(files, capsys, from_step=0)


def test_a_full_disk_during_a_campaign_on_refilled_slots_is_one_line(files, capsys, monkeypatch):
    """``gemrepro stress --slots`` runs :func:`gemrepro.md.queue.run_queue`: its full disk is one line too."""

    def full_disk(self, state, dt_fs):
        raise OSError(errno.ENOSPC)

    monkeypatch.setattr(TrajectoryWriter, "append", full_disk)
    argv = ["stress", "--model", files / "t.pt", "--molecules", "O", "--time-ps", "0.001", "--device", "cpu"]
    argv += ["--quiet", "--reference", "none", "--temperatures", "300", "--seeds", "1", "--no-field-scores"]
    err = one_line_error(capsys, *argv, "--slots", "1", "--out", files / "audit")
    assert "trajectory_00000.h5: No space left on device (writing step 0)" in err
    assert "campaign.ckpt of step 0 is whole" in err
