"""A full disk during a campaign: one OSError naming the file and the whole checkpoint, then an exact resume."""

from __future__ import annotations

import builtins
import errno
import io
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_queue import MoleculeMorse, campaign

from gemrepro.md import runner
from gemrepro.md.queue import CHECKPOINT_NAME, SUMMARY_NAME, run_queue, trajectory_path
from gemrepro.md.trajectory import TrajectoryWriter

torch.set_num_threads(1)

N_SYSTEMS = 6
OPTIONS = dict(n_steps=60, seeds=7, frame_interval=10, slots=2, checkpoint_interval=15, progress=False)
MESSAGE = re.compile(
    r"\(writing step (\d+)\); the checkpoint campaign\.ckpt of step (\d+) is whole: make room and rerun"
)


def run(folder: Path):
    systems, temperatures = campaign()
    return run_queue(
        MoleculeMorse(), systems[:N_SYSTEMS], folder=folder, temperatures=temperatures[:N_SYSTEMS], **OPTIONS
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(folder)
    return folder


def saved_step(folder: Path) -> int:
    """The batch step of the campaign checkpoint on disk (which must load)."""
    return int(torch.load(folder / CHECKPOINT_NAME, map_location="cpu", weights_only=True)["batch_steps"])


def fails_in_one_line(folder: Path, name: str | None = None) -> tuple[OSError, int, int]:
    """Run into the simulated full disk: one ENOSPC naming the file, the checkpoint left whole, no temporary."""
    with pytest.raises(OSError) as caught:
        run(folder)
    error = caught.value
    assert type(error) is OSError and error.errno == errno.ENOSPC, repr(error)
    assert name is None or Path(error.filename).name == name, error.filename
    assert "\n" not in str(error)
    match = MESSAGE.search(error.strerror)
    assert match, error.strerror
    writing, whole = int(match[1]), int(match[2])
    assert whole == saved_step(folder) <= writing
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == []
    assert not (folder / SUMMARY_NAME).exists()
    return error, writing, whole


def resumes_to_the_uninterrupted_run(folder: Path, uninterrupted: Path, from_step: int) -> None:
    resumed = run(folder)
    assert resumed.resumed_from_step == from_step
    reference = run(uninterrupted)  # resumed from its finished checkpoint: the same summary
    assert resumed.steps == reference.steps and resumed.batch_steps == reference.batch_steps
    for k in range(N_SYSTEMS):
        with h5py.File(trajectory_path(folder, k)) as a, h5py.File(trajectory_path(uninterrupted, k)) as b:
            for group in ("systems", "frames", "failure"):
                for name in b[group]:
                    np.testing.assert_array_equal(a[group][name][()], b[group][name][()], err_msg=f"{k} {name}")
    assert (folder / SUMMARY_NAME).read_text() == (uninterrupted / SUMMARY_NAME).read_text()


@pytest.mark.parametrize("failing_call", [1, 9])
def test_a_full_disk_while_writing_a_frame_is_one_error_and_the_campaign_resumes(
    tmp_path, monkeypatch, uninterrupted, failing_call
):
    """The 1st frame (step-0 frame of the first trajectory: only the empty campaign is saved) or a later one;
    closing the files fails too, and that second error does not mask the first."""
    append, close = TrajectoryWriter.append, TrajectoryWriter.close
    calls = []

    def full_disk(self, state, dt_fs):
        calls.append(self.path)
        if len(calls) >= failing_call:
            raise OSError(errno.ENOSPC)  # bare, as h5py may give it
        append(self, state, dt_fs)

    def close_fails_after_a_full_disk(self):
        close(self)
        if len(calls) >= failing_call:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(TrajectoryWriter, "append", full_disk)
    monkeypatch.setattr(TrajectoryWriter, "close", close_fails_after_a_full_disk)
    folder = tmp_path / "run"
    error, _, whole = fails_in_one_line(folder)
    assert Path(error.filename) == calls[-1] and re.fullmatch(r"trajectory_\d{5}\.h5", calls[-1].name)
    assert (whole == 0) == (failing_call == 1)
    monkeypatch.undo()
    resumes_to_the_uninterrupted_run(folder, uninterrupted, whole)


def test_a_full_disk_while_writing_the_checkpoint_keeps_the_last_one_whole(tmp_path, monkeypatch, uninterrupted):
    """torch.save's RuntimeError over a part-written file is the ENOSPC it wraps; the old checkpoint stays."""

    class FullDisk(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[:16])
            raise OSError(errno.ENOSPC, "No space left on device")

    opened = []

    def full_at_the_fourth_checkpoint(path, mode="r", *args, **kwargs):
        opened.append(path)  # the empty campaign, step 0 after the first fill, step 15, then step 30
        if len(opened) < 4:
            return builtins.open(path, mode, *args, **kwargs)
        return FullDisk(path, mode)

    monkeypatch.setattr(runner, "open", full_at_the_fourth_checkpoint, raising=False)
    folder = tmp_path / "run"
    error, writing, whole = fails_in_one_line(folder, CHECKPOINT_NAME)
    assert error.strerror.startswith("No space left on device (checkpoint not written) (writing step 30)")
    assert (writing, whole) == (30, 15)
    monkeypatch.undo()
    resumes_to_the_uninterrupted_run(folder, uninterrupted, 15)


def test_a_full_disk_while_writing_the_summary_keeps_the_finished_checkpoint(tmp_path, monkeypatch, uninterrupted):
    write_text = Path.write_text

    def full_disk(self, data, *args, **kwargs):
        if self.name.startswith(f".{SUMMARY_NAME}"):
            write_text(self, data[:10], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    folder = tmp_path / "run"
    _, writing, whole = fails_in_one_line(folder, SUMMARY_NAME)
    assert writing == whole > 0  # every trajectory ended and was saved
    monkeypatch.undo()
    resumes_to_the_uninterrupted_run(folder, uninterrupted, whole)
