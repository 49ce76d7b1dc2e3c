"""The mutable state of a training run and its checkpoint: what an exact resume needs.

``TrainState`` holds the counters, early-stopping bookkeeping, history and best weights;
``Optimization`` the objects an update changes (weights, their moving average, the optimizer
and its learning-rate schedule). A checkpoint is both, with the global torch RNG state and what
identifies the run (config, set sizes). Its on-disk layout is the one earlier versions wrote
(``state`` a plain dict), so a run checkpointed by them resumes here and the other way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from gemrepro.model.checkpoint import upgrade_state_dict
from gemrepro.model.energy_shift import EnergyShift
from gemrepro.train.checkpoint import save_checkpoint
from gemrepro.train.ema import ExponentialMovingAverage
from gemrepro.train.schedules import WarmupExponentialDecay

__all__ = ["Optimization", "RunningLoss", "TrainState"]


@dataclass
class RunningLoss:
    """Training-loss sums since the last validation (their means go into the history)."""

    loss: float = 0.0
    force_term: float = 0.0
    energy_term: float = 0.0
    count: int = 0

    def add(self, loss: float, terms: dict[str, float]) -> None:
        self.loss += loss
        self.force_term += terms["force_term"]
        self.energy_term += terms["energy_term"]
        self.count += 1

    def means(self) -> dict[str, float]:
        """The mean loss and terms (sums themselves before the first step: nothing to divide)."""
        count = max(self.count, 1)
        return {
            "train_loss": self.loss / count,
            "train_force_term": self.force_term / count,
            "train_energy_term": self.energy_term / count,
        }


@dataclass
class TrainState:
    """Where a run stands: counters, early stopping, history, best EMA weights, why it stopped.

    ``progress_loss`` is the validation loss that last reset the patience (see
    ``TrainConfig.min_relative_delta``); ``best_state`` the EMA weights of ``best_step``.
    ``total_wall_time_s`` sums the wall time of the invocations before this one.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val_loss: float = math.inf
    best_step: int | None = None
    best_metrics: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    evals_without_improvement: int = 0
    progress_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    running: RunningLoss = field(default_factory=RunningLoss)
    stop_reason: str | None = None
    total_wall_time_s: float = 0.0

    def to_dict(self, wall_time_s: float = 0.0) -> dict[str, Any]:
        """The checkpoint's ``state`` (plain types, for ``torch.load(weights_only=True)``), this
        invocation's ``wall_time_s`` added to the total."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["running"] = dict(vars(self.running))
        values["total_wall_time_s"] = self.total_wall_time_s + wall_time_s
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        """The state a checkpoint's ``state`` describes (fields it lacks keep their defaults)."""
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in values.items() if k in known and k != "running"})
        if state.best_state is not None:
            state.best_state = upgrade_state_dict(state.best_state)
        state.running = RunningLoss(**values.get("running", {}))
        return state

    def improves(self, loss: float) -> bool:
        """Whether a validation loss beats the best so far (its EMA weights become the kept model)."""
        return loss < self.best_val_loss

    def progresses(self, loss: float, min_delta: float, min_relative_delta: float) -> bool:
        """Whether a validation loss is progress enough to reset the patience: below the loss that last
        reset it by more than ``min_delta`` and by more than the fraction ``min_relative_delta``."""
        threshold = self.progress_loss
        return loss < min(threshold - min_delta, threshold * (1.0 - min_relative_delta))

    def record_validation(
        self, metrics: dict[str, float], lr: float, *, patience: int, min_delta: float, min_relative_delta: float
    ) -> None:
        """A validation into the history, the best metrics and the patience; ``early_stopping`` when it runs out."""
        loss = metrics["loss"]
        improved, progressed = self.improves(loss), self.progresses(loss, min_delta, min_relative_delta)
        self.history.append(
            {
                "step": self.step,
                "epoch": self.epoch,
                "lr": lr,
                **self.running.means(),
                "val_loss": loss,
                "val_energy_mae": metrics["energy_mae"],
                "val_forces_mae": metrics["forces_mae"],
                "val_forces_rmse": metrics["forces_rmse"],
            }
        )
        self.running = RunningLoss()
        if improved:
            self.best_val_loss, self.best_step, self.best_metrics = loss, self.step, dict(metrics)
        if progressed:
            self.progress_loss = loss
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
            if self.evals_without_improvement >= patience:
                self.stop_reason = "early_stopping"

    def new_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0

    def save(self, path: Path, optimization: Optimization, identity: dict[str, Any], wall_time_s: float) -> None:
        """Write the whole run to ``path`` atomically: ``identity`` (config, set sizes), weights,
        optimizer, RNG and this state."""
        save_checkpoint(
            path,
            {
                **identity,
                **optimization.state_dict(),
                "torch_rng_state": torch.get_rng_state(),
                "state": self.to_dict(wall_time_s),
            },
        )

    @classmethod
    def restore(cls, saved: dict[str, Any], optimization: Optimization) -> TrainState:
        """Load a checkpoint read by ``load_checkpoint`` into ``optimization`` and the torch RNG."""
        optimization.load_state_dict(saved)
        torch.set_rng_state(saved["torch_rng_state"])
        return cls.from_dict(saved["state"])


@dataclass
class Optimization:
    """What one update changes: the wrapped model, the EMA of its weights, the optimizer, the lr schedule."""

    model: EnergyShift
    ema: ExponentialMovingAverage
    optimizer: torch.optim.Optimizer
    schedule: WarmupExponentialDecay

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.to_dict(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Weights, EMA and optimizer moments; the schedule is a function of the step, rebuilt from the config."""
        self.model.load_state_dict(upgrade_state_dict(saved["model"]))
        self.ema.load_state_dict(saved["ema"])
        self.optimizer.load_state_dict(saved["optimizer"])
