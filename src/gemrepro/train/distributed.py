"""Data-parallel training over several processes (``torchrun``), with the same updates as one process.

Every rank builds the same global batch (the epoch permutation of ``epoch_batches`` is seeded,
so no sampler state has to be shared), keeps its own shard of it (``indices[rank::world_size]``,
the slicing of ``DistributedSampler``) and back-propagates a *shard loss* normalised by the
global batch's atom and molecule counts. Summing the shard gradients over ranks then gives
exactly the gradient of the one-process loss, whatever the shards' sizes: the force term is a
mean over atoms, and molecules of different sizes would bias a plain average of per-rank means.

Gradients are summed with one ``all_reduce`` per dtype on a flat buffer instead of wrapping the
model in ``DistributedDataParallel``: the model stays the bare module, so checkpoints, the EMA
and ``best_model.pt`` have the same keys as a one-process run (and a run may resume with another
number of processes), and the double backward of conservative forces needs no special DDP mode.

Launch: ``torchrun --nproc-per-node N gemrepro train ...``; ``torchrun`` sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Backend gloo on CPU, NCCL on CUDA
(rank ``r`` uses ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gemrepro.model import resolve_device
from gemrepro.train.losses import EnergyForceLoss

__all__ = [
    "World",
    "all_reduce_gradients",
    "all_reduce_sum",
    "any_rank",
    "backend_for",
    "barrier",
    "broadcast_module",
    "current_world",
    "device_for_rank",
    "init_distributed",
    "shard",
    "shard_loss",
    "shutdown_distributed",
    "world_from_env",
]

ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size or self.local_rank < 0:
            raise ValueError(
                f"distributed world: expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got "
                f"RANK={self.rank}, WORLD_SIZE={self.size}, LOCAL_RANK={self.local_rank}"
            )

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, history and the trained model, and shows progress."""
        return self.rank == 0


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The world ``torchrun`` describes in ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (one process without them)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return World()
    values = {}
    for name in ENV_VARS:
        text = env.get(name, "0" if name != "WORLD_SIZE" else "1")
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"{name}: expected an integer (as torchrun sets it), got {text!r}") from None
    return World(rank=values["RANK"], size=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"])


def current_world() -> World:
    """The world of the initialised process group, or a single process when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank)


def backend_for(device: str | torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if resolve_device(device).type == "cuda" else "gloo"


def device_for_rank(device: str | torch.device, world: World) -> torch.device:
    """The device of this rank: ``cuda`` (or ``auto`` with a GPU) becomes ``cuda:LOCAL_RANK`` when distributed."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and world.is_distributed and resolved.index is None:
        return torch.device("cuda", world.local_rank)
    return resolved


def init_distributed(
    device: str | torch.device = "cpu", env: Mapping[str, str] | None = None, timeout_s: float = 1800.0
) -> World:
    """Join the process group ``torchrun`` set up (nothing to do for one process); return this rank's world."""
    world = world_from_env(env)
    if not world.is_distributed or dist.is_initialized():
        return current_world() if dist.is_initialized() else world
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timedelta(seconds=timeout_s))
    return world


def shutdown_distributed() -> None:
    """Leave the process group (safe to call without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: Sequence[int], world: World) -> list[int]:
    """This rank's part of a global batch: every ``size``-th index from ``rank`` (may be empty)."""
    return list(indices[world.rank :: world.size])


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (identical start, whatever each seeded)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=src)


def all_reduce_sum(values: Tensor) -> Tensor:
    """The element-wise sum of ``values`` over ranks (in place, also returned)."""
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: str | torch.device = "cpu") -> bool:
    """True on every rank when it is true on one (ranks agree on a wall-time stop)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier() -> None:
    dist.barrier()


@torch.no_grad()
def all_reduce_gradients(module: nn.Module) -> None:
    """Sum the gradients of ``module`` over ranks: one flat ``all_reduce`` per parameter dtype.

    A parameter without a gradient on this rank (an empty shard, an unused element embedding)
    contributes zeros, so every rank sends buffers of the same layout.
    """
    parameters = [p for p in module.parameters() if p.requires_grad]
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    # every p.grad is a tensor from here on (set just above): the casts tell mypy so
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in parameters:
        by_dtype.setdefault(cast(torch.Tensor, p.grad).dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([cast(torch.Tensor, p.grad).reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in group:
            grad = cast(torch.Tensor, p.grad)
            n = grad.numel()
            grad.copy_(flat[offset : offset + n].view_as(grad))
            offset += n


def shard_loss(
    loss_fn: EnergyForceLoss, prediction: dict[str, Tensor], batch, n_atoms: int, n_molecules: int
) -> tuple[Tensor, Tensor]:
    """This shard's share of the global batch's loss, and its (loss, force, energy) terms detached.

    The force term sums per-atom error norms and divides by the *global* batch's ``n_atoms``, the
    energy term sums absolute errors over the *global* ``n_molecules``; summed over ranks these
    are the one-process loss and its terms.
    """
    if n_atoms < 1 or n_molecules < 1:
        raise ValueError(f"global batch: expected at least one atom and molecule, got {n_atoms} and {n_molecules}")
    force_term = torch.linalg.vector_norm(prediction["forces"] - batch.forces, dim=-1).sum() / n_atoms
    energy_term = (prediction["energy"].reshape(-1) - batch.energy.reshape(-1)).abs().sum() / n_molecules
    loss = loss_fn.force_weight * force_term + loss_fn.energy_weight * energy_term
    terms = torch.stack([loss, force_term, energy_term]).detach().double()
    return loss, terms
