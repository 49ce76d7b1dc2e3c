"""The batched MD engine against physics (NVE, canonical statistics), ASE, and itself."""

import h5py
import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule
from ase.io import read

from gemrepro.analysis.stability import StabilityCriteria, detect_failure
from gemrepro.md import export_extxyz, kinetic_temperature, read_system, run_md
from gemrepro.md.integrators import evaluate, langevin_baoab_step, velocity_verlet_step
from gemrepro.md.potentials import ExplodingPotential, MorseBondPotential
from gemrepro.md.reference import ase_langevin_temperatures
from gemrepro.md.state import build_state, kinetic_energy

torch.set_num_threads(1)


def start_state(systems, potential, temperatures, seeds, friction=0.05, verlet=False):
    state = build_state(
        [a.positions for a in systems],
        [a.numbers for a in systems],
        [a.get_masses() for a in systems],
        temperatures,
        [friction] * len(systems),
        seeds,
        remove_com_dof=verlet,
    )
    energy, forces = evaluate(state, potential, state.positions)
    return state.replace(energy=energy, forces=forces)


def three_molecules():
    return [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4")]


def test_velocity_verlet_conserves_energy_without_drift():
    systems = [molecule("CH3CH2OH"), molecule("H2O")]
    potential = MorseBondPotential(systems)
    state = start_state(systems, potential, [300.0, 300.0], [1, 2], verlet=True)
    totals, kinetic = [], []
    for _ in range(2000):
        state = velocity_verlet_step(state, potential, 0.5)
        kinetic.append(kinetic_energy(state).numpy())
        totals.append(state.energy.numpy() + kinetic[-1])
    totals, mean_kinetic = np.array(totals), np.array(kinetic).mean(axis=0)
    assert np.all(np.isfinite(totals))
    # bounded shadow-Hamiltonian wobble: ~0.7 % of E_kin at 0.5 fs (it grows as dt^2: 2.5 % at 1 fs)
    excursion = np.abs(totals - totals[0]).max(axis=0)
    assert np.all(excursion < 0.015 * mean_kinetic), excursion / mean_kinetic
    # and no secular drift over 1 ps: first vs last quarter agree to 0.1 meV (measured: ~3 microeV)
    quarter = len(totals) // 4
    assert np.all(np.abs(totals[-quarter:].mean(axis=0) - totals[:quarter].mean(axis=0)) < 1e-4)
    # zero centre-of-mass momentum is conserved
    com = torch.zeros(2, 3, dtype=torch.float64).index_add_(0, state.system_index, state.momenta)
    assert torch.allclose(com, torch.zeros_like(com), atol=1e-10)


def test_langevin_kinetic_temperature_is_canonical():
    systems = [molecule("CH3CH2OH") for _ in range(32)]
    targets = [300.0] * 16 + [600.0] * 16
    potential = MorseBondPotential(systems)
    state = start_state(systems, potential, targets, list(range(32)), friction=0.1)
    samples = []
    for step in range(900):
        state = langevin_baoab_step(state, potential, 0.5)
        if step >= 200:
            samples.append(kinetic_temperature(state).numpy())
    samples = np.array(samples)  # (time, system)
    dof = 3 * 9
    # 16 systems x 700 steps, kinetic-energy correlation time ~10 steps: the mean is good to ~1 %
    for group, target in ((slice(0, 16), 300.0), (slice(16, 32), 600.0)):
        mean = samples[:, group].mean()
        assert abs(mean / target - 1) < 0.03, (target, mean)
        relative_variance = samples[:, group].var(axis=0).mean() / target**2
        assert relative_variance == pytest.approx(2 / dof, rel=0.2)  # chi-square with 3N dof


def test_a_system_in_a_batch_follows_the_same_trajectory_as_alone(tmp_path):
    systems = three_molecules()
    batch = run_md(
        MorseBondPotential(systems),
        systems,
        n_steps=150,
        path=tmp_path / "batch.h5",
        temperatures=[300.0, 600.0, 900.0],
        seeds=[11, 12, 13],
        frame_interval=10,
        progress=False,
    )
    alone = run_md(
        MorseBondPotential(systems[1:2]),
        systems[1:2],
        n_steps=150,
        path=tmp_path / "alone.h5",
        temperatures=600.0,
        seeds=[12],
        frame_interval=10,
        progress=False,
    )
    assert batch.n_frames == alone.n_frames == 16
    in_batch, by_itself = read_system(batch.path, 1), read_system(alone.path, 0)
    for key in ("positions", "forces", "energy", "temperature_kin"):
        np.testing.assert_array_equal(in_batch[key], by_itself[key], err_msg=key)
    # a different seed gives a different trajectory, so the comparison above has teeth
    other = run_md(
        MorseBondPotential(systems[1:2]),
        systems[1:2],
        n_steps=20,
        path=tmp_path / "other.h5",
        temperatures=600.0,
        seeds=[99],
        frame_interval=10,
        progress=False,
    )
    assert not np.allclose(read_system(other.path, 0)["positions"][1], by_itself["positions"][1])


def test_an_exploding_system_dies_alone_and_is_frozen(tmp_path):
    systems = three_molecules()
    base = MorseBondPotential(systems)
    common = dict(n_steps=40, temperatures=300.0, seeds=[1, 2, 3], frame_interval=1, progress=False)
    broken = run_md(ExplodingPotential(base, [1], push=20.0), systems, path=tmp_path / "broken.h5", **common)
    intact = run_md(base, systems, path=tmp_path / "intact.h5", **common)

    assert broken.alive == [True, False, True] and intact.alive == [True, True, True]
    record = broken.failures[1]
    assert record.rule == "bond" and 1 <= record.step < 40
    assert record.time_ps == pytest.approx(record.step * 0.5e-3)
    water = read_system(broken.path, 1)
    # the analysis of the frames on disk finds the same step and bond as the engine did online
    alive_frames = water["step"] <= record.step
    offline = detect_failure(
        water["positions"][alive_frames],
        water["numbers"],
        steps=water["step"][alive_frames],
        reference_positions=water["reference_positions"],
        criteria=StabilityCriteria(rules=("bond",)),
    )
    assert (offline.step, offline.rule, offline.atoms) == (record.step, record.rule, record.atoms)
    assert water["numbers"][list(record.atoms)].tolist() in ([8, 1], [1, 8])
    # frozen from the failure on; alive flags switch exactly there
    after = water["positions"][water["step"] >= record.step]
    assert len(after) > 1 and np.all(after == after[0])
    np.testing.assert_array_equal(water["alive"], water["step"] < record.step)
    # the other systems are bit for bit unaffected
    for s in (0, 2):
        np.testing.assert_array_equal(
            read_system(broken.path, s)["positions"], read_system(intact.path, s)["positions"]
        )

    n = export_extxyz(broken.path, 1, tmp_path / "water.extxyz")
    images = read(tmp_path / "water.extxyz", index=":")
    assert n == len(images) == record.step + 1
    np.testing.assert_allclose(images[-1].positions, after[0], atol=1e-7)  # extxyz keeps 8 decimals
    assert images[-1].get_potential_energy() == pytest.approx(water["energy"][record.step])

    strict = run_md(
        ExplodingPotential(base, [1], push=20.0),
        systems,
        path=tmp_path / "strict.h5",
        n_steps=3,
        criteria=StabilityCriteria(max_force=10.0),
        seeds=[1, 2, 3],
        progress=False,
    )
    assert strict.alive == [True, False, True]
    assert (strict.failures[1].rule, strict.failures[1].step) == ("force", 0)


class Killed(Exception):
    """Stands for a killed process."""


def run_killed_at(step: int, potential, systems, **settings) -> None:
    """``run_md`` that dies right after ``step`` (after the checkpoint of any earlier step)."""

    def kill(state):
        if state.step == step:
            raise Killed

    with pytest.raises(Killed):
        run_md(potential, systems, callback=kill, **settings)


def test_killed_run_resumes_without_lost_or_duplicated_frames(tmp_path):
    systems = [molecule("CH3CH2OH"), molecule("H2O")]
    potential = MorseBondPotential(systems)
    settings = dict(
        n_steps=60, temperatures=[300.0, 900.0], seeds=[5, 6], frame_interval=5, checkpoint_interval=20, progress=False
    )
    whole = run_md(potential, systems, path=tmp_path / "whole.h5", **settings)

    run_killed_at(47, potential, systems, path=tmp_path / "resumed.h5", **settings)
    with h5py.File(tmp_path / "resumed.h5", "r") as f:
        assert f["frames/step"][-1] == 45  # frames past the step-40 checkpoint are on disk
    resumed = run_md(potential, systems, path=tmp_path / "resumed.h5", **settings)
    assert resumed.resumed_from_step == 40 and resumed.step == 60

    with h5py.File(whole.path, "r") as a, h5py.File(resumed.path, "r") as b:
        np.testing.assert_array_equal(b["frames/step"][()], np.arange(0, 61, 5))
        for name in a["frames"]:
            np.testing.assert_array_equal(a["frames"][name][()], b["frames"][name][()], err_msg=name)
        for name in a["failure"]:
            np.testing.assert_array_equal(a["failure"][name][()], b["failure"][name][()], err_msg=name)
    # a finished run extends from its last checkpoint; a different run refuses the checkpoint
    longer = run_md(potential, systems, path=tmp_path / "resumed.h5", **{**settings, "n_steps": 70})
    assert longer.resumed_from_step == 60 and longer.n_frames == 15
    with pytest.raises(ValueError, match="different run"):
        run_md(potential, systems, path=tmp_path / "resumed.h5", **{**settings, "seeds": [7, 8]})


def test_a_run_off_the_frame_grid_stores_its_last_step_and_extends_onto_the_grid(tmp_path):
    systems = [molecule("CH3CH2OH"), molecule("H2O")]
    potential = MorseBondPotential(systems)
    settings = dict(temperatures=[300.0, 900.0], seeds=[5, 6], progress=False)
    # shorter than one frame interval: once only step 0 reached the file
    # the cached studies keep to the grid, as their stored runs were made: only step 0 of 7
    on_grid = run_md(potential, systems, n_steps=7, path=tmp_path / "grid.h5", frame_interval=100, **settings)
    assert on_grid.n_frames == 1 and read_system(on_grid.path, 1)["step"].tolist() == [0]
    settings["store_last"] = True  # what gemrepro md asks for
    short = run_md(potential, systems, n_steps=7, path=tmp_path / "short.h5", frame_interval=100, **settings)
    every = run_md(potential, systems, n_steps=7, path=tmp_path / "every.h5", frame_interval=1, **settings)
    stored, reference = read_system(short.path, 1), read_system(every.path, 1)
    assert short.n_frames == 2 and stored["step"].tolist() == [0, 7]
    assert stored["time_ps"][-1] == pytest.approx(7 * 0.5e-3)
    for key in ("positions", "forces", "energy", "temperature_kin"):
        np.testing.assert_array_equal(stored[key][-1], reference[key][7], err_msg=key)  # the state at step 7
    assert not np.array_equal(stored["positions"][-1], reference["positions"][6])

    # a 12-step run ends on an extra frame; extended to 20 it keeps to the grid, as a 20-step run does
    grid = dict(frame_interval=5, checkpoint_interval=1000, **settings)
    run_md(potential, systems, n_steps=12, path=tmp_path / "extended.h5", **grid)
    assert read_system(tmp_path / "extended.h5", 0)["step"].tolist() == [0, 5, 10, 12]
    run_killed_at(17, potential, systems, n_steps=20, path=tmp_path / "extended.h5", **grid)  # after frame 15
    extended = run_md(potential, systems, n_steps=20, path=tmp_path / "extended.h5", **grid)
    whole = run_md(potential, systems, n_steps=20, path=tmp_path / "whole.h5", **grid)
    assert extended.resumed_from_step == 12 and extended.n_frames == whole.n_frames == 5
    with h5py.File(whole.path, "r") as a, h5py.File(extended.path, "r") as b:
        np.testing.assert_array_equal(b["frames/step"][()], [0, 5, 10, 15, 20])
        for name in a["frames"]:
            np.testing.assert_array_equal(a["frames"][name][()], b["frames"][name][()], err_msg=name)


def test_ase_langevin_reference_gives_the_same_temperature_statistics():
    atoms = molecule("CH3CH2OH")
    potential = MorseBondPotential([atoms])
    ase_temperatures = ase_langevin_temperatures(
        atoms, potential, temperature_K=500.0, friction_per_fs=0.1, n_steps=1000, seed=3
    )[200:]
    systems = [atoms.copy() for _ in range(8)]
    batch_potential = MorseBondPotential(systems)
    state = start_state(systems, batch_potential, [500.0] * 8, list(range(8)), friction=0.1)
    ours = []
    for step in range(700):
        state = langevin_baoab_step(state, batch_potential, 0.5)
        if step >= 200:
            ours.append(kinetic_temperature(state).numpy())
    ours = np.array(ours)
    # 800 ASE samples with a correlation time of ~10 steps: the mean is good to ~2 %
    assert ase_temperatures.mean() == pytest.approx(500.0, rel=0.06)
    assert ours.mean() == pytest.approx(ase_temperatures.mean(), rel=0.06)
    assert ase_temperatures.std() / 500.0 == pytest.approx(np.sqrt(2 / 27), rel=0.3)
    assert ours.std(axis=0).mean() / 500.0 == pytest.approx(np.sqrt(2 / 27), rel=0.3)


def test_units_match_ase():
    atoms = molecule("H2O")
    state = start_state([atoms], MorseBondPotential([atoms]), [300.0], [0])
    atoms.set_momenta(state.momenta.numpy())
    assert kinetic_energy(state).item() == pytest.approx(atoms.get_kinetic_energy(), rel=1e-12)
    assert kinetic_temperature(state).item() == pytest.approx(atoms.get_temperature(), rel=1e-12)
    assert units.fs == pytest.approx(0.0982269, rel=1e-6)


def test_bad_input_gives_one_line_errors(tmp_path):
    systems = [molecule("H2O")]
    potential = MorseBondPotential(systems)
    with pytest.raises(ValueError, match="temperatures"):
        run_md(potential, systems, n_steps=1, path=tmp_path / "x.h5", temperatures=[300.0, 300.0], progress=False)
    with pytest.raises(ValueError, match="integrator"):
        run_md(potential, systems, n_steps=1, path=tmp_path / "x.h5", integrator="nose", progress=False)
    with pytest.raises(ValueError, match="potential"):
        run_md(MorseBondPotential([molecule("CH4")]), systems, n_steps=1, path=tmp_path / "y.h5", progress=False)


def test_nonfinite_forces_kill_only_their_system(tmp_path):
    systems = [molecule("H2O"), molecule("CH4")]
    base = MorseBondPotential(systems)

    def poisoned(positions, numbers, system_index):
        energy, forces = base(positions, numbers, system_index)
        forces = torch.where((system_index == 0)[:, None], torch.nan, forces)
        return energy, forces

    broken = run_md(
        poisoned, systems, n_steps=20, path=tmp_path / "nan.h5", seeds=[1, 2], frame_interval=10, progress=False
    )
    intact = run_md(base, systems, n_steps=20, path=tmp_path / "ok.h5", seeds=[1, 2], frame_interval=10, progress=False)
    assert broken.alive == [False, True]
    assert (broken.failures[0].rule, broken.failures[0].step, broken.failures[0].atoms) == ("nonfinite", 0, (0,))
    water = read_system(broken.path, 0)
    assert np.all(water["positions"] == water["reference_positions"])  # frozen at the start, never NaN
    np.testing.assert_array_equal(read_system(broken.path, 1)["positions"], read_system(intact.path, 1)["positions"])


def test_continue_after_failure_records_the_failure_and_runs_on(tmp_path):
    systems = three_molecules()
    base = MorseBondPotential(systems)
    common = dict(n_steps=40, temperatures=300.0, seeds=[1, 2, 3], frame_interval=2, progress=False)
    frozen = run_md(ExplodingPotential(base, [1], push=20.0), systems, path=tmp_path / "frozen.h5", **common)
    going = run_md(
        ExplodingPotential(base, [1], push=20.0),
        systems,
        path=tmp_path / "going.h5",
        after_failure="continue",
        **common,
    )
    intact = run_md(base, systems, path=tmp_path / "intact.h5", **common)

    # the same first failure, recorded once and never overwritten although the bond stays broken
    record = frozen.failures[1]
    assert record.rule == "bond" and 1 <= record.step < 40
    assert going.failures == frozen.failures and going.failures[0] is None and going.failures[2] is None
    assert going.alive == [True, True, True] and going.step == 40 and going.n_frames == intact.n_frames == 21
    water, stopped = read_system(going.path, 1), read_system(frozen.path, 1)
    assert (water["failure_step"], water["failure_rule"]) == (record.step, "bond")
    before = water["step"] < record.step
    np.testing.assert_array_equal(water["positions"][before], stopped["positions"][before])  # same run up to it
    after = water["positions"][~before]
    assert len(after) > 2 and np.all(np.abs(np.diff(after, axis=0)).max(axis=(1, 2)) > 0)  # it keeps moving
    assert water["alive"].all() and not stopped["alive"][~before].any()
    np.testing.assert_array_equal(water["failed"], ~before)
    np.testing.assert_array_equal(stopped["failed"], ~before)  # the same flags for the frozen run
    for s in (0, 2):  # the other systems are bit for bit those of the frozen and the intact run
        expected = read_system(intact.path, s)["positions"]
        np.testing.assert_array_equal(read_system(going.path, s)["positions"], expected)
        np.testing.assert_array_equal(read_system(frozen.path, s)["positions"], expected)
    with h5py.File(going.path, "r") as f, h5py.File(frozen.path, "r") as g:
        assert f.attrs["after_failure"] == "continue" and "after_failure" not in g.attrs
    # exported: every frame of a continued system, flagged from its failure on
    n = export_extxyz(going.path, 1, tmp_path / "water.extxyz")
    images = read(tmp_path / "water.extxyz", index=":")
    assert n == len(images) == going.n_frames and [a.info["failed"] for a in images] == (~before).tolist()

    # when every system fails, a frozen run stops early and a continued one runs to the end
    every = dict(common, n_steps=60)
    everything = ExplodingPotential(base, [0, 1, 2], push=20.0)
    all_frozen = run_md(everything, systems, path=tmp_path / "all_frozen.h5", **every)
    all_going = run_md(everything, systems, path=tmp_path / "all_going.h5", after_failure="continue", **every)
    assert all(f is not None for f in all_frozen.failures) and all_frozen.step < 60
    assert all_going.failures == all_frozen.failures and all_going.step == 60 and all_going.n_frames == 31


def test_continue_after_failure_freezes_nonfinite_systems(tmp_path):
    systems = [molecule("H2O"), molecule("CH4")]
    base = MorseBondPotential(systems)
    exploding = ExplodingPotential(base, [0], push=20.0)

    def blows_up(positions, numbers, system_index):
        """Water is torn apart, then its forces turn NaN once an atom is 2 Å from where it started."""
        energy, forces = exploding(positions, numbers, system_index)
        start = torch.as_tensor(np.concatenate([a.positions for a in systems]))
        far = (system_index == 0) & (torch.linalg.vector_norm(positions - start, dim=-1) > 2.0).any()
        return energy, torch.where(far[:, None], torch.nan, forces)

    common = dict(n_steps=200, seeds=[1, 2], frame_interval=5, progress=False, after_failure="continue")
    summary = run_md(blows_up, systems, path=tmp_path / "nan.h5", **common)
    intact = run_md(base, systems, path=tmp_path / "ok.h5", **{**common, "after_failure": "freeze"})
    assert summary.alive == [False, True] and summary.step == 200 and summary.n_frames == intact.n_frames
    assert summary.failures[0].rule == "bond"  # the first failure stays; the NaN later only froze the system
    water = read_system(summary.path, 0)
    dead = ~water["alive"]
    assert dead.any() and water["failed"][dead].all() and water["step"][dead][0] > summary.failures[0].step
    frozen = water["positions"][dead]
    assert np.all(frozen == frozen[0])  # frozen at the step its forces turned NaN (its geometry is finite)
    np.testing.assert_array_equal(read_system(summary.path, 1)["positions"], read_system(intact.path, 1)["positions"])

    # without the nonfinite rule, a NaN that is a system's first failure is still recorded as such
    def poisoned(positions, numbers, system_index):
        energy, forces = base(positions, numbers, system_index)
        return energy, torch.where((system_index == 0)[:, None], torch.nan, forces)

    bonds_only = run_md(
        poisoned,
        systems,
        path=tmp_path / "poisoned.h5",
        criteria=StabilityCriteria(rules=("bond",)),
        **{**common, "n_steps": 20},
    )
    assert bonds_only.alive == [False, True] and bonds_only.step == 20
    assert (bonds_only.failures[0].rule, bonds_only.failures[0].step) == ("nonfinite", 0)
    water = read_system(bonds_only.path, 0)
    assert np.all(water["positions"] == water["reference_positions"])  # frozen at the start, never NaN


def test_killed_continued_run_resumes_bit_for_bit(tmp_path):
    systems = [molecule("CH3CH2OH"), molecule("H2O")]
    potential = ExplodingPotential(MorseBondPotential(systems), [1], push=20.0)
    settings = dict(
        n_steps=60,
        temperatures=[300.0, 900.0],
        seeds=[5, 6],
        frame_interval=5,
        checkpoint_interval=20,
        progress=False,
        after_failure="continue",
    )
    whole = run_md(potential, systems, path=tmp_path / "whole.h5", **settings)
    assert whole.failures[1] is not None and whole.failures[1].step < 40 and whole.alive == [True, True]

    run_killed_at(47, potential, systems, path=tmp_path / "resumed.h5", **settings)
    resumed = run_md(potential, systems, path=tmp_path / "resumed.h5", **settings)
    assert resumed.resumed_from_step == 40 and resumed.step == 60 and resumed.failures == whole.failures
    with h5py.File(whole.path, "r") as a, h5py.File(resumed.path, "r") as b:
        np.testing.assert_array_equal(b["frames/step"][()], np.arange(0, 61, 5))
        for name in a["frames"]:
            np.testing.assert_array_equal(a["frames"][name][()], b["frames"][name][()], err_msg=name)
        for name in a["failure"]:
            np.testing.assert_array_equal(a["failure"][name][()], b["failure"][name][()], err_msg=name)
    # the policy is part of the run: a frozen run does not take over a continued run's checkpoint
    with pytest.raises(ValueError, match="different run"):
        run_md(potential, systems, path=tmp_path / "resumed.h5", **{**settings, "after_failure": "freeze"})


def test_after_failure_must_be_known(tmp_path):
    systems = [molecule("H2O")]
    with pytest.raises(ValueError, match="after_failure.*'drop'"):
        run_md(
            MorseBondPotential(systems),
            systems,
            n_steps=1,
            path=tmp_path / "x.h5",
            after_failure="drop",
            progress=False,
        )
