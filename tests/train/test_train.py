"""Training: loss definition, schedule, EMA, element references, learning, exact resume."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from torch import nn
from torch_geometric.data import Batch

from gemrepro.cli import main
from gemrepro.data.torch_dataset import (
    AtomsDataset,
    atoms_to_data,
    epoch_batches,
    fit_element_references,
    make_loader,
)
from gemrepro.model import EnergyShift, GemNetT, load_model
from gemrepro.train import (
    EnergyForceLoss,
    ExponentialMovingAverage,
    TrainConfig,
    WarmupExponentialDecay,
    evaluate,
    load_checkpoint,
    train_model,
)

torch.set_num_threads(1)

ELEMENT_ENERGIES = {1: -13.6, 6: -1027.6, 8: -2039.7}  # eV, QM7-X-like free atoms


# ----------------------------------------------------------------------------- test potential
def pair_indices(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All atom pairs i < j inside the same molecule."""
    same = batch[:, None] == batch[None, :]
    i, j = torch.nonzero(torch.triu(same, diagonal=1), as_tuple=True)
    return i, j


def morse_energy(pos: torch.Tensor, z: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Analytic labels: Morse pairs whose depth and length depend on the two elements."""
    i, j = pair_indices(batch)
    r = (pos[i] - pos[j]).norm(dim=-1)
    heavy = (z[i] > 1).double() + (z[j] > 1).double()
    depth, r0 = 0.5 + 0.5 * heavy, 1.0 + 0.2 * heavy
    pair = depth * (1 - torch.exp(-1.5 * (r - r0))) ** 2 - depth
    return torch.zeros(n_graphs, dtype=pos.dtype).index_add(0, batch[i], pair)


def synthetic_molecules(n: int, seed: int) -> list[Atoms]:
    """Random small H/C/O molecules labelled by the Morse potential plus element energies."""
    rng = np.random.default_rng(seed)
    molecules = []
    for _ in range(n):
        n_atoms = int(rng.integers(3, 6))
        numbers = rng.choice([1, 6, 8], size=n_atoms, p=[0.5, 0.3, 0.2])
        positions = [rng.normal(size=3)]
        while len(positions) < n_atoms:  # grow a connected cluster, no atoms closer than 0.9 Å
            candidate = positions[int(rng.integers(len(positions)))] + rng.normal(size=3) * 0.5
            candidate = positions[-1] + (candidate - positions[-1]) / np.linalg.norm(
                candidate - positions[-1]
            ) * rng.uniform(1.0, 1.6)
            if min(np.linalg.norm(candidate - p) for p in positions) > 0.9:
                positions.append(candidate)
        pos = torch.tensor(np.array(positions), requires_grad=True)
        z = torch.as_tensor(numbers)
        energy = morse_energy(pos, z, torch.zeros(n_atoms, dtype=torch.long), 1)
        (grad,) = torch.autograd.grad(energy.sum(), pos)
        atoms = Atoms(numbers=numbers, positions=np.array(positions))
        total = float(energy.detach()) + sum(ELEMENT_ENERGIES[int(k)] for k in numbers)
        atoms.calc = SinglePointCalculator(atoms, energy=total, forces=-grad.numpy())
        molecules.append(atoms)
    return molecules


@dataclass
class PairConfig:
    n_rbf: int = 8
    hidden: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


class PairModel(nn.Module):
    """Stand-in conservative model: learned pair energies over all pairs in each molecule."""

    def __init__(self, config: PairConfig | None = None):
        super().__init__()
        self.config = config or PairConfig()
        self.embedding = nn.Embedding(10, self.config.hidden)
        self.radial = nn.Sequential(
            nn.Linear(self.config.n_rbf, self.config.hidden),
            nn.SiLU(),
            nn.Linear(self.config.hidden, self.config.hidden),
        )
        self.register_buffer("centers", torch.linspace(0.5, 4.0, self.config.n_rbf))

    def forward(self, data) -> dict[str, torch.Tensor]:
        pos = data.pos if data.pos.requires_grad else data.pos.clone().requires_grad_(True)
        i, j = pair_indices(data.batch)
        r = (pos[i] - pos[j]).norm(dim=-1, keepdim=True)
        rbf = torch.exp(-4.0 * (r - self.centers) ** 2)
        pair = (self.radial(rbf) * self.embedding(data.z[i]) * self.embedding(data.z[j])).sum(-1)
        energy = torch.zeros(data.num_graphs, dtype=pos.dtype, device=pos.device).index_add(0, data.batch[i], pair)
        (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=self.training)
        return {"energy": energy, "forces": -grad}


def make_model(seed: int = 0) -> PairModel:
    torch.manual_seed(seed)
    return PairModel().double()


@pytest.fixture(scope="module")
def datasets() -> tuple[AtomsDataset, AtomsDataset]:
    data = AtomsDataset.from_atoms(synthetic_molecules(60, seed=1))
    return data.subset(range(44)), data.subset(range(44, 60))


def fast_config(**overrides) -> TrainConfig:
    values = dict(
        lr=5e-3,
        batch_size=8,
        max_steps=12,
        warmup_steps=3,
        decay_steps=200,
        decay_rate=0.1,
        eval_every=3,
        checkpoint_every=4,
        patience=100,
        seed=3,
        dtype="float64",
    )
    values.update(overrides)
    return TrainConfig(**values)


# ----------------------------------------------------------------------------- loss
def test_loss_is_weighted_mean_force_error_norm_plus_energy_mae():
    batch = Batch.from_data_list([atoms_to_data(a) for a in synthetic_molecules(2, seed=0)])
    n_atoms = batch.forces.shape[0]
    errors = torch.zeros(n_atoms, 3, dtype=torch.float64)
    errors[0] = torch.tensor([3.0, 4.0, 0.0])  # |ΔF| = 5 on one atom
    errors[1] = torch.tensor([0.0, 0.0, -2.0])  # |ΔF| = 2 on another
    prediction = {
        "forces": batch.forces + errors,
        "energy": batch.energy + torch.tensor([1.0, -2.0], dtype=torch.float64),
    }
    loss, terms = EnergyForceLoss()(prediction, batch)
    assert terms["force_term"] == pytest.approx(7.0 / n_atoms)  # mean over atoms of norms
    assert terms["energy_term"] == pytest.approx(1.5)  # per-molecule MAE
    assert float(loss) == pytest.approx(0.999 * 7.0 / n_atoms + 0.001 * 1.5)
    loss, _ = EnergyForceLoss(energy_weight=0.5, force_weight=0.5)(prediction, batch)
    assert float(loss) == pytest.approx(0.5 * 7.0 / n_atoms + 0.5 * 1.5)
    with pytest.raises(ValueError, match="loss weights"):
        EnergyForceLoss(energy_weight=-1.0)


# ----------------------------------------------------------------------------- schedule
def test_lr_schedule_warmup_then_exponential_decay():
    schedule = WarmupExponentialDecay(lr=1e-3, warmup_steps=10, decay_steps=100, decay_rate=0.1)
    assert schedule(1) == pytest.approx(1e-4 * 0.1**0.01)
    assert schedule(5) == pytest.approx(5e-4 * 0.1**0.05)
    assert schedule(10) == pytest.approx(1e-3 * 0.1**0.1)
    assert schedule(200) == pytest.approx(1e-5)
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert schedule.apply(optimizer, 100) == pytest.approx(1e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="decay_rate"):
        WarmupExponentialDecay(decay_rate=1.5)


# ----------------------------------------------------------------------------- EMA
def test_ema_update_math_and_exact_swap():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ExponentialMovingAverage(model, decay=0.9, use_num_updates=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert float(ema.shadow["weight"]) == pytest.approx(0.1)
    ema.update(model)
    assert float(ema.shadow["weight"]) == pytest.approx(0.19)  # 0.9·0.1 + 0.1·1
    with ema.average_parameters(model):
        assert float(model.weight.detach()) == pytest.approx(0.19)
    assert float(model.weight.detach()) == 1.0  # restored exactly

    warm = ExponentialMovingAverage(model, decay=0.999, use_num_updates=True)
    with torch.no_grad():
        model.weight.fill_(0.0)
    warm.update(model)  # decay capped at (1 + 1) / (10 + 1)
    assert float(warm.shadow["weight"]) == pytest.approx(2 / 11)


# ----------------------------------------------------------------------------- data adapter
def test_atoms_to_data_prefers_atomization_energy_and_rejects_bad_input():
    atoms = synthetic_molecules(1, seed=5)[0]
    total = atoms.get_potential_energy()
    data = atoms_to_data(atoms)
    assert float(data.energy) == pytest.approx(total)
    assert data.forces.shape == (len(atoms), 3) and int(data.n_atoms) == len(atoms)
    atoms.info["atomization_energy"] = -3.25
    assert float(atoms_to_data(atoms).energy) == -3.25
    assert float(atoms_to_data(atoms, energy_key="").energy) == pytest.approx(total)
    with pytest.raises(ValueError, match="calculator"):
        atoms_to_data(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))


def test_epoch_batches_are_reproducible_per_epoch_and_cover_the_data():
    first = epoch_batches(10, 4, seed=7, epoch=2)
    assert first == epoch_batches(10, 4, seed=7, epoch=2)
    assert first != epoch_batches(10, 4, seed=7, epoch=3)
    assert sorted(i for b in first for i in b) == list(range(10))
    assert [len(b) for b in first] == [4, 4, 2]
    dataset = AtomsDataset.from_atoms(synthetic_molecules(10, seed=2))
    loader = make_loader(dataset, 4, shuffle=True, seed=7, epoch=2, skip_batches=1)
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [4, 2]
    assert torch.equal(batches[0].pos, Batch.from_data_list([dataset[i] for i in first[1]]).pos)


def test_element_reference_fit_recovers_per_element_energies():
    data = AtomsDataset.from_atoms(synthetic_molecules(40, seed=4))
    noise = np.random.default_rng(0).normal(scale=0.05, size=len(data))
    for g, eps in zip(data.graphs, noise):
        g.energy = torch.tensor([sum(ELEMENT_ENERGIES[int(z)] for z in g.z) + eps], dtype=torch.float64)
    noisy = fit_element_references(data)
    assert set(noisy) == set(ELEMENT_ENERGIES)
    for z, expected in ELEMENT_ENERGIES.items():
        assert abs(noisy[z] - expected) < 0.05
    for g in data.graphs:  # exact when the energies are exactly linear in the composition
        g.energy = torch.tensor([sum(ELEMENT_ENERGIES[int(z)] for z in g.z)], dtype=torch.float64)
    exact = fit_element_references(data)
    assert exact == pytest.approx(ELEMENT_ENERGIES, abs=1e-8)
    shifted = EnergyShift(make_model(), exact).to(torch.float32)
    assert shifted.element_energies.dtype == torch.float64  # references keep full precision
    assert shifted.reference_energies() == pytest.approx(ELEMENT_ENERGIES, abs=1e-9)


# ----------------------------------------------------------------------------- training
def test_training_lowers_validation_force_error(datasets, tmp_path):
    train, val = datasets
    model = make_model()
    before = evaluate(EnergyShift(model, fit_element_references(train)), val)
    config = fast_config(max_steps=90, eval_every=30, checkpoint_every=1000, lr=1e-2, warmup_steps=5)
    result = train_model(model, train, val, config, tmp_path, progress=False)
    after = evaluate(result.model, val)
    assert after["forces_mae"] < 0.6 * before["forces_mae"]
    assert after["forces_mae"] == pytest.approx(result.best_metrics["forces_mae"])
    assert list(result.history["step"]) == [30, 60, 90]
    assert result.stop_reason == "max_steps" and result.steps == 90
    assert result.steps_per_second > 0 and result.samples_per_second > result.steps_per_second
    # the saved best model predicts exactly what the returned one does
    loaded = load_model(result.best_model_path, device="cpu", model=make_model(seed=9))
    batch = Batch.from_data_list(list(val.graphs[:3]))
    assert torch.equal(loaded(batch)["energy"], result.model(batch)["energy"])
    assert loaded.reference_energies() == result.model.reference_energies()


def _final_state(workdir) -> dict:
    saved = load_checkpoint(workdir / "checkpoint.pt")
    return {"model": saved["model"], "ema": saved["ema"]["shadow"], "history": saved["state"]["history"]}


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert a["history"] == b["history"]


class Killed(RuntimeError):
    pass


def test_killed_and_resumed_run_matches_uninterrupted_run_exactly(datasets, tmp_path):
    train, val = datasets
    train = train.subset(range(20))  # 3 batches per epoch: the run crosses epoch boundaries
    config = fast_config()
    reference = train_model(make_model(), train, val, config, tmp_path / "a", progress=False)
    assert len(reference.history) == 4 and reference.epochs_completed == 4

    def kill_at_step_10(step, info):
        if step == 10:
            raise Killed

    with pytest.raises(Killed):
        train_model(make_model(), train, val, config, tmp_path / "b", progress=False, callback=kill_at_step_10)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["state"]["step"] == 8
    resumed = train_model(make_model(seed=123), train, val, config, tmp_path / "b", progress=False)
    assert resumed.resumed_from_step == 8
    _assert_same_run(_final_state(tmp_path / "a"), _final_state(tmp_path / "b"))
    pd.testing.assert_frame_equal(reference.history, resumed.history)
    for key, value in reference.model.state_dict().items():  # best EMA weights
        assert torch.equal(value, resumed.model.state_dict()[key])

    # a run paused by its step budget continues as if never paused
    paused = train_model(make_model(), train, val, fast_config(max_steps=5), tmp_path / "c", progress=False)
    assert paused.stop_reason == "max_steps" and paused.steps == 5
    train_model(make_model(), train, val, config, tmp_path / "c", progress=False)
    _assert_same_run(_final_state(tmp_path / "a"), _final_state(tmp_path / "c"))

    with pytest.raises(ValueError, match="changed settings"):
        train_model(make_model(), train, val, fast_config(lr=1e-4), tmp_path / "c", progress=False)


def test_early_stopping_counts_validations_without_improvement(datasets, tmp_path):
    train, val = datasets
    config = fast_config(max_steps=50, eval_every=2, patience=2, min_delta=1e9)
    result = train_model(make_model(), train.subset(range(16)), val, config, tmp_path, progress=False)
    # the first validation improves on +inf; two more without a 1e9 improvement stop the run,
    # while the kept model is still the one with the lowest validation loss
    assert result.stop_reason == "early_stopping"
    assert list(result.history["step"]) == [2, 4, 6]
    best = result.history.loc[result.history["val_loss"].idxmin(), "step"]
    assert result.best_metrics["step"] == best
    again = train_model(make_model(), train.subset(range(16)), val, config, tmp_path, progress=False)
    assert again.steps == 6  # a finished run is not extended
    budget = fast_config(max_steps=None, max_wall_time_s=0.0)
    out_of_time = train_model(make_model(), train.subset(range(16)), val, budget, tmp_path / "t", progress=False)
    assert out_of_time.stop_reason == "max_wall_time" and out_of_time.steps == 0
    assert out_of_time.best_metrics["n"] == len(val)  # the untrained EMA model, evaluated once


def test_relative_patience_stops_on_a_creeping_plateau(datasets, tmp_path):
    train, val = datasets
    plain = fast_config(max_steps=40, eval_every=2, patience=3, lr=1e-4)
    creeping = fast_config(max_steps=40, eval_every=2, patience=3, lr=1e-4, min_relative_delta=0.5)
    steady = train_model(make_model(), train.subset(range(16)), val, plain, tmp_path / "a", progress=False)
    relative = train_model(make_model(), train.subset(range(16)), val, creeping, tmp_path / "b", progress=False)
    # halving the loss every three validations is more than a slow learning rate can do
    assert relative.stop_reason == "early_stopping" and relative.steps < steady.steps
    losses = relative.history["val_loss"].to_numpy()
    assert (losses[-3:] >= 0.5 * losses[-4]).all()  # the last reset, then three without halving
    with pytest.raises(ValueError, match="min_relative_delta"):
        fast_config(min_relative_delta=1.0)


def test_gemnet_tiny_trains_a_few_steps(datasets, tmp_path):
    train, val = datasets
    torch.manual_seed(0)
    model = GemNetT.from_preset("tiny")
    config = fast_config(max_steps=4, eval_every=2, checkpoint_every=2, dtype="float32", batch_size=4)
    result = train_model(model, train.subset(range(8)), val.subset(range(4)), config, tmp_path, progress=False)
    assert result.steps == 4 and len(result.history) == 2
    assert math.isfinite(result.best_metrics["forces_mae"])
    loaded = load_model(result.best_model_path, device="cpu")
    batch = Batch.from_data_list([g for g in val.to(torch.float32).graphs[:2]])
    assert torch.allclose(loaded(batch)["forces"], result.model(batch)["forces"])


def test_cli_trains_resumes_and_fine_tunes(tmp_path, capsys):
    path = tmp_path / "molecules.xyz"
    write(path, synthetic_molecules(12, seed=6), format="extxyz")
    common = [
        "train",
        "--data",
        str(path),
        "--train-size",
        "8",
        "--val-size",
        "4",
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
        "--quiet",
    ]
    assert main([*common, "--max-steps", "2", "--out", str(tmp_path / "run")]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 2 and first["train_size"] == 8 and first["val_size"] == 4
    assert main([*common, "--max-steps", "4", "--out", str(tmp_path / "run")]) == 0  # resumes
    assert json.loads(capsys.readouterr().out)["steps"] == 4
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])
    base = load_model(tmp_path / "run" / "best_model.pt", device="cpu")
    assert (
        main(
            [
                *common,
                "--max-steps",
                "2",
                "--init",
                str(tmp_path / "run" / "best_model.pt"),
                "--out",
                str(tmp_path / "tuned"),
            ]
        )
        == 0
    )
    tuned = load_model(tmp_path / "tuned" / "best_model.pt", device="cpu")
    assert tuned.reference_energies() == base.reference_energies()  # fine-tuning keeps references
    assert main([*common, "--train-size", "20", "--out", str(tmp_path / "bad")]) == 2
    assert "--train-size 20" in capsys.readouterr().err
