"""TorchSim drives gemrepro's GemNet: the same forces as the project's other paths, canonical Langevin statistics."""

from __future__ import annotations

import json
import tarfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_sim as ts
from ase import units
from ase.build import molecule

from gemrepro.benchmarks import md as bench_md
from gemrepro.benchmarks import torchsim as bench_torchsim
from gemrepro.benchmarks.md import benchmark_systems
from gemrepro.benchmarks.torchsim import benchmark_torchsim, torchsim_friction
from gemrepro.cli import main as cli_main
from gemrepro.integrations import GemNetCalculator
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.integrations.torchsim import TorchSimGemNet, molecules_to_state
from gemrepro.md import run_md
from gemrepro.md.state import kinetic_energy
from gemrepro.model import EnergyShift, build_model, load_model

SHIPPED_TINY = Path(__file__).resolve().parents[2] / "models" / "tiny.tar.xz"


def trained_like(variant: str) -> EnergyShift:
    """A random tiny GemNet with per-element references, as a trained model file holds it."""
    torch.manual_seed(3)
    return EnergyShift(build_model(variant, "tiny"), {1: -13.6, 6: -1029.5, 7: -1485.3, 8: -2042.6})


@pytest.fixture(scope="module")
def densest_tiny_model(tmp_path_factory) -> Path:
    """The shipped tiny learning-curve model trained on the most data (3200 frames, not a committee member)."""
    folder = tmp_path_factory.mktemp("shipped")
    with tarfile.open(SHIPPED_TINY) as bundle:
        for member in bundle.getmembers():
            if member.name.endswith("manifest.json"):
                manifest = json.load(bundle.extractfile(member))
                params = manifest.get("params", manifest)
                if params["split"]["train_size"] == 3200 and "member" not in params:
                    model = bundle.extractfile(member.name.replace("manifest.json", "model.pt"))
                    (folder / "model.pt").write_bytes(model.read())
                    return folder / "model.pt"
    raise AssertionError(f"{SHIPPED_TINY}: no 3200-frame model")


def test_the_pinned_torchsim_is_installed():
    assert version("torch-sim-atomistic") == "0.3.0"


@pytest.mark.parametrize("variant", ["T", "Q"])
def test_torchsim_forces_match_the_ase_calculators_molecule_by_molecule(variant):
    """One batched TorchSim call on molecules of different sizes = the ASE calculator's call on each alone."""
    model = trained_like(variant)
    systems = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH3CONH2"), molecule("C6H6")]
    for k, atoms in enumerate(systems):
        # Off the symmetric geometries: in exactly planar benzene every dihedral is 0 or pi, where
        # GemNet-Q's unsigned dihedral has a kink (its sin(m phi) harmonics), so the force there is
        # set by rounding noise and differs between a batch and a single call.
        atoms.rattle(stdev=0.02, seed=k)
    adapter = TorchSimGemNet(model, device="cpu")
    output = adapter(molecules_to_state(systems, device="cpu"))
    assert output["energy"].shape == (4,) and output["forces"].shape == (sum(len(a) for a in systems), 3)
    calculator = GemNetCalculator(model, device="cpu")
    start = 0
    for index, atoms in enumerate(systems):
        atoms = atoms.copy()
        atoms.calc = calculator
        np.testing.assert_allclose(output["forces"][start : start + len(atoms)].numpy(), atoms.get_forces(), atol=2e-5)
        assert float(output["energy"][index]) == pytest.approx(atoms.get_potential_energy(), abs=1e-4)
        start += len(atoms)
    assert float(output["energy"][0]) < -1000  # element references included: a total energy in eV


def test_torchsim_refuses_what_the_engine_refuses():
    with pytest.raises(ValueError, match=r"systems\[1\].*apart"):
        overlapping = molecule("H2O")
        overlapping.positions[1] = overlapping.positions[0]
        molecules_to_state([molecule("H2O"), overlapping], device="cpu")
    adapter = TorchSimGemNet(trained_like("T"), device="cpu")
    with pytest.raises(ValueError, match="F.*not trained on"):
        adapter(molecules_to_state([molecule("HF")], device="cpu"))


def test_friction_in_torchsim_units():
    """TorchSim's time unit is Å·sqrt(amu/eV) = 10.18 fs, so 0.01/fs is 0.1018 per unit."""
    assert torchsim_friction(0.01) == pytest.approx(0.01 * 1e-10 * np.sqrt(units._amu / units._e) * 1e15, rel=1e-4)


def test_both_engines_sample_the_same_kinetic_energy_under_langevin(tmp_path, densest_tiny_model):
    """⟨E_kin⟩ = 3N k_B T / 2 in TorchSim's BAOAB and in gemrepro's, on the same trained model and molecules.

    A strong friction (0.05/fs, 20 fs relaxation) forgets the start within the 100 discarded steps;
    the remaining 300 steps of 16 molecules give a mean known to about 1.5 %, so 6 % is > 3 sigma
    yet a thermostat off by a unit factor (e.g. a friction or kT in the wrong unit) fails.
    """
    potential = GemNetPotential(load_model(densest_tiny_model, device="cpu"), device="cpu")
    systems = benchmark_systems(16)
    n_atoms = sum(len(a) for a in systems)
    temperature, friction, n_steps, burn_in = 300.0, 0.05, 400, 100
    expected = 1.5 * n_atoms * units.kB * temperature

    ours: list[float] = []
    run_md(
        potential,
        systems,
        n_steps=n_steps,
        path=tmp_path / "ours.h5",
        temperatures=temperature,
        friction=friction,
        frame_interval=n_steps,
        checkpoint_interval=n_steps,
        device="cpu",
        progress=False,
        after_failure="continue",
        callback=lambda state: ours.append(float(kinetic_energy(state).sum())),
    )

    adapter = TorchSimGemNet(potential, device="cpu")
    init, update = ts.nvt_langevin(
        model=adapter,
        dt=torch.tensor(0.5e-3 * float(ts.units.MetalUnits.time), dtype=torch.float64),
        kT=torch.tensor(temperature * float(ts.units.MetalUnits.temperature), dtype=torch.float64),
        gamma=torch.tensor(torchsim_friction(friction), dtype=torch.float64),
        seed=1,
    )
    state = init(molecules_to_state(systems, device="cpu"))
    theirs = []
    for _ in range(n_steps):
        state = update(state)
        theirs.append(float((state.momenta**2 / (2 * state.masses[:, None])).sum()))

    ours_mean, theirs_mean = np.mean(ours[burn_in:]) / expected, np.mean(theirs[burn_in:]) / expected
    assert len(ours) == n_steps
    assert ours_mean == pytest.approx(1.0, abs=0.06)
    assert theirs_mean == pytest.approx(1.0, abs=0.06)
    assert ours_mean == pytest.approx(theirs_mean, abs=0.06)


def test_bench_md_against_torchsim_prints_both_rates_and_their_ratio(capsys, monkeypatch):
    order: list[str] = []
    real_run_md, real_torchsim = bench_md.run_md, bench_torchsim._torchsim_seconds  # ours runs through bench_md

    def run_md(*args, **kwargs):
        order.append("gemrepro")
        return real_run_md(*args, **kwargs)

    def torchsim_seconds(*args):
        order.append("torchsim")
        return real_torchsim(*args)

    monkeypatch.setattr(bench_md, "run_md", run_md)
    monkeypatch.setattr(bench_torchsim, "_torchsim_seconds", torchsim_seconds)
    torch.manual_seed(0)
    result = benchmark_torchsim(build_model("T", "tiny"), benchmark_systems(4), 3, device="cpu", repeats=2)
    monkeypatch.undo()
    assert result["n_systems"] == 4 and result["torchsim_version"] == "0.3.0" and len(result["ratios"]) == 2
    assert result["ratio_min"] <= result["ratio"] <= result["ratio_max"] and result["excluded"] == []
    assert order == ["gemrepro", "torchsim"] * 3  # an untimed round, then the two in turns
    assert (
        cli_main(
            [
                "bench",
                "md",
                "--against",
                "torchsim",
                "--systems",
                "3",
                "--steps",
                "2",
                "--repeats",
                "1",
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_systems"] == 3 and printed["gemrepro_steps_per_s"] > 0 and printed["torchsim_steps_per_s"] > 0
    assert printed["torch_threads"] == 1 and printed["model"].startswith("trained tiny GemNet-T")
    assert np.isfinite(printed["ratio"]) and printed["ratio_min"] <= printed["ratio"] <= printed["ratio_max"]
