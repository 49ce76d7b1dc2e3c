"""How the training loop spreads its work: one process, or data-parallel ranks under ``torchrun``.

The loop asks a strategy for four things that differ between the two: the gradient of a global
batch, the validation errors, whether every process agrees to stop, and a last synchronisation.
It is chosen once (:func:`strategy_for`), so the loop has no ``if distributed`` branches.
``DataParallel`` gives the one-process updates to floating-point reduction order (see
:mod:`gemrepro.train.distributed` for why the sums come out the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from gemrepro.data.torch_dataset import GraphSet
from gemrepro.train import distributed
from gemrepro.train.distributed import World
from gemrepro.train.evaluation import collate, error_sums, evaluate, metrics_from_sums, model_device, prepare_batch
from gemrepro.train.losses import EnergyForceLoss

__all__ = ["DataParallel", "SingleProcess", "Strategy", "strategy_for"]

Terms = dict[str, float]


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss is {float(loss)} at step {step}")


class Strategy(Protocol):
    """What the training loop asks of the processes it runs in."""

    @property
    def world(self) -> World: ...  # read-only: the strategies are frozen dataclasses

    def device(self, requested: str) -> torch.device: ...
    def share_weights(self, model: nn.Module) -> None: ...
    def backward(
        self,
        model: nn.Module,
        dataset: GraphSet,
        indices: Sequence[int],
        loss_fn: EnergyForceLoss,
        dtype: torch.dtype,
        step: int,
    ) -> tuple[torch.Tensor, Terms]: ...
    def evaluate(
        self, model: nn.Module, dataset: GraphSet, batch_size: int, loss_fn: EnergyForceLoss
    ) -> dict[str, float]: ...
    def agree_on_stop(self, reason: str | None, wall_time_limited: bool, device: torch.device) -> str | None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class SingleProcess:
    """Everything in this process: the batch's loss, its backward, the whole validation set."""

    world: World = field(default_factory=World)

    def device(self, requested: str) -> torch.device:
        return distributed.device_for_rank(requested, self.world)

    def share_weights(self, model: nn.Module) -> None:
        """Nothing to share: the weights are this process's own."""

    def backward(
        self,
        model: nn.Module,
        dataset: GraphSet,
        indices: Sequence[int],
        loss_fn: EnergyForceLoss,
        dtype: torch.dtype,
        step: int,
    ) -> tuple[torch.Tensor, Terms]:
        """The batch's loss and terms, its gradient left in ``.grad`` (refused before backward if not finite)."""
        batch = prepare_batch(collate(dataset, indices), model_device(model), dtype)
        loss, terms = loss_fn(model(batch), batch)
        _check_finite(loss, step)
        loss.backward()
        return loss, terms

    def evaluate(
        self, model: nn.Module, dataset: GraphSet, batch_size: int, loss_fn: EnergyForceLoss
    ) -> dict[str, float]:
        return evaluate(model, dataset, batch_size, loss_fn)

    def agree_on_stop(self, reason: str | None, wall_time_limited: bool, device: torch.device) -> str | None:
        return reason

    def finish(self) -> None:
        """Nothing to wait for."""


@dataclass(frozen=True)
class DataParallel(SingleProcess):
    """Each rank takes its shard of every global batch and of the validation set; sums meet by ``all_reduce``."""

    def share_weights(self, model: nn.Module) -> None:
        """Every rank starts from rank 0's weights, whatever each seeded."""
        distributed.broadcast_module(model)

    def backward(
        self,
        model: nn.Module,
        dataset: GraphSet,
        indices: Sequence[int],
        loss_fn: EnergyForceLoss,
        dtype: torch.dtype,
        step: int,
    ) -> tuple[torch.Tensor, Terms]:
        """Back-propagate this rank's shard; leave the global batch's gradient in ``.grad``.

        Returns the global batch's loss (every rank gets the same) and its two terms.
        """
        device = model_device(model)
        n_atoms = sum(int(dataset[i].num_nodes) for i in indices)  # every rank knows the whole global batch
        mine = distributed.shard(indices, self.world)
        if mine:
            batch = prepare_batch(collate(dataset, mine), device, dtype)
            loss, terms = distributed.shard_loss(loss_fn, model(batch), batch, n_atoms, len(indices))
            loss.backward()
        else:  # fewer structures than ranks in the last batch of an epoch
            terms = torch.zeros(3, dtype=torch.float64, device=device)
        distributed.all_reduce_gradients(model)
        totals = distributed.all_reduce_sum(terms).tolist()
        loss = torch.tensor(totals[0], dtype=torch.float64)
        _check_finite(loss, step)
        return loss, {"force_term": totals[1], "energy_term": totals[2]}

    def evaluate(
        self, model: nn.Module, dataset: GraphSet, batch_size: int, loss_fn: EnergyForceLoss
    ) -> dict[str, float]:
        sums = error_sums(model, dataset, distributed.shard(range(len(dataset)), self.world), batch_size)
        reduced = distributed.all_reduce_sum(torch.tensor(sums, dtype=torch.float64, device=model_device(model)))
        return metrics_from_sums(reduced.tolist(), loss_fn)

    def agree_on_stop(self, reason: str | None, wall_time_limited: bool, device: torch.device) -> str | None:
        """Every rank stops on the wall time when one rank reached it (clocks differ; steps do not)."""
        if wall_time_limited and reason in (None, "max_wall_time"):
            return "max_wall_time" if distributed.any_rank(reason == "max_wall_time", device) else None
        return reason

    def finish(self) -> None:
        """The files rank 0 wrote exist on every rank's return."""
        distributed.barrier()


def strategy_for(world: World) -> Strategy:
    """``DataParallel`` inside a process group of several ranks, else ``SingleProcess``."""
    return DataParallel(world) if world.is_distributed else SingleProcess(world)
