"""A campaign on slots that are refilled: same trajectories as a plain run, full slots, exact resume."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from gemrepro.cli import main as cli_main
from gemrepro.md import read_system, run_md
from gemrepro.md.potentials import ExplodingPotential, MorseBondPotential
from gemrepro.md.queue import CHECKPOINT_NAME, SUMMARY_NAME, run_queue, trajectory_path
from gemrepro.md.state import MDState, build_state, concatenate_states, select_systems

torch.set_num_threads(1)

TEMPLATES = {name: molecule(name) for name in ("H2O", "CH4", "CH3OH", "NH3")}
EXPLODING = {"CH4"}  # methane is torn apart within a few dozen steps; the others live


class MoleculeMorse:
    """Morse bonds for whichever template molecules make up the batch, in whatever slots.

    :class:`MorseBondPotential` holds the topology of a fixed batch; a campaign changes the batch
    as trajectories come and go, so this test potential looks each system up by its atomic
    numbers and evaluates it on its own. Methane is pushed apart (``ExplodingPotential``).
    """

    def __init__(self) -> None:
        self.by_numbers = {}
        for name, atoms in TEMPLATES.items():
            base = MorseBondPotential([atoms])
            self.by_numbers[tuple(atoms.numbers)] = (
                ExplodingPotential(base, [0], push=8.0) if name in EXPLODING else base
            )
        self.calls = 0

    def __call__(self, positions, numbers, system_index):
        self.calls += 1
        n_systems = int(system_index[-1]) + 1
        energy = positions.new_zeros(n_systems)
        forces = torch.zeros_like(positions)
        for s in range(n_systems):
            atoms = torch.nonzero(system_index == s).flatten()
            potential = self.by_numbers[tuple(numbers[atoms].tolist())]
            e, f = potential(positions[atoms], numbers[atoms], torch.zeros_like(atoms))
            energy[s], forces[atoms] = e[0], f
        return energy, forces


def campaign() -> tuple[list[Atoms], list[float]]:
    """Ten trajectories, methane (fails early) in four of them, at 300 and 600 K."""
    names = ["H2O", "CH4", "CH3OH", "CH4", "NH3", "H2O", "CH4", "CH3OH", "CH4", "NH3"]
    return [TEMPLATES[n].copy() for n in names], [300.0 if k % 2 else 600.0 for k in range(len(names))]


SETTINGS = dict(n_steps=120, seeds=7, frame_interval=10, progress=False)


@pytest.fixture(scope="module")
def plain_and_queued(tmp_path_factory):
    folder = tmp_path_factory.mktemp("queue")
    systems, temperatures = campaign()
    plain = run_md(MoleculeMorse(), systems, path=folder / "plain.h5", temperatures=temperatures, **SETTINGS)
    queued = run_queue(
        MoleculeMorse(),
        systems,
        folder=folder / "refill",
        slots=3,
        temperatures=temperatures,
        checkpoint_interval=15,
        **SETTINGS,
    )
    waves = run_queue(
        MoleculeMorse(),
        systems,
        folder=folder / "waves",
        slots=3,
        temperatures=temperatures,
        refill=False,
        checkpoint_interval=15,
        **SETTINGS,
    )
    return folder, plain, queued, waves


def test_every_trajectory_is_the_one_a_plain_batched_run_gives(plain_and_queued):
    folder, plain, queued, _ = plain_and_queued
    n_failed = sum(f is not None for f in plain.failures)
    assert n_failed == 4 and all(f.rule == "bond" for f in plain.failures if f is not None)
    for k, (ours, theirs) in enumerate(zip(queued.failures, plain.failures, strict=True)):
        assert (ours is None) == (theirs is None), k
        if ours is not None:
            assert (ours.step, ours.rule, ours.atoms) == (theirs.step, theirs.rule, theirs.atoms), k
        mine = read_system(trajectory_path(folder / "refill", k), 0)
        reference = read_system(folder / "plain.h5", k)
        last = ours.step if ours is not None else SETTINGS["n_steps"]
        expected = sorted(set(range(0, last + 1, SETTINGS["frame_interval"])) | {last})
        assert mine["step"].tolist() == expected, k  # every frame of its life, its last step, nothing after
        common = [s for s in expected if s in reference["step"].tolist() and (ours is None or s < ours.step)]
        rows = [reference["step"].tolist().index(s) for s in common]
        np.testing.assert_allclose(mine["positions"][: len(common)], reference["positions"][rows], rtol=0, atol=1e-9)
        np.testing.assert_allclose(mine["energy"][: len(common)], reference["energy"][rows], rtol=0, atol=1e-9)
        assert mine["failure_step"] == (-1 if ours is None else ours.step)


def test_refilled_slots_do_only_useful_work_and_waves_do_not(plain_and_queued):
    _, plain, queued, waves = plain_and_queued
    lived = [f.step if f is not None else SETTINGS["n_steps"] for f in plain.failures]
    assert queued.steps == waves.steps == lived
    assert queued.system_steps == waves.system_steps == sum(lived)
    # refilled: every evaluated system is a living trajectory; waves keep failed methanes in the batch
    assert queued.evaluated_system_steps == sum(lived)
    assert queued.utilisation == 1.0
    assert waves.utilisation < 0.9
    assert queued.batch_steps < waves.batch_steps


def test_the_summary_file_lists_every_trajectory(plain_and_queued):
    folder, _, queued, _ = plain_and_queued
    summary = json.loads((folder / "refill" / SUMMARY_NAME).read_text())
    assert summary["n_trajectories"] == 10 and summary["refill"] is True
    assert [t["steps"] for t in summary["trajectories"]] == queued.steps
    assert [t["failure"] is None for t in summary["trajectories"]] == [f is None for f in queued.failures]


class Crash(RuntimeError):
    pass


class CrashingMorse(MoleculeMorse):
    def __init__(self, after_calls: int) -> None:
        super().__init__()
        self.after_calls = after_calls

    def __call__(self, positions, numbers, system_index):
        if self.calls == self.after_calls:
            raise Crash(f"killed at call {self.calls}")
        return super().__call__(positions, numbers, system_index)


@pytest.mark.parametrize("refill", [True, False])
def test_a_campaign_killed_mid_run_resumes_bit_for_bit(tmp_path, plain_and_queued, refill):
    """Killed between checkpoints, after slots were refilled: the files equal the uninterrupted run's."""
    folder, *_ = plain_and_queued
    systems, temperatures = campaign()
    options = dict(slots=3, temperatures=temperatures, checkpoint_interval=15, refill=refill, **SETTINGS)
    with pytest.raises(Crash):
        run_queue(CrashingMorse(after_calls=60), systems, folder=tmp_path / "run", **options)
    assert (tmp_path / "run" / CHECKPOINT_NAME).is_file() and not (tmp_path / "run" / SUMMARY_NAME).exists()
    resumed = run_queue(MoleculeMorse(), systems, folder=tmp_path / "run", **options)
    assert resumed.resumed_from_step > 0 and resumed.resumed_from_step % 15 == 0
    uninterrupted = folder / ("refill" if refill else "waves")
    for k in range(len(systems)):
        with h5py.File(trajectory_path(tmp_path / "run", k)) as a, h5py.File(trajectory_path(uninterrupted, k)) as b:
            for group in ("systems", "frames", "failure"):
                for name in b[group]:
                    np.testing.assert_array_equal(a[group][name][()], b[group][name][()], err_msg=f"{k} {name}")
    again = run_queue(MoleculeMorse(), systems, folder=tmp_path / "run", **options)
    assert again.steps == resumed.steps and again.batch_steps == resumed.batch_steps


def test_select_and_concatenate_are_inverse():
    systems = [TEMPLATES[n] for n in ("H2O", "CH4", "CH3OH")]
    state = build_state(
        [a.positions for a in systems],
        [a.numbers for a in systems],
        [a.get_masses() for a in systems],
        [300.0] * 3,
        [0.01] * 3,
        [1, 2, 3],
        remove_com_dof=False,
    )
    parts = [select_systems(state, [s]) for s in (2, 0, 1)]
    assert [p.n_systems for p in parts] == [1, 1, 1] and len(parts[0].positions) == 6
    back = concatenate_states([parts[1], parts[2], parts[0]], step=state.step)
    for name, tensor in state.tensors().items():
        assert torch.equal(getattr(back, name), tensor), name
    assert back.generators == state.generators
    assert isinstance(back, MDState)


def test_bad_campaign_input_is_refused_in_one_line(tmp_path):
    systems, temperatures = campaign()
    with pytest.raises(ValueError, match="slots: expected a positive integer"):
        run_queue(MoleculeMorse(), systems, folder=tmp_path / "a", slots=0, n_steps=5)
    with pytest.raises(ValueError, match=r"temperatures: expected one finite non-negative value or 10"):
        run_queue(MoleculeMorse(), systems, folder=tmp_path / "a", slots=2, n_steps=5, temperatures=[300.0])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        run_queue(MoleculeMorse(), systems, folder=tmp_path / "file", slots=2, n_steps=5)
    run_queue(MoleculeMorse(), systems[:2], folder=tmp_path / "b", slots=2, n_steps=5, progress=False)
    with pytest.raises(ValueError, match="belongs to a different campaign"):
        run_queue(MoleculeMorse(), systems[:2], folder=tmp_path / "b", slots=2, n_steps=6, progress=False)
    (tmp_path / "b" / CHECKPOINT_NAME).unlink()
    before = trajectory_path(tmp_path / "b", 0).read_bytes()
    with pytest.raises(ValueError, match="holds 2 trajectory files but no campaign.ckpt"):
        run_queue(MoleculeMorse(), systems[:2], folder=tmp_path / "b", slots=2, n_steps=6, progress=False)
    assert trajectory_path(tmp_path / "b", 0).read_bytes() == before  # not overwritten
    replaced = run_queue(
        MoleculeMorse(), systems[:2], folder=tmp_path / "b", slots=2, n_steps=6, overwrite=True, progress=False
    )
    assert replaced.steps == [6, 6]


def test_trajectories_of_no_steps_or_failing_at_once_never_enter_the_batch(tmp_path):
    systems, _ = campaign()
    summary = run_queue(MoleculeMorse(), systems[:3], folder=tmp_path / "zero", slots=2, n_steps=0, progress=False)
    assert summary.steps == [0, 0, 0] and summary.batch_steps == 0
    assert [len(read_system(p, 0)["step"]) for p in summary.paths] == [1, 1, 1]


def test_bench_md_against_no_refill_reports_both_modes_on_the_same_campaign(capsys):
    """Without forces (a random preset's read-out is zeroed) molecules come apart at different steps, hot ones
    first, so fixed waves idle and refilled slots do not."""
    assert (
        cli_main(
            [
                "bench",
                "md",
                "--against",
                "no-refill",
                "--preset",
                "tiny",
                "--systems",
                "6",
                "--slots",
                "2",
                "--steps",
                "40",
                "--repeats",
                "2",
                "--threads",
                "1",
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n_trajectories"] == 6 and result["slots"] == 2 and len(result["ratios"]) == 2
    assert result["refill_utilisation"] == 1.0 and result["waves_utilisation"] < 0.95
    assert result["failed_fraction"] > 0.5 and result["median_steps_lived"] < 40
    assert abs(result["refill_system_steps"] - result["waves_system_steps"]) <= 6
    assert result["refill_steps_per_s"] > 0 and result["waves_steps_per_s"] > 0
    assert np.isfinite(result["ratio"]) and result["ratio_min"] <= result["ratio"] <= result["ratio_max"]


def test_bench_md_against_no_refill_refuses_more_slots_than_trajectories(capsys):
    assert cli_main(["bench", "md", "--against", "no-refill", "--systems", "3", "--slots", "4"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "gemrepro bench: error: --slots: expected a number of batch slots in [1, --systems=3], got 4"
