"""Device logic of training, MD and PBE0 labels: exercised on CPU, end to end on CUDA when present.

The CPU tests pin the decisions that send work to a GPU (``auto`` → CUDA, rank → ``cuda:LOCAL_RANK``,
NCCL vs gloo) and the conversions at the edges (a float32 model inside float64 MD, a model trained
on one device and loaded on another). The ``cuda`` tests repeat the end-to-end paths on a GPU.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from test_train import fast_config, make_model, synthetic_molecules

from gemrepro.integrations import GemNetCalculator
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.md import run_md
from gemrepro.md.potentials import MorseBondPotential
from gemrepro.model import EnergyShift, build_model, load_model, resolve_device
from gemrepro.reference import get_method
from gemrepro.train import train_model
from gemrepro.train.distributed import World, backend_for, device_for_rank

torch.set_num_threads(1)
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


@pytest.fixture()
def pretend_cuda(monkeypatch):
    """``torch.cuda.is_available()`` says yes (two GPUs): device *decisions* only, nothing is allocated."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


class Moved(Exception):
    """Stands for the model's move to its training device: where it goes is seen without a GPU."""


def small_sets():
    from gemrepro.data.torch_dataset import AtomsDataset

    data = AtomsDataset.from_atoms(synthetic_molecules(20, seed=5))
    return data.subset(range(14)), data.subset(range(14, 20))


def water_and_methanol() -> list[Atoms]:
    return [molecule("H2O"), molecule("CH3OH")]


# ----------------------------------------------------------------------------- decisions (CPU)
def test_auto_resolves_to_cuda_when_present_and_ranks_take_their_local_gpu(pretend_cuda):
    assert resolve_device("auto") == torch.device("cuda")
    assert device_for_rank("auto", World()) == torch.device("cuda")
    assert device_for_rank("cuda", World(rank=3, size=4, local_rank=1)) == torch.device("cuda", 1)
    assert device_for_rank("cuda:0", World(rank=1, size=2, local_rank=1)) == torch.device("cuda", 0)  # explicit wins
    assert backend_for("auto") == "nccl" and backend_for("cuda:1") == "nccl"


def test_auto_resolves_to_cpu_and_gloo_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert device_for_rank("auto", World(rank=1, size=2, local_rank=1)) == torch.device("cpu")
    assert backend_for("auto") == "gloo"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu0")


@pytest.mark.parametrize("cuda, expected", [(False, "cpu"), (True, "cuda")])
def test_training_on_auto_moves_the_model_to_cuda_exactly_when_cuda_is_there(tmp_path, monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    train_set, val_set = small_sets()
    model = make_model()

    def move(self, *args, **kwargs):
        raise Moved(kwargs.get("device", args[0] if args else None))

    monkeypatch.setattr(torch.nn.Module, "to", move)
    with pytest.raises(Moved) as moved:
        train_model(model, train_set, val_set, fast_config(device="auto", max_steps=4), tmp_path, progress=False)
    assert moved.value.args[0] == torch.device(expected)


def test_an_explicit_gpu_this_machine_lacks_is_a_one_line_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match=r"^device 'cuda(:0)?': no CUDA GPU is available here; expected 'cpu' or"):
            resolve_device(device)
    train_set, val_set = small_sets()
    with pytest.raises(ValueError, match=r"^device 'cuda': no CUDA GPU") as caught:
        train_model(make_model(), train_set, val_set, fast_config(device="cuda", max_steps=4), tmp_path / "t")
    assert "\n" not in str(caught.value) and not (tmp_path / "t" / "best_model.pt").exists()
    systems = water_and_methanol()
    with pytest.raises(ValueError, match=r"^device 'cuda': no CUDA GPU"):
        run_md(MorseBondPotential(systems), systems, n_steps=3, path=tmp_path / "md.h5", device="cuda", progress=False)
    assert not (tmp_path / "md.h5").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(
        ValueError, match=r"^device 'cuda:2': this machine has 2 CUDA GPU\(s\); expected cuda:0\.\.cuda:1$"
    ):
        resolve_device("cuda:2")


def test_float32_network_in_float64_md_returns_the_state_dtype_and_exact_references():
    torch.manual_seed(0)
    network = build_model("T", "tiny")  # float32 weights
    wrapped = EnergyShift(network, {1: -13.6, 6: -1027.6, 8: -2039.7, 16: -10828.7})
    potential = GemNetPotential(wrapped, device="cpu")
    systems = water_and_methanol()
    positions = torch.as_tensor(np.concatenate([a.positions for a in systems]), dtype=torch.float64)
    numbers = torch.as_tensor(np.concatenate([a.numbers for a in systems]))
    system_index = torch.repeat_interleave(torch.arange(2), torch.tensor([len(a) for a in systems]))
    energy, forces = potential(positions, numbers, system_index)
    assert energy.dtype == forces.dtype == torch.float64 and forces.shape == (9, 3)
    bare, _ = GemNetPotential(network, device="cpu")(positions, numbers, system_index)
    references = torch.tensor([2 * -13.6 - 2039.7, 4 * -13.6 - 1027.6 - 2039.7], dtype=torch.float64)
    # The ~1e3 eV references are added in float64: the difference is the float32 network's energy exactly.
    torch.testing.assert_close(energy - references, bare, rtol=0, atol=1e-9)


def test_ase_calculator_returns_float64_numpy_from_a_float32_model():
    torch.manual_seed(0)
    atoms = molecule("H2O")
    atoms.calc = GemNetCalculator(build_model("T", "tiny"), device="auto")
    forces = atoms.get_forces()
    assert isinstance(forces, np.ndarray) and forces.dtype == np.float64 and forces.shape == (3, 3)
    assert np.isfinite(atoms.get_potential_energy())


def test_run_md_accepts_auto_device():
    systems = water_and_methanol()
    with tempfile.TemporaryDirectory() as folder:
        summary = run_md(
            MorseBondPotential(systems), systems, n_steps=3, path=Path(folder) / "t.h5", device="auto", progress=False
        )
    assert all(summary.alive)


def test_pbe0_refuses_an_absent_gpu_in_one_line_and_auto_falls_back_to_cpu():
    has_gpu4pyscf = importlib.util.find_spec("gpu4pyscf") is not None
    if has_gpu4pyscf and CUDA:
        pytest.skip("a GPU and gpu4pyscf are present: the GPU test below covers this machine")
    h2 = molecule("H2")
    with pytest.raises(ValueError, match="device='gpu' needs gpu4pyscf"):
        get_method("pbe0", device="gpu").compute(h2.numbers, h2.positions)
    result = get_method("pbe0", device="auto").compute(h2.numbers, h2.positions)
    assert result.converged and result.info["device"] == "cpu"
    assert result.forces.dtype == np.float64 and abs(result.forces.sum()) < 1e-4  # no net force


# ----------------------------------------------------------------------------- end to end (CUDA)
@needs_cuda
def test_training_on_cuda_follows_cpu_and_saves_host_tensors(tmp_path):
    train_set, val_set = small_sets()
    cpu = train_model(make_model(), train_set, val_set, fast_config(max_steps=6), tmp_path / "cpu", progress=False)
    gpu = train_model(
        make_model(), train_set, val_set, fast_config(max_steps=6, device="cuda"), tmp_path / "gpu", progress=False
    )
    np.testing.assert_allclose(gpu.history["val_loss"], cpu.history["val_loss"], rtol=1e-6)
    loaded = load_model(gpu.best_model_path, device="cpu", model=make_model())
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())
    resumed = train_model(
        make_model(), train_set, val_set, fast_config(max_steps=8, device="cuda"), tmp_path / "gpu", progress=False
    )  # resume a CUDA checkpoint on CUDA
    assert resumed.resumed_from_step == 6 and resumed.steps == 8


@needs_cuda
def test_gemnet_md_on_cuda_matches_cpu_forces_and_runs_batched():
    torch.manual_seed(0)
    network = build_model("T", "tiny").double()
    systems = water_and_methanol()
    positions = torch.as_tensor(np.concatenate([a.positions for a in systems]), dtype=torch.float64)
    numbers = torch.as_tensor(np.concatenate([a.numbers for a in systems]))
    index = torch.repeat_interleave(torch.arange(2), torch.tensor([3, 6]))
    _, cpu_forces = GemNetPotential(network, device="cpu")(positions, numbers, index)
    _, gpu_forces = GemNetPotential(network, device="cuda")(positions.cuda(), numbers.cuda(), index.cuda())
    assert gpu_forces.device.type == "cuda"
    torch.testing.assert_close(gpu_forces.cpu(), cpu_forces, rtol=1e-8, atol=1e-10)
    with tempfile.TemporaryDirectory() as folder:
        summary = run_md(
            GemNetPotential(network, device="cuda"),
            systems,
            n_steps=5,
            path=Path(folder) / "t.h5",
            device="cuda",
            progress=False,
        )
    assert len(summary.alive) == 2


@needs_cuda
@pytest.mark.skipif(importlib.util.find_spec("gpu4pyscf") is None, reason="needs gpu4pyscf")
def test_pbe0_on_gpu_matches_cpu():
    water = molecule("H2O")
    gpu = get_method("pbe0", device="gpu").compute(water.numbers, water.positions)
    cpu = get_method("pbe0", device="cpu").compute(water.numbers, water.positions)
    assert gpu.info["device"] == "gpu" and gpu.converged
    assert gpu.energy == pytest.approx(cpu.energy, abs=1e-4)  # eV
    np.testing.assert_allclose(gpu.forces, cpu.forces, atol=1e-3)  # eV/Å
