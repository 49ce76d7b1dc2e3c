"""Training loop for conservative energy-and-force models, as in the GemNet papers.

Loss ``0.999 · mean_atoms ‖ΔF‖₂ + 0.001 · MAE(E)``; Adam with AMSGrad; linear warm-up then
exponential decay of the learning rate; gradient-norm clipping; an exponential moving average
(EMA) of the weights, which is what validation sees and what the best model keeps; early
stopping on the validation loss.

Restartable bit for bit: every ``checkpoint_every`` updates (and when a run stops on a limit)
the workdir's ``checkpoint.pt`` receives the weights, EMA, optimizer moments, step/epoch and
position in the epoch, the best EMA weights, early-stopping counters, history and RNG state.
An epoch's batch order is a permutation seeded by ``(seed, epoch)``, so a resumed run
rebuilds it and skips the batches already done. On CPU an interrupted-then-resumed run ends
with exactly the weights and history of an uninterrupted one.

The model may be any ``nn.Module`` with ``model(batch) -> {"energy": (n_graphs,),
"forces": (n_atoms, 3)}`` where forces are −∂E/∂R (built with ``create_graph=model.training``
so the force loss can be differentiated). It is wrapped in ``EnergyShift`` carrying the
least-squares per-element reference energies of the training set.

Under ``torchrun`` (a process group initialised, see ``gemrepro.train.distributed``) every rank
takes its shard of each global batch and of the validation set, gradients and error sums are
summed over ranks, and rank 0 alone writes the checkpoint, history and best model: the run
follows the one-process run's updates, to floating-point reduction order.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from tqdm.std import tqdm

from gemrepro.data.torch_dataset import epoch_batches, fit_element_references
from gemrepro.model.checkpoint import save_trained_model
from gemrepro.model.energy_shift import EnergyShift
from gemrepro.train import distributed
from gemrepro.train.checkpoint import load_checkpoint, save_checkpoint
from gemrepro.train.ema import ExponentialMovingAverage
from gemrepro.train.losses import EnergyForceLoss
from gemrepro.train.schedules import WarmupExponentialDecay

__all__ = ["TrainConfig", "TrainResult", "evaluate", "train_model"]

CHECKPOINT_NAME = "checkpoint.pt"
BEST_MODEL_NAME = "best_model.pt"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Fields a resumed run may change; any other change would make the resumed run a different run.
_RESUMABLE_CHANGES = {
    "max_epochs", "max_steps", "max_wall_time_s", "patience", "checkpoint_every", "device",
    "eval_batch_size",
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (GemNet's reference values where they apply).

    GemNet's own multi-million-step runs use warm-up 10k and decay 1.2M steps at rate 0.01;
    the defaults below are scaled for runs of a few thousand to 100k updates.
    ``patience`` counts validations without improvement; ``max_wall_time_s`` limits one
    invocation (a resumed run gets a fresh budget). The best weights follow every improvement of
    the validation loss, but only an improvement by more than ``min_delta`` and by more than the
    fraction ``min_relative_delta`` of the loss that last reset the patience counts as progress:
    with a decaying learning rate the loss keeps creeping down by tiny amounts, and without a
    relative threshold a plateau would never stop the run.
    """

    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int | None = None
    max_steps: int | None = 10_000
    warmup_steps: int = 1000
    decay_steps: int = 100_000
    decay_rate: float = 0.01
    ema_decay: float = 0.999
    ema_use_num_updates: bool = True
    energy_weight: float = 0.001
    force_weight: float = 0.999
    grad_clip_norm: float | None = 10.0
    weight_decay: float = 0.0
    patience: int = 20
    min_delta: float = 0.0
    min_relative_delta: float = 0.0
    eval_every: int = 100
    eval_batch_size: int | None = None
    checkpoint_every: int = 100
    max_wall_time_s: float | None = None
    fit_element_references: bool = True
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        positive = ("batch_size", "eval_every", "checkpoint_every", "patience")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.max_epochs is None and self.max_steps is None and self.max_wall_time_s is None:
            raise ValueError("TrainConfig: expected at least one of max_epochs, max_steps, max_wall_time_s")
        for name in ("max_epochs", "max_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}: expected a non-negative integer or None, got {value!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"ema_decay: expected a value in [0, 1], got {self.ema_decay}")
        if not 0.0 <= self.min_relative_delta < 1.0:
            raise ValueError(f"min_relative_delta: expected a fraction in [0, 1), got {self.min_relative_delta!r}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm: expected a positive number or None, got {self.grad_clip_norm}")
        self.schedule()  # validates lr, warm-up and decay
        self.loss()  # validates the loss weights

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def schedule(self) -> WarmupExponentialDecay:
        return WarmupExponentialDecay(self.lr, self.warmup_steps, self.decay_steps, self.decay_rate)

    def loss(self) -> EnergyForceLoss:
        return EnergyForceLoss(energy_weight=self.energy_weight, force_weight=self.force_weight)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {sorted(unknown)}")
        return cls(**values)


@dataclass
class TrainResult:
    """What a training run produced: the best EMA model and how it got there."""

    model: EnergyShift
    history: pd.DataFrame
    best_metrics: dict[str, float]
    stop_reason: str
    steps: int
    epochs_completed: int
    wall_time_s: float  # this invocation
    steps_per_second: float
    samples_per_second: float
    workdir: Path
    best_model_path: Path
    resumed_from_step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _prepare(batch: Batch, device: torch.device, dtype: torch.dtype) -> Batch:
    """The batch on ``device`` with positions and targets in the model's precision."""
    batch = batch.to(device)
    for key in ("pos", "energy", "forces"):
        batch[key] = batch[key].to(dtype)
    return batch


def _collate(dataset: Sequence[Data], indices: Sequence[int]) -> Batch:
    return Batch.from_data_list([dataset[i] for i in indices])


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module,
    dataset: Sequence[Data],
    batch_size: int = 32,
    loss: EnergyForceLoss | None = None,
) -> dict[str, float]:
    """Energy and force errors of ``model`` on ``dataset`` (eV, eV/Å).

    ``energy_mae`` is per molecule; ``forces_mae`` and ``forces_rmse`` are over Cartesian
    components, as the papers report them. ``force_norm_error`` (mean per-atom ‖ΔF‖₂) and
    ``loss`` (the training loss on this set) are included for early stopping.
    """
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one structure to evaluate")
    return _metrics(_error_sums(model, dataset, range(len(dataset)), batch_size), loss or EnergyForceLoss())


def _evaluate_sharded(
    model: nn.Module, dataset: Sequence[Data], batch_size: int, loss: EnergyForceLoss, world: distributed.World
) -> dict[str, float]:
    """``evaluate`` with each rank taking every ``world.size``-th structure; sums meet by ``all_reduce``."""
    if not world.is_distributed:
        return evaluate(model, dataset, batch_size, loss)
    sums = _error_sums(model, dataset, distributed.shard(range(len(dataset)), world), batch_size)
    reduced = distributed.all_reduce_sum(torch.tensor(sums, dtype=torch.float64, device=_model_device(model)))
    return _metrics(reduced.tolist(), loss)


def _error_sums(model: nn.Module, dataset: Sequence[Data], indices: Sequence[int], batch_size: int) -> list[float]:
    """Summed errors over ``indices``: |ΔE|, |ΔF| components, ΔF², per-atom ‖ΔF‖, molecules, atoms."""
    device, dtype = _model_device(model), _model_dtype(model)
    indices = list(indices)
    was_training = model.training
    model.eval()
    energy_abs = force_abs = force_sq = force_norm = 0.0
    n_molecules = n_atoms = 0
    try:
        for start in range(0, len(indices), batch_size):
            batch = _prepare(_collate(dataset, indices[start : start + batch_size]), device, dtype)
            with torch.enable_grad():  # forces are −∂E/∂R, which needs autograd
                out = model(batch)
            energy_error = (out["energy"].detach().reshape(-1) - batch.energy.reshape(-1)).double()
            force_error = (out["forces"].detach() - batch.forces).double()
            energy_abs += float(energy_error.abs().sum())
            force_abs += float(force_error.abs().sum())
            force_sq += float((force_error**2).sum())
            force_norm += float(torch.linalg.vector_norm(force_error, dim=-1).sum())
            n_molecules += energy_error.numel()
            n_atoms += force_error.shape[0]
    finally:
        model.train(was_training)
    return [energy_abs, force_abs, force_sq, force_norm, n_molecules, n_atoms]


def _metrics(sums: Sequence[float], loss: EnergyForceLoss) -> dict[str, float]:
    energy_abs, force_abs, force_sq, force_norm, n_molecules, n_atoms = sums
    n_molecules, n_atoms = int(round(n_molecules)), int(round(n_atoms))
    metrics = {
        "energy_mae": energy_abs / n_molecules,
        "forces_mae": force_abs / (3 * n_atoms),
        "forces_rmse": math.sqrt(force_sq / (3 * n_atoms)),
        "force_norm_error": force_norm / n_atoms,
        "n": n_molecules,
    }
    metrics["loss"] = loss.force_weight * metrics["force_norm_error"] + loss.energy_weight * metrics["energy_mae"]
    return metrics


def _check_resumable(saved: dict, config: TrainConfig, n_train: int, n_val: int) -> None:
    changed = sorted(
        k for k, v in config.to_dict().items() if saved["config"].get(k) != v and k not in _RESUMABLE_CHANGES
    )
    if changed:
        raise ValueError(
            f"checkpoint: cannot resume with changed settings {changed}; use a new workdir "
            f"or the checkpoint's values"
        )
    if (saved["n_train"], saved["n_val"]) != (n_train, n_val):
        raise ValueError(
            f"checkpoint: trained on {saved['n_train']} / {saved['n_val']} train / val structures, "
            f"got {n_train} / {n_val}"
        )


def _stop_reason(config: TrainConfig, step: int, epoch: int, started: float) -> str | None:
    """Which limit, if any, the run has reached before its next update."""
    if config.max_steps is not None and step >= config.max_steps:
        return "max_steps"
    if config.max_epochs is not None and epoch >= config.max_epochs:
        return "max_epochs"
    if config.max_wall_time_s is not None and time.perf_counter() - started >= config.max_wall_time_s:
        return "max_wall_time"
    return None


def _agreed_stop_reason(
    config: TrainConfig, step: int, epoch: int, started: float, world: distributed.World, device: torch.device
) -> str | None:
    """``_stop_reason``, with every rank stopping on the wall time when one rank reached it."""
    reason = _stop_reason(config, step, epoch, started)
    if world.is_distributed and config.max_wall_time_s is not None and reason in (None, "max_wall_time"):
        reason = "max_wall_time" if distributed.any_rank(reason == "max_wall_time", device) else None
    return reason


def _global_batch_size(dataset: Sequence[Data], indices: Sequence[int]) -> tuple[int, int]:
    """Atoms and molecules of a whole global batch (every rank knows its indices)."""
    return sum(int(dataset[i].num_nodes) for i in indices), len(indices)


def _sharded_backward(
    model: nn.Module,
    dataset: Sequence[Data],
    indices: Sequence[int],
    loss_fn: EnergyForceLoss,
    world: distributed.World,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Back-propagate this rank's shard of a global batch; leave the global batch's gradient in ``.grad``.

    Returns the global batch's loss (every rank gets the same) and its two terms.
    """
    n_atoms, n_molecules = _global_batch_size(dataset, indices)
    mine = distributed.shard(indices, world)
    if mine:
        batch = _prepare(_collate(dataset, mine), device, dtype)
        loss, terms = distributed.shard_loss(loss_fn, model(batch), batch, n_atoms, n_molecules)
        loss.backward()
    else:  # fewer structures than ranks in the last batch of an epoch
        terms = torch.zeros(3, dtype=torch.float64, device=device)
    distributed.all_reduce_gradients(model)
    totals = distributed.all_reduce_sum(terms).tolist()
    return torch.tensor(totals[0], dtype=torch.float64), {"force_term": totals[1], "energy_term": totals[2]}


def train_model(
    model: nn.Module,
    train_set: Sequence[Data],
    val_set: Sequence[Data],
    config: TrainConfig,
    workdir: str | Path,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set``, validating on ``val_set``; resume if ``workdir`` has a checkpoint.

    ``callback(step, info)`` runs after every update (``info``: loss terms and lr); an
    exception it raises ends the run without a checkpoint, like a killed job. The best EMA
    weights are saved to ``workdir/best_model.pt`` (see ``load_trained_model``).

    Inside an initialised process group (``torchrun``; see ``gemrepro.train.distributed``) the
    global batch of ``config.batch_size`` is split over the ranks, which must all call this with
    the same data, model and config; ``callback`` runs on every rank.
    """
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(
            f"train_model: expected non-empty training and validation sets, got {len(train_set)} and {len(val_set)}"
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = workdir / CHECKPOINT_NAME
    world = distributed.current_world()
    device, dtype = distributed.device_for_rank(config.device, world), config.torch_dtype
    loss_fn, schedule = config.loss(), config.schedule()
    eval_batch_size = config.eval_batch_size or config.batch_size
    torch.manual_seed(config.seed)

    saved = load_checkpoint(checkpoint_path) if checkpoint_path.is_file() else None
    if saved is not None:
        _check_resumable(saved, config, len(train_set), len(val_set))

    if isinstance(model, EnergyShift):
        wrapped = model
    else:
        wrapped = EnergyShift(model)
        if config.fit_element_references and saved is None:
            wrapped.set_element_energies(fit_element_references(train_set))
    wrapped.to(device=device, dtype=dtype)
    wrapped.train()
    if world.is_distributed:
        distributed.broadcast_module(wrapped)
    optimizer = torch.optim.Adam(
        wrapped.parameters(), lr=config.lr, amsgrad=True, weight_decay=config.weight_decay
    )
    ema = ExponentialMovingAverage(wrapped, config.ema_decay, config.ema_use_num_updates)

    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "batch_in_epoch": 0,
        "best_val_loss": math.inf,
        "best_step": None,
        "best_metrics": None,
        "best_state": None,
        "evals_without_improvement": 0,
        "progress_loss": math.inf,  # the validation loss that last reset the patience
        "history": [],
        "running": {"loss": 0.0, "force_term": 0.0, "energy_term": 0.0, "count": 0},
        "stop_reason": None,
        "total_wall_time_s": 0.0,
    }
    if saved is not None:
        wrapped.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng_state"])
        state.update(saved["state"])
    resumed_from = state["step"]

    def checkpoint() -> None:
        if not world.is_main:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "config": config.to_dict(),
                "n_train": len(train_set),
                "n_val": len(val_set),
                "model": wrapped.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.to_dict(),
                "torch_rng_state": torch.get_rng_state(),
                "state": {**state, "total_wall_time_s": state["total_wall_time_s"] + time.perf_counter() - started},
            },
        )

    def validate(lr: float) -> None:
        with ema.average_parameters(wrapped):
            metrics = _evaluate_sharded(wrapped, val_set, eval_batch_size, loss_fn, world)
            improved = metrics["loss"] < state["best_val_loss"]
            threshold = state.get("progress_loss", state["best_val_loss"])
            progressed = metrics["loss"] < min(threshold - config.min_delta, threshold * (1.0 - config.min_relative_delta))
            if improved:
                state["best_state"] = {k: v.detach().clone() for k, v in wrapped.state_dict().items()}
        running = state["running"]
        count = max(running["count"], 1)
        state["history"].append(
            {
                "step": state["step"],
                "epoch": state["epoch"],
                "lr": lr,
                "train_loss": running["loss"] / count,
                "train_force_term": running["force_term"] / count,
                "train_energy_term": running["energy_term"] / count,
                "val_loss": metrics["loss"],
                "val_energy_mae": metrics["energy_mae"],
                "val_forces_mae": metrics["forces_mae"],
                "val_forces_rmse": metrics["forces_rmse"],
            }
        )
        state["running"] = {"loss": 0.0, "force_term": 0.0, "energy_term": 0.0, "count": 0}
        if improved:
            state["best_val_loss"] = metrics["loss"]
            state["best_step"] = state["step"]
            state["best_metrics"] = dict(metrics)
        if progressed:
            state["progress_loss"] = metrics["loss"]
            state["evals_without_improvement"] = 0
        else:
            state["evals_without_improvement"] += 1
            if state["evals_without_improvement"] >= config.patience:
                state["stop_reason"] = "early_stopping"

    n_batches = math.ceil(len(train_set) / config.batch_size)
    total = config.max_steps
    if config.max_epochs is not None:
        total = min(total or math.inf, config.max_epochs * n_batches)
    bar = tqdm(
        total=None if total in (None, math.inf) else int(total),
        initial=state["step"],
        disable=not progress or not world.is_main,
        desc="train",
        unit="step",
    )
    started = time.perf_counter()
    samples_done = 0
    if state["stop_reason"] != "early_stopping":
        state["stop_reason"] = None
    try:
        while state["stop_reason"] is None:
            if (reason := _agreed_stop_reason(config, state["step"], state["epoch"], started, world, device)) is not None:
                state["stop_reason"] = reason
                break
            batches = epoch_batches(len(train_set), config.batch_size, config.seed, state["epoch"])
            while state["batch_in_epoch"] < len(batches):
                if (reason := _agreed_stop_reason(config, state["step"], state["epoch"], started, world, device)) is not None:
                    state["stop_reason"] = reason
                    break
                indices = batches[state["batch_in_epoch"]]
                state["step"] += 1
                lr = schedule.apply(optimizer, state["step"])
                optimizer.zero_grad(set_to_none=True)
                if world.is_distributed:  # backward and all-reduce inside: every rank sees the global loss
                    loss, terms = _sharded_backward(wrapped, train_set, indices, loss_fn, world, device, dtype)
                else:
                    batch = _prepare(_collate(train_set, indices), device, dtype)
                    loss, terms = loss_fn(wrapped(batch), batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss is {float(loss)} at step {state['step']}")
                if not world.is_distributed:
                    loss.backward()
                if config.grad_clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(wrapped.parameters(), config.grad_clip_norm)
                optimizer.step()
                ema.update(wrapped)
                state["batch_in_epoch"] += 1
                samples_done += len(indices)
                running = state["running"]
                running["loss"] += float(loss.detach())
                running["force_term"] += terms["force_term"]
                running["energy_term"] += terms["energy_term"]
                running["count"] += 1
                bar.update(1)
                if state["step"] % config.eval_every == 0:
                    validate(lr)
                    last = state["history"][-1]
                    bar.set_postfix(
                        loss=f"{last['train_loss']:.4g}",
                        val_F_mae=f"{last['val_forces_mae']:.4g}",
                        val_E_mae=f"{last['val_energy_mae']:.4g}",
                    )
                if state["step"] % config.checkpoint_every == 0 or state["stop_reason"]:
                    checkpoint()
                if callback is not None:
                    callback(state["step"], {"loss": float(loss.detach()), "lr": lr, **terms})
                if state["stop_reason"]:
                    break
            else:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
        checkpoint()
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    steps_done = state["step"] - resumed_from

    if state["best_state"] is not None:
        wrapped.load_state_dict(state["best_state"])
        best_metrics = dict(state["best_metrics"])
        best_metrics["step"] = state["best_step"]
    else:  # stopped before the first validation: keep the current EMA weights
        ema.copy_to(wrapped)
        best_metrics = _evaluate_sharded(wrapped, val_set, eval_batch_size, loss_fn, world)
        best_metrics["step"] = state["step"]
    wrapped.eval()
    best_path = workdir / BEST_MODEL_NAME
    history = pd.DataFrame(state["history"])
    if world.is_main:
        save_trained_model(
            best_path,
            wrapped,
            metadata={"train_config": config.to_dict(), "best_metrics": best_metrics, "steps": state["step"]},
        )
        history.to_csv(workdir / "history.csv", index=False)
        (workdir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    if world.is_distributed:
        distributed.barrier()  # the files exist on every rank's return
    return TrainResult(
        model=wrapped,
        history=history,
        best_metrics=best_metrics,
        stop_reason=state["stop_reason"],
        steps=state["step"],
        epochs_completed=state["epoch"],
        wall_time_s=elapsed,
        steps_per_second=steps_done / elapsed if elapsed > 0 else float("nan"),
        samples_per_second=samples_done / elapsed if elapsed > 0 else float("nan"),
        workdir=workdir,
        best_model_path=best_path,
        resumed_from_step=resumed_from,
    )
