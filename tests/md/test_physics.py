"""Physics of the MD engine end to end: NVE with a trained float32 GemNet, BAOAB's canonical
configurations against an exact answer, and runs killed with SIGKILL that resume bit for bit.

Each test is built to fail on a real defect: forces that are not the gradient of the energy, a
wrong kinetic-energy or temperature convention, a thermostat at the wrong temperature, a checkpoint
that misses some state, or a resume that loses or duplicates frames.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from gemrepro.cli import main as cli_main
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md import read_system, run_md
from gemrepro.md.potentials import MorseBondPotential
from gemrepro.md.runner import checkpoint_path_for
from gemrepro.model import load_model
from gemrepro.train import load_checkpoint

torch.set_num_threads(1)

SHARED_ETHANOL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ethanol_reduced_100.xyz"
needs_ethanol = pytest.mark.skipif(not SHARED_ETHANOL.is_file(), reason="../shared/data is not beside this checkout")
KCAL_PER_MOL = units.kcal / units.mol  # eV


def write_ethanol_in_ev(path: Path, n_frames: int) -> list[Atoms]:
    """The first ``n_frames`` of the shared MD17 ethanol file, converted from kcal/mol to eV.

    In eV a briefly trained model has a physical energy scale (thermal fluctuations of ~0.1 eV at
    300 K); in kcal/mol read as eV every force would be 23 times too stiff for a 0.25 fs step.
    """
    frames = []
    for atoms in read(SHARED_ETHANOL, index=f":{n_frames}"):
        converted = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        converted.calc = SinglePointCalculator(
            converted, energy=atoms.get_potential_energy() * KCAL_PER_MOL, forces=atoms.get_forces() * KCAL_PER_MOL
        )
        frames.append(converted)
    write(path, frames, format="extxyz")
    return frames


def kinetic_energy_from_frames(frames: dict[str, np.ndarray], degrees_of_freedom: int) -> np.ndarray:
    """Kinetic energy (eV) per frame from the stored kinetic temperature, ``dof k_B T / 2``."""
    return 0.5 * degrees_of_freedom * units.kB * frames["temperature_kin"]


# ---------------------------------------------------------------------------------------------
# 1. NVE with a trained float32 GemNet


def ethanol_dimer(a: Atoms, b: Atoms, closest: float) -> Atoms:
    """``a`` and ``b`` side by side along x, their closest atoms ``closest`` Å apart."""
    shifted = b.positions - [b.positions[:, 0].min() - a.positions[:, 0].max(), 0.0, 0.0]
    for offset in np.arange(0.0, 10.0, 0.005):
        moved = shifted + [offset, 0.0, 0.0]
        if np.linalg.norm(a.positions[:, None] - moved[None], axis=-1).min() >= closest:
            return Atoms(numbers=np.concatenate([a.numbers, b.numbers]), positions=np.concatenate([a.positions, moved]))
    raise AssertionError("no offset separates the molecules")


@pytest.mark.slow
@needs_ethanol
def test_trained_float32_gemnet_conserves_energy_in_velocity_verlet(tmp_path, capsys):
    """A `gemrepro train` model, float32 inside a float64 NVE loop, conserves E_pot + E_kin.

    Conservation only holds when the forces are the exact gradient of the energy the model
    reports, so it checks the eval-mode force path (analytic radial derivative, reused graph) in
    one molecule and, in a dimer whose intermolecular pairs cross the cutoff, through the graph
    rebuilds (pairs must enter and leave the graph exactly at the cutoff). The stored kinetic
    temperature must use 3N - 3 degrees of freedom (verlet removes the centre-of-mass motion), or
    the reconstructed total would wobble. A ten times larger step must conserve clearly worse, so
    the tolerance is not vacuous.
    """
    frames = write_ethanol_in_ev(tmp_path / "ethanol.extxyz", 24)
    code = cli_main(
        [
            "train",
            "--data",
            str(tmp_path / "ethanol.extxyz"),
            "--energy-key",
            "energy",
            "--train-size",
            "20",
            "--val-size",
            "4",
            "--preset",
            "tiny",
            "--batch-size",
            "4",
            "--max-steps",
            "60",
            "--eval-every",
            "10",
            "--checkpoint-every",
            "100",
            "--lr",
            "5e-3",
            "--warmup-steps",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    capsys.readouterr()
    assert code == 0
    potential = potential_from_checkpoint(tmp_path / "run" / "best_model.pt", device="cpu")
    assert potential.dtype == torch.float32  # a float32 network in a float64 engine state
    cutoff = potential.network.config.cutoff

    single = Atoms(numbers=frames[0].numbers, positions=frames[0].positions)
    # 3.2 Å apart, the two molecules interact through many pairs and the farthest ones (~7 Å)
    # move in and out of the 5 Å cutoff, so the graph is rebuilt during the run
    dimer = ethanol_dimer(single, frames[5], closest=3.2)
    systems = [single, dimer]

    def nve(dt_fs: float, n_steps: int, name: str) -> list[dict[str, np.ndarray]]:
        summary = run_md(
            potential,
            systems,
            n_steps=n_steps,
            path=tmp_path / name,
            integrator="verlet",
            dt_fs=dt_fs,
            temperatures=300.0,
            seeds=1,
            frame_interval=1,
            checkpoint_interval=10**6,
            progress=False,
        )
        assert summary.alive == [True, True], summary.failures
        return [read_system(summary.path, s) for s in range(len(systems))]

    def conservation(data: dict[str, np.ndarray], n_atoms: int) -> tuple[float, float, float]:
        kinetic = kinetic_energy_from_frames(data, 3 * n_atoms - 3)
        total = data["energy"] + kinetic
        quarter = len(total) // 4
        drift = abs(total[-quarter:].mean() - total[:quarter].mean())
        return float(total.std()), drift, float(kinetic.std())

    fine = nve(0.25, 800, "fine.h5")  # 200 fs, ~18 C-H periods
    coarse = nve(2.5, 80, "coarse.h5")  # the same 200 fs in ten times larger steps
    for data, atoms in zip(fine, systems, strict=True):
        fluctuation, drift, kinetic_fluctuation = conservation(data, len(atoms))
        assert kinetic_fluctuation > 0.02  # eV: energy really flows between kinetic and potential
        # measured: the total wobbles by ~0.24 % of the kinetic fluctuation and drifts by < 0.05 %;
        # a 10 % error in the analytic envelope slope gives ~1.1 %, pairs cut at 4.2 Å ~2.6 %
        assert fluctuation < 0.006 * kinetic_fluctuation, (fluctuation, kinetic_fluctuation)
        assert drift < 0.005 * kinetic_fluctuation, (drift, kinetic_fluctuation)
        # potential energies keep float64 resolution: the element references (~4200 eV here) are
        # added in the state's dtype; summed in float32 they would sit on a grid of ~5e-4 eV
        energy = data["energy"]
        off_float32_grid = float(np.mean(energy.astype(np.float32).astype(np.float64) != energy))
        assert off_float32_grid > 0.9, off_float32_grid
    for fine_data, coarse_data, atoms in zip(fine, coarse, systems, strict=True):
        # shadow-energy error grows as dt^2 (x100); demand at least x10
        assert conservation(coarse_data, len(atoms))[0] > 10 * conservation(fine_data, len(atoms))[0]

    # the dimer's trajectory did cross the cutoff: its set of intermolecular pairs changed
    positions = fine[1]["positions"]
    n = len(single)
    within = np.linalg.norm(positions[:, :n, None] - positions[:, None, n:], axis=-1) < cutoff
    assert len({w.tobytes() for w in within}) > 1
    assert (within.any(axis=0) & ~within.all(axis=0)).any()


# ---------------------------------------------------------------------------------------------
# 2. BAOAB samples the canonical configurational distribution


BOND_K = 30.0  # eV/Å^2: a C-O bond with a period of ~30 fs
BOND_R0 = 1.13  # Å


def harmonic_diatomics(positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor):
    """``E = K (r - r0)^2 / 2`` per system, for a batch of diatomics (atoms 2s and 2s + 1)."""
    bond = positions[1::2] - positions[0::2]
    r = torch.linalg.vector_norm(bond, dim=-1)
    stretch = r - BOND_R0
    pull = (BOND_K * stretch / r)[:, None] * bond  # force on the first atom; the second feels -pull
    return 0.5 * BOND_K * stretch**2, torch.stack([pull, -pull], dim=1).reshape(-1, 3)


def canonical_bond_averages(temperature: float) -> tuple[float, float, float]:
    """Exact <r>, Var(r) and <E_pot> of a 3-D harmonic bond at ``temperature``, by quadrature.

    The bond length is distributed as ``r^2 exp(-E(r) / kT)``: the r^2 of the spherical shell
    shifts <r> above r0 by ~2 kT / (K r0) and <E_pot> above kT/2 by a factor ~(1 + 2 kT / (K r0^2)).
    """
    kT = units.kB * temperature
    sigma = np.sqrt(kT / BOND_K)
    r = np.linspace(BOND_R0 - 14 * sigma, BOND_R0 + 14 * sigma, 200_001)
    energy = 0.5 * BOND_K * (r - BOND_R0) ** 2
    weight = r**2 * np.exp(-energy / kT)
    weight /= weight.sum()
    mean = float((weight * r).sum())
    return mean, float((weight * (r - mean) ** 2).sum()), float((weight * energy).sum())


@pytest.mark.slow
def test_baoab_samples_the_canonical_bond_length_distribution(tmp_path):
    """200 harmonic C-O bonds at 300 K and 600 K: <r>, Var(r) and <E_pot> are the canonical ones.

    Systems are independent (own seeds), so each system's time average is one independent
    sample; the tolerance is four standard errors of their mean over the 100 systems of each
    temperature, and the test also demands that standard error be small enough (< 1.5 % of
    Var(r) and <E_pot>) that a thermostat a few per cent off, a wrong mass in the noise, or
    temperatures applied to the wrong systems would fail. <r> is resolved finely enough to see the
    r^2 Jacobian, so a sampler of the 1-D bond-length density would fail too.
    """
    n_systems, dt_fs, n_steps, equilibration_fs = 200, 1.0, 5000, 300.0
    rng = np.random.default_rng(0)
    systems = []
    for _ in range(n_systems):
        direction = rng.normal(size=3)
        systems.append(Atoms("CO", positions=[[0.0, 0.0, 0.0], BOND_R0 * direction / np.linalg.norm(direction)]))
    temperatures = [300.0 if s % 2 == 0 else 600.0 for s in range(n_systems)]
    # friction 0.2/fs damps the ~0.2/fs bond vibration near critically: decorrelates within ~10 fs
    summary = run_md(
        harmonic_diatomics,
        systems,
        n_steps=n_steps,
        path=tmp_path / "bonds.h5",
        temperatures=temperatures,
        seeds=7,
        dt_fs=dt_fs,
        friction=0.2,
        frame_interval=5,
        checkpoint_interval=10**6,
        check_interval=50,
        progress=False,
    )
    assert all(summary.alive)
    with h5py.File(summary.path, "r") as f:
        steps, positions = f["frames/step"][()], f["frames/positions"][()]
    positions = positions[steps * dt_fs >= equilibration_fs]
    r = np.linalg.norm(positions[:, 1::2] - positions[:, 0::2], axis=-1)  # (frames, systems)

    z_max = 4.0  # a correct sampler exceeds it with probability ~6e-5 per check
    for parity, temperature in ((0, 300.0), (1, 600.0)):
        mean_r, var_r, mean_energy = canonical_bond_averages(temperature)
        bonds = r[:, parity::2]
        checks = {
            "<r> - r0": (bonds.mean(axis=0) - BOND_R0, mean_r - BOND_R0, 0.15),
            "Var(r)": (((bonds - mean_r) ** 2).mean(axis=0), var_r, 0.015),
            "<E_pot>": ((0.5 * BOND_K * (bonds - BOND_R0) ** 2).mean(axis=0), mean_energy, 0.015),
        }
        for name, (per_system, exact, max_relative_error) in checks.items():
            mean = per_system.mean()
            standard_error = per_system.std(ddof=1) / np.sqrt(len(per_system))
            assert standard_error < max_relative_error * exact, (temperature, name, standard_error, exact)
            assert abs(mean - exact) < z_max * standard_error, (temperature, name, mean, exact, standard_error)
        # and the equipartition value itself: kT/2 for the one harmonic coordinate, to 0.5 %
        assert mean_energy == pytest.approx(0.5 * units.kB * temperature, rel=5e-3)


# ---------------------------------------------------------------------------------------------
# 3. SIGKILL and resume, in new processes


def child_env() -> dict[str, str]:
    """Single-threaded children, so their floating-point results match this process's."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@contextmanager
def child_process(argv: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """A child process with its output in ``log``; SIGKILLed on the way out if still running."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=log.parent)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


def run_child(argv: list[str], log: Path, timeout: float = 300.0) -> str:
    """Run a child to completion; its output, or a failure that shows it."""
    with child_process(argv, log) as proc:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{argv[1:3]} did not finish in {timeout} s:\n{log.read_text()[-3000:]}")
    output = log.read_text()
    assert proc.returncode == 0, output[-3000:]
    return output


def printed_json(output: str) -> dict:
    """The JSON object a child printed last (anything it logged before is skipped)."""
    lines = output.splitlines()
    starts = [k for k, line in enumerate(lines) if line.startswith("{")]
    assert starts, output[-3000:]
    return json.loads("\n".join(lines[starts[-1] :]))


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    """Poll ``condition`` while ``proc`` runs (generous timeout: a loaded machine is slow, not broken)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"child exited ({proc.returncode}) before it could be killed:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"child did not reach the kill point in {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def sigkill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the child must still be running when it is killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


MD_CHILD = '''\
"""run_md on three molecules with a Morse force field; pauses at step PAUSE_AT (>= 0) to be killed."""
import json, sys, time
from dataclasses import asdict
from pathlib import Path
import torch
torch.set_num_threads(1)
from ase.build import molecule
from gemrepro.md import run_md
from gemrepro.md.potentials import MorseBondPotential

path, pause_at, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
systems = [molecule(name) for name in settings.pop("molecules")]

def pause(state):
    if state.step == pause_at:
        Path(path + ".paused").write_text(str(state.step))
        time.sleep(3600)

summary = run_md(MorseBondPotential(systems), systems, path=path, callback=pause if pause_at >= 0 else None, **settings)
print(json.dumps({"resumed_from_step": summary.resumed_from_step, "step": summary.step, "n_frames": summary.n_frames}))
'''

MD_SETTINGS = {
    "molecules": ["CH3CH2OH", "H2O", "CH4"],
    "n_steps": 300,
    "temperatures": [300.0, 600.0, 900.0],
    "seeds": 3,
    "dt_fs": 0.5,
    "frame_interval": 3,
    "checkpoint_interval": 25,
    "progress": False,
}


def assert_same_groups(a: h5py.File, b: h5py.File, groups: tuple[str, ...]) -> None:
    assert dict(a.attrs) == dict(b.attrs)
    for group in groups:
        assert sorted(a[group]) == sorted(b[group]), group
        for name in a[group]:
            np.testing.assert_array_equal(a[group][name][()], b[group][name][()], err_msg=f"{group}/{name}")


@pytest.mark.slow
def test_sigkilled_md_run_resumes_in_a_new_process_with_bit_identical_frames(tmp_path):
    """`run_md` killed by SIGKILL (no cleanup, HDF5 file left open) continues in a new process.

    The kill comes 16 steps after the step-125 checkpoint, so six frames past it are on disk and
    must be dropped and rewritten; Langevin noise continues from the stored generator states. The
    result must be bitwise the uninterrupted run: same frames, no lost or duplicated ones.
    """
    script = tmp_path / "md_child.py"
    script.write_text(MD_CHILD)
    path, pause_at = tmp_path / "killed.h5", 141
    settings = json.dumps(MD_SETTINGS)
    ckpt = checkpoint_path_for(path)

    argv = [sys.executable, str(script), str(path), str(pause_at), settings]
    with child_process(argv, tmp_path / "killed.log") as proc:
        wait_for(lambda: Path(f"{path}.paused").exists(), proc, tmp_path / "killed.log")
        stored = torch.load(ckpt, weights_only=True)  # replaced atomically, so safe to read while running
        assert stored["step"] == 125 and stored["n_frames"] == 125 // 3 + 1  # past the first (step-0) checkpoint
        sigkill(proc)
    with h5py.File(path, "r") as f:  # the killed run's frames reach past its checkpoint
        assert f["frames/step"][-1] == pause_at and len(f["frames/step"]) == stored["n_frames"] + 6

    output = run_child([sys.executable, str(script), str(path), "-1", settings], tmp_path / "resumed.log")
    resumed = printed_json(output)
    n_frames = MD_SETTINGS["n_steps"] // MD_SETTINGS["frame_interval"] + 1
    assert resumed == {"resumed_from_step": 125, "step": 300, "n_frames": n_frames}

    settings = dict(MD_SETTINGS)
    systems = [molecule(name) for name in settings.pop("molecules")]
    whole = run_md(MorseBondPotential(systems), systems, path=tmp_path / "whole.h5", **settings)
    assert whole.n_frames == n_frames
    with h5py.File(whole.path, "r") as a, h5py.File(path, "r") as b:
        np.testing.assert_array_equal(b["frames/step"][()], np.arange(0, 301, 3))
        assert_same_groups(a, b, ("frames", "systems", "failure"))
        assert not np.array_equal(a["frames/positions"][0], a["frames/positions"][-1])  # the molecules moved


TRAIN_CHILD = '''\
"""`gemrepro train ARGS` that pauses right after optimizer update PAUSE_AT (>= 0) to be killed."""
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from gemrepro.train.ema import ExponentialMovingAverage

pause_at, marker, argv = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
update, updates = ExponentialMovingAverage.update, [0]

def update_then_pause(self, model):  # the EMA update follows every optimizer step
    update(self, model)
    updates[0] += 1
    if updates[0] == pause_at:
        marker.write_text(str(updates[0]))
        time.sleep(3600)

ExponentialMovingAverage.update = update_then_pause
from gemrepro.cli import main
sys.exit(main(argv))
'''


def final_training_state(workdir: Path) -> dict:
    """Everything a finished run leaves that must not depend on an interruption."""
    saved = load_checkpoint(workdir / "checkpoint.pt")
    state = dict(saved["state"])
    state.pop("total_wall_time_s")  # wall time is the one thing allowed to differ
    best = load_model(workdir / "best_model.pt", device="cpu")
    return {
        "model": saved["model"],
        "ema": saved["ema"],
        "optimizer": saved["optimizer"],
        "rng": saved["torch_rng_state"],
        "state": state,
        "best": best.state_dict(),
        "references": best.reference_energies(),
        "history_csv": (workdir / "history.csv").read_text(),
    }


def assert_identical(a, b, where: str = "") -> None:
    """Bitwise equality of nested dicts / lists of tensors and plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{k}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, (where, a, b)


@pytest.mark.slow
@needs_ethanol
def test_sigkilled_training_resumes_in_a_new_process_with_bit_identical_weights(tmp_path):
    """`gemrepro train` killed by SIGKILL after update 25 and rerun ends as if never interrupted.

    Checkpoints come every 7 updates and an epoch is 5 batches, so the rerun restarts mid-epoch
    from update 21 and redoes four updates; the final weights, EMA, optimizer moments, RNG state,
    validation history and best model must be bitwise those of an uninterrupted run.
    """
    write_ethanol_in_ev(tmp_path / "ethanol.extxyz", 24)
    script = tmp_path / "train_child.py"
    script.write_text(TRAIN_CHILD)
    common = [
        "train",
        "--data",
        str(tmp_path / "ethanol.extxyz"),
        "--energy-key",
        "energy",
        "--train-size",
        "20",
        "--val-size",
        "4",
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--max-steps",
        "40",
        "--eval-every",
        "10",
        "--checkpoint-every",
        "7",
        "--lr",
        "2e-3",
        "--warmup-steps",
        "5",
        "--quiet",
    ]
    killed, marker = tmp_path / "killed", tmp_path / "paused"

    argv = [sys.executable, str(script), "25", str(marker), *common, "--out", str(killed)]
    with child_process(argv, tmp_path / "killed.log") as proc:
        wait_for(marker.exists, proc, tmp_path / "killed.log")
        assert load_checkpoint(killed / "checkpoint.pt")["state"]["step"] == 21  # three checkpoints in
        sigkill(proc)
    assert not (killed / "best_model.pt").exists()

    cli = [sys.executable, "-m", "gemrepro"]
    resumed = printed_json(run_child([*cli, *common, "--out", str(killed)], tmp_path / "resumed.log"))
    whole = printed_json(run_child([*cli, *common, "--out", str(tmp_path / "whole")], tmp_path / "whole.log"))
    assert resumed["steps"] == whole["steps"] == 40
    assert resumed["best"] == whole["best"]
    history = final_training_state(tmp_path / "whole")["state"]["history"]
    assert [row["step"] for row in history] == [10, 20, 30, 40]
    assert_identical(final_training_state(tmp_path / "whole"), final_training_state(killed))
