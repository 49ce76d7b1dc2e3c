"""GemNet in the batched MD engine: the adapter against the ASE calculator, the CLI, the profile of a force call."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet

from gemrepro.cli import main as cli_main
from gemrepro.data import read as read_dataset
from gemrepro.integrations import GemNetCalculator
from gemrepro.integrations.potential import GemNetPotential, potential_from_checkpoint
from gemrepro.md import read_system, run_md
from gemrepro.md.integrators import evaluate, velocity_verlet_step
from gemrepro.md.state import batch_inputs as state_batch_inputs
from gemrepro.md.state import build_state
from gemrepro.model import EnergyShift, GemNetT, save_model

torch.set_num_threads(1)

REFERENCES = {1: -13.6, 6: -1029.8, 8: -2041.3}  # eV, of the size of real free-atom energies


def tiny_gemnet(dtype=torch.float64) -> GemNetT:
    torch.manual_seed(0)
    return GemNetT.from_preset("tiny").to(dtype)


def batch_inputs(systems):
    return state_batch_inputs([a.positions for a in systems], [a.numbers for a in systems])


def test_batched_potential_matches_the_ase_calculator_system_by_system():
    systems = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4")]
    model = tiny_gemnet()
    potential = GemNetPotential(model, device="cpu")
    energy, forces = potential(*batch_inputs(systems))
    assert energy.shape == (3,) and forces.shape == (17, 3) and energy.dtype == torch.float64
    calculator = GemNetCalculator(model, device="cpu")
    start = 0
    for s, atoms in enumerate(systems):
        atoms = atoms.copy()
        atoms.calc = calculator
        assert energy[s].item() == pytest.approx(atoms.get_potential_energy(), rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(
            forces[start : start + len(atoms)].numpy(), atoms.get_forces(), rtol=1e-10, atol=1e-12
        )
        start += len(atoms)
    assert forces.abs().max() > 1e-3  # a random model: forces are not trivially zero

    # an EnergyShift adds its per-element references to the energies and leaves the forces alone
    shifted = GemNetPotential(EnergyShift(model, REFERENCES), device="cpu")
    shifted_energy, shifted_forces = shifted(*batch_inputs(systems))
    offsets = [sum(REFERENCES[z] for z in a.numbers) for a in systems]
    np.testing.assert_allclose(shifted_energy.numpy(), energy.numpy() + offsets, rtol=0, atol=1e-9)
    torch.testing.assert_close(shifted_forces, forces, rtol=0, atol=0)

    # a float32 model still returns the state's dtype, and the references keep float64 precision
    single = GemNetPotential(EnergyShift(tiny_gemnet(torch.float32), REFERENCES), device="cpu")
    e32, f32 = single(*batch_inputs(systems))
    assert e32.dtype == f32.dtype == torch.float64
    np.testing.assert_allclose(e32.numpy(), shifted_energy.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(f32.numpy(), forces.numpy(), rtol=1e-3, atol=1e-4)


def test_velocity_verlet_with_gemnet_follows_ase_step_for_step():
    systems = [molecule("CH3CH2OH"), molecule("H2O")]
    model = tiny_gemnet()
    potential = GemNetPotential(model, device="cpu")
    state = build_state(
        [a.positions for a in systems],
        [a.numbers for a in systems],
        [a.get_masses() for a in systems],
        [300.0, 300.0],
        [0.0, 0.0],
        [1, 2],
        remove_com_dof=True,
    )
    energy, forces = evaluate(state, potential, state.positions)
    state = state.replace(energy=energy, forces=forces)
    start_momenta = state.momenta.clone()
    for _ in range(12):
        state = velocity_verlet_step(state, potential, 0.25)

    calculator = GemNetCalculator(model, device="cpu")
    start = 0
    for s, atoms in enumerate(systems):
        n = len(atoms)
        atoms = atoms.copy()
        atoms.calc = calculator
        atoms.set_momenta(start_momenta[start : start + n].numpy())
        VelocityVerlet(atoms, timestep=0.25 * units.fs).run(12)
        moved = np.abs(atoms.positions - systems[s].positions).max()
        assert moved > 1e-3
        np.testing.assert_allclose(state.positions[start : start + n].numpy(), atoms.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(state.momenta[start : start + n].numpy(), atoms.get_momenta(), rtol=0, atol=1e-9)
        assert state.energy[s].item() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        start += n


def test_batched_langevin_with_gemnet_stores_the_model_energies_and_forces(tmp_path):
    systems = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4")]
    potential = GemNetPotential(tiny_gemnet(), device="cpu")
    summary = run_md(
        potential,
        systems,
        n_steps=10,
        path=tmp_path / "md.h5",
        temperatures=[300.0, 600.0, 1200.0],
        seeds=[1, 2, 3],
        frame_interval=5,
        progress=False,
    )
    assert summary.n_frames == 3 and summary.step == 10
    for s in range(3):
        frames = read_system(summary.path, s)
        np.testing.assert_array_equal(frames["step"], [0, 5, 10])
        assert not np.allclose(frames["positions"][2], frames["positions"][0])
        for k in range(3):  # each stored frame holds what the model says about that geometry
            if frames["alive"][k]:
                atoms = systems[s].copy()
                atoms.positions = frames["positions"][k]
                atoms.calc = GemNetCalculator(potential.model, device="cpu")
                assert frames["energy"][k] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
                np.testing.assert_allclose(frames["forces"][k], atoms.get_forces(), atol=1e-9)


def test_potential_from_checkpoint_reads_trained_and_bare_model_files(tmp_path):
    model = tiny_gemnet()
    save_model(model, tmp_path / "bare.pt")
    save_model(EnergyShift(model, REFERENCES), tmp_path / "trained.pt")
    systems = [molecule("H2O"), molecule("CH4")]
    inputs = batch_inputs(systems)
    energy, forces = GemNetPotential(model, device="cpu")(*inputs)
    bare_energy, bare_forces = potential_from_checkpoint(tmp_path / "bare.pt", device="cpu")(*inputs)
    trained_energy, trained_forces = potential_from_checkpoint(tmp_path / "trained.pt", device="cpu")(*inputs)
    torch.testing.assert_close(bare_energy, energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(bare_forces, forces, rtol=0, atol=1e-12)
    offsets = torch.tensor([sum(REFERENCES[z] for z in a.numbers) for a in systems], dtype=torch.float64)
    torch.testing.assert_close(trained_energy, energy + offsets, rtol=0, atol=1e-9)
    torch.testing.assert_close(trained_forces, forces, rtol=0, atol=1e-12)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        potential_from_checkpoint(tmp_path / "missing.pt", device="cpu")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(ValueError, match="junk.pt"):
        potential_from_checkpoint(tmp_path / "junk.pt", device="cpu")


def run_cli(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_md_cli_runs_resumes_and_exports(tmp_path, capsys):
    torch.manual_seed(0)
    save_model(EnergyShift(GemNetT.from_preset("tiny"), REFERENCES), tmp_path / "model.pt")
    common = [
        "md",
        "--model",
        tmp_path / "model.pt",
        "--molecules",
        "ethanol",
        "O",
        "--temperatures",
        "300",
        "900",
        "--dt-fs",
        "0.5",
        "--frame-interval",
        "4",
        "--checkpoint-interval",
        "4",
        "--device",
        "cpu",
        "--quiet",
        "--json",
    ]
    code, out, _ = run_cli(capsys, *common, "--time-ps", "0.006", "--out", tmp_path / "md.h5")
    first = json.loads(out)
    assert code == 0 and first["step"] == 12 and first["resumed_from_step"] is None
    assert [(r["molecule"], r["temperature_K"]) for r in first["systems"]] == [
        ("ethanol", 300.0),
        ("ethanol", 900.0),
        ("O", 300.0),
        ("O", 900.0),
    ]
    # the same command with a longer time continues the file; no frame is written twice
    code, out, _ = run_cli(capsys, *common, "--time-ps", "0.01", "--out", tmp_path / "md.h5")
    resumed = json.loads(out)
    assert code == 0 and resumed["resumed_from_step"] == 12 and resumed["step"] == 20 and resumed["n_frames"] == 6
    code, out, _ = run_cli(capsys, *common, "--time-ps", "0.01", "--out", tmp_path / "whole.h5")
    assert code == 0 and json.loads(out)["resumed_from_step"] is None
    with h5py.File(tmp_path / "md.h5", "r") as a, h5py.File(tmp_path / "whole.h5", "r") as b:
        np.testing.assert_array_equal(a["frames/step"][()], [0, 4, 8, 12, 16, 20])
        for name in b["frames"]:
            np.testing.assert_array_equal(a["frames"][name][()], b["frames"][name][()], err_msg=name)
    # a system's seed, hence its trajectory, does not depend on the other systems of the sweep (up to
    # the float32 rounding of a differently sized network batch)
    code, out, _ = run_cli(capsys, *common[:4], "O", *common[6:], "--time-ps", "0.01", "--out", tmp_path / "water.h5")
    assert code == 0
    alone, in_sweep = read_system(tmp_path / "water.h5", 1), read_system(tmp_path / "md.h5", 3)
    np.testing.assert_allclose(alone["positions"], in_sweep["positions"], rtol=0, atol=1e-5)
    assert not np.allclose(read_system(tmp_path / "water.h5", 0)["positions"][-1], in_sweep["positions"][-1], atol=1e-3)

    code, out, _ = run_cli(capsys, "md-export", tmp_path / "md.h5", "--system", 2, "--out", tmp_path / "water.extxyz")
    assert code == 0 and "water.extxyz" in out
    images, frames = read(tmp_path / "water.extxyz", index=":"), read_system(tmp_path / "md.h5", 2)
    assert len(images) == (6 if frames["alive"][-1] else int(np.argmin(frames["alive"])) + 1)
    np.testing.assert_allclose(images[-1].positions, frames["positions"][len(images) - 1], atol=1e-7)

    # the human-readable summary names every system
    code, out, _ = run_cli(capsys, *common[:-1], "--time-ps", "0.01", "--out", tmp_path / "md.h5")
    assert code == 0 and out.count("ethanol") == 2 and "stable" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--molecules": "C1CC"}, "--molecules"),
        ({"--model": "missing.pt"}, "missing.pt"),
        ({"--time-ps": "-1"}, "--time-ps"),
        ({"--seeds": "0"}, "--seeds"),
    ],
)
def test_md_cli_bad_input_gives_a_one_line_error(tmp_path, capsys, change, message):
    save_model(tiny_gemnet(torch.float32), tmp_path / "model.pt")
    options = {"--model": tmp_path / "model.pt", "--molecules": "CCO", "--time-ps": "0.001", "--seeds": "1"}
    options.update({k: tmp_path / v if k == "--model" else v for k, v in change.items()})
    argv = ["md", "--device", "cpu", "--quiet", "--out", tmp_path / "x.h5"]
    for key, value in options.items():
        argv += [key, value]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_profile_groups_a_force_call_by_kind_of_work():
    from gemrepro.benchmarks.md import OTHER_KIND, op_kind, profile_potential

    assert op_kind("aten::mm") == "matrix products" and op_kind("aten::index_select") == "gathers and scatters"
    assert op_kind("aten::silu_backward") == "activations and basis functions" and op_kind("autograd::x") is None
    result = profile_potential(tiny_gemnet(torch.float32), [molecule("H2O"), molecule("CH4")], device="cpu", calls=2)
    kinds = {row["kind"] for row in result["rows"]}
    assert {"matrix products", "elementwise arithmetic", OTHER_KIND} <= kinds
    assert sum(row["share"] for row in result["rows"]) == pytest.approx(1.0)
    assert all(row["ms_per_call"] >= 0 for row in result["rows"]) and result["wall_ms_per_call"] > 0
    assert result["n_atoms"] == 8 and result["n_edges"] == 2 * 3 + 4 * 5 and result["n_triplets"] > 0
    with pytest.raises(ValueError, match="calls"):
        profile_potential(tiny_gemnet(torch.float32), [molecule("H2O")], device="cpu", calls=0)


def test_langevin_with_gemnet_samples_the_same_kinetic_temperatures_as_ase():
    """Kinetic temperatures of ASE Langevin and batched BAOAB agree, and are canonical, under GemNet forces.

    A random GemNet alone is unbound (molecules fly apart, heating as they go), so it acts on top of
    the Morse bonds of the engine's test potential: a bound, anharmonic molecule with an equilibrium.
    """
    from ase.calculators.mixing import SumCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    from gemrepro.md import kinetic_temperature
    from gemrepro.md.integrators import langevin_baoab_step
    from gemrepro.md.potentials import MorseBondPotential
    from gemrepro.md.reference import PotentialCalculator

    target, friction, n_copies, n_steps, burn_in = 500.0, 0.5, 128, 50, 15
    model = tiny_gemnet()
    copies = [molecule("H2O") for _ in range(n_copies)]
    # ASE: the copies side by side in one Atoms, 30 Å apart (far beyond the 5 Å cutoff), one call per step
    side_by_side = copies[0].copy()
    for k in range(1, n_copies):
        shifted = copies[k].copy()
        shifted.translate([30.0 * k, 0.0, 0.0])
        side_by_side += shifted
    side_by_side.calc = SumCalculator(
        [GemNetCalculator(model, device="cpu"), PotentialCalculator(MorseBondPotential([side_by_side]))]
    )
    rng = np.random.default_rng(7)
    thermalize_momenta(side_by_side, temperature_K=target, rng=rng)
    dynamics = Langevin(
        side_by_side, 0.5 * units.fs, temperature_K=target, friction=friction / units.fs, fixcm=False, rng=rng
    )
    masses = side_by_side.get_masses().reshape(n_copies, 3)
    ase_samples = []
    for step in range(n_steps):
        dynamics.run(1)
        if step >= burn_in:
            p = side_by_side.get_momenta().reshape(n_copies, 3, 3)
            ase_samples.append(((p**2).sum(-1) / (2 * masses)).sum(-1) * 2 / (9 * units.kB))
    ase_samples = np.array(ase_samples)

    gemnet, morse = GemNetPotential(model, device="cpu"), MorseBondPotential(copies)

    def potential(positions, numbers, system_index):
        (e1, f1), (e2, f2) = gemnet(positions, numbers, system_index), morse(positions, numbers, system_index)
        return e1 + e2, f1 + f2

    state = build_state(
        [a.positions for a in copies],
        [a.numbers for a in copies],
        [a.get_masses() for a in copies],
        [target] * n_copies,
        [friction] * n_copies,
        list(range(n_copies)),
        remove_com_dof=False,
    )
    energy, forces = evaluate(state, potential, state.positions)
    state = state.replace(energy=energy, forces=forces)
    ours = []
    for step in range(n_steps):
        state = langevin_baoab_step(state, potential, 0.5)
        if step >= burn_in:
            ours.append(kinetic_temperature(state).numpy())
    ours = np.array(ours)
    assert np.isfinite(ours).all()
    assert np.abs(gemnet(state.positions, state.numbers, state.system_index)[1].numpy()).max() > 0.5  # GemNet acts

    # 128 x 35 samples of a chi-square with 9 dof (relative sd 0.47), correlation time ~2 steps: means to ~1 %
    for samples in (ase_samples, ours):
        assert samples.mean() == pytest.approx(target, rel=0.05)
        assert samples.std(axis=0).mean() / target == pytest.approx(np.sqrt(2 / 9), rel=0.15)
    assert ours.mean() == pytest.approx(ase_samples.mean(), rel=0.05)


def test_md_cli_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    torch.manual_seed(0)
    save_model(EnergyShift(GemNetT.from_preset("tiny"), REFERENCES), tmp_path / "model.pt")
    dataset = tmp_path / "qm7x.hdf5"
    dataset.write_bytes(b"someone's dataset")
    common = [
        "md",
        "--model",
        tmp_path / "model.pt",
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
        dataset,
    ]
    code, out, err = run_cli(capsys, *common)
    assert code != 0 and "--out" in err and "--overwrite" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert dataset.read_bytes() == b"someone's dataset"  # untouched, and nothing was computed
    code, out, _ = run_cli(capsys, *common, "--overwrite")
    assert code == 0 and json.loads(out)["step"] == 4
    code, out, _ = run_cli(capsys, *common)  # now it is this command's run: extending it is allowed
    assert code == 0 and json.loads(out)["resumed_from_step"] == 4


SHARED_ETHANOL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ethanol_reduced_100.xyz"


@pytest.mark.skipif(not SHARED_ETHANOL.is_file(), reason="../shared/data is not beside this checkout")
def test_a_trained_model_file_drives_ase_langevin_with_the_batched_engines_forces(tmp_path, capsys):
    """`gemrepro train`'s model file, loaded by the ASE calculator and by the engine: the same forces."""
    frames = read_dataset(SHARED_ETHANOL, energy_unit="kcal/mol")[:12]  # rMD17 labels, converted to eV
    write(tmp_path / "ethanol.extxyz", frames, format="extxyz")
    code = cli_main(
        [
            "train",
            "--data",
            str(tmp_path / "ethanol.extxyz"),
            "--train-size",
            "8",
            "--val-size",
            "4",
            "--preset",
            "tiny",
            "--batch-size",
            "4",
            "--max-steps",
            "4",
            "--eval-every",
            "2",
            "--checkpoint-every",
            "2",
            "--energy-key",
            "energy",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    capsys.readouterr()
    assert code == 0
    model_file = tmp_path / "run" / "best_model.pt"
    atoms = frames[0].copy()
    atoms.calc = GemNetCalculator(model_file, device="cpu")
    dynamics = Langevin(
        atoms, 0.5 * units.fs, temperature_K=600, friction=0.01 / units.fs, fixcm=False, rng=np.random.default_rng(2)
    )
    engine = potential_from_checkpoint(model_file, device="cpu")
    for _ in range(5):
        dynamics.run(1)
        positions, numbers, index = batch_inputs([atoms])
        energy, forces = engine(positions, numbers, index)
        np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-5)
        assert atoms.get_potential_energy() == pytest.approx(float(energy[0]), abs=1e-4)
    assert atoms.get_potential_energy() == pytest.approx(-4209.8, abs=50)  # a total energy in eV, references included
