"""Data-parallel training: two gloo processes follow the one-process run; torchrun drives the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from ase.io import write
from test_train import fast_config, make_model, synthetic_molecules
from torch_geometric.data import Batch

from gemrepro.data.torch_dataset import AtomsDataset, atoms_to_data
from gemrepro.model import load_model
from gemrepro.train import EnergyForceLoss, train_model
from gemrepro.train.distributed import (
    World,
    device_for_rank,
    init_distributed,
    shard,
    shard_loss,
    shutdown_distributed,
    world_from_env,
)

torch.set_num_threads(1)

N_TRAIN = 41  # batches of 8: the epoch's last batch holds one structure, so one rank's shard is empty
COMPARED = [
    "step",
    "epoch",
    "lr",
    "train_loss",
    "train_force_term",
    "train_energy_term",
    "val_loss",
    "val_energy_mae",
    "val_forces_mae",
    "val_forces_rmse",
]


def _datasets() -> tuple[AtomsDataset, AtomsDataset]:
    data = AtomsDataset.from_atoms(synthetic_molecules(55, seed=1))
    return data.subset(range(N_TRAIN)), data.subset(range(N_TRAIN, 55))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, runs: list[tuple[str, int]]) -> None:
    """One torchrun-like rank: env vars, process group, then each (workdir, max_steps) run in turn."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    world = init_distributed("cpu")
    assert world == World(rank, world_size, rank)
    try:
        train_set, val_set = _datasets()
        for workdir, max_steps in runs:
            train_model(
                make_model(seed=rank),
                train_set,
                val_set,  # rank 0's weights are broadcast
                fast_config(max_steps=max_steps),
                workdir,
                progress=False,
            )
    finally:
        shutdown_distributed()


def _spawn(runs: list[tuple[Path, int]], world_size: int = 2) -> None:
    """Start the ranks once (imports dominate the cost) for all ``runs``."""
    runs = [(str(workdir), max_steps) for workdir, max_steps in runs]
    mp.spawn(_rank_main, args=(world_size, _free_port(), runs), nprocs=world_size, join=True)


def _single(workdir: Path, max_steps: int):
    train_set, val_set = _datasets()
    return train_model(make_model(), train_set, val_set, fast_config(max_steps=max_steps), workdir, progress=False)


def test_world_from_env_reads_torchrun_variables_and_rejects_bad_ones():
    assert world_from_env({}) == World(0, 1, 0)
    world = world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.is_main, world.is_distributed) == (3, 4, 1, False, True)
    with pytest.raises(ValueError, match="RANK"):
        world_from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="WORLD_SIZE: expected an integer"):
        world_from_env({"WORLD_SIZE": "two"})


def test_shards_partition_a_batch_and_rank_devices_follow_local_rank():
    indices = [7, 3, 9, 1, 4]
    parts = [shard(indices, World(r, 2, r)) for r in range(2)]
    assert parts == [[7, 9, 4], [3, 1]]
    assert shard([5], World(1, 2, 1)) == []
    assert device_for_rank("cpu", World(1, 2, 1)) == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        device_for_rank("tpu-ish", World())


def test_shard_losses_sum_to_the_global_batch_loss():
    molecules = synthetic_molecules(5, seed=4)
    batch = Batch.from_data_list([atoms_to_data(a) for a in molecules])
    generator = torch.Generator().manual_seed(0)
    prediction = {
        "energy": batch.energy + torch.randn(5, generator=generator, dtype=torch.float64),
        "forces": batch.forces + torch.randn(batch.forces.shape, generator=generator, dtype=torch.float64),
    }
    loss_fn = EnergyForceLoss()
    expected, _ = loss_fn(prediction, batch)
    total = torch.zeros(3, dtype=torch.float64)
    for part in ([0, 2, 4], [1, 3]):  # molecules of different sizes on the two ranks
        sub = Batch.from_data_list([atoms_to_data(molecules[i]) for i in part])
        atom_mask = torch.isin(batch.batch, torch.tensor(part))
        sub_prediction = {"energy": prediction["energy"][part], "forces": prediction["forces"][atom_mask]}
        total += shard_loss(loss_fn, sub_prediction, sub, batch.num_nodes, 5)[1]
    assert float(total[0]) == pytest.approx(float(expected), rel=1e-12)
    with pytest.raises(ValueError, match="global batch"):
        shard_loss(loss_fn, prediction, batch, 0, 5)


@pytest.mark.slow  # two processes import torch and torch_geometric (seconds each on an idle machine)
def test_two_gloo_ranks_follow_the_single_process_run_and_resume_on_one(tmp_path):
    single = _single(tmp_path / "single", max_steps=12)
    _spawn([(tmp_path / "ddp", 12), (tmp_path / "resumed", 7)])
    ddp = pd.read_csv(tmp_path / "ddp" / "history.csv")
    assert len(ddp) == len(single.history) == 4
    pd.testing.assert_frame_equal(ddp[COMPARED], single.history[COMPARED], rtol=1e-9, atol=1e-12)
    assert single.history["train_loss"].iloc[-1] < single.history["train_loss"].iloc[0]  # it did learn
    ddp_model = load_model(tmp_path / "ddp" / "best_model.pt", device="cpu", model=make_model())
    single_model = single.model
    for (name, a), b in zip(ddp_model.state_dict().items(), single_model.state_dict().values()):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-8, atol=1e-10, msg=name)

    # A two-rank run stopped at step 7 resumes in one process and ends where the single run ended.
    resumed = _single(tmp_path / "resumed", max_steps=12)
    assert resumed.resumed_from_step == 7
    pd.testing.assert_frame_equal(resumed.history[COMPARED], single.history[COMPARED], rtol=1e-9, atol=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
    reason="torchrun is not installed next to this interpreter",
)
def test_gemrepro_train_under_torchrun_trains_on_two_ranks(tmp_path):
    data = tmp_path / "molecules.xyz"
    write(data, synthetic_molecules(24, seed=2))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = [
        torchrun,
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "gemrepro",
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--train-size",
        "16",
        "--val-size",
        "8",
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--batch-size",
        "8",
        "--warmup-steps",
        "2",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=110, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])  # rank 0 alone prints it
    assert done.stdout.count('"best_model"') == 1
    assert summary["steps"] == 4 and summary["world_size"] == 2
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["step"].tolist() == [2, 4]
    assert load_model(summary["best_model"], device="cpu").metadata["steps"] == 4  # the file rank 0 wrote
