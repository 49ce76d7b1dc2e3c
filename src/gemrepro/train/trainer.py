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
follows the one-process run's updates, to floating-point reduction order. The ``Trainer`` does
not branch on it: a strategy (``gemrepro.train.strategies``), chosen once, does the parts that differ.
What a checkpoint holds is a ``TrainState`` and an ``Optimization`` (``gemrepro.train.state``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from torch import nn
from tqdm.std import tqdm

from gemrepro.data.torch_dataset import GraphSet, epoch_batches, fit_element_references
from gemrepro.model.checkpoint import save_model
from gemrepro.model.energy_shift import EnergyShift, as_energy_shift
from gemrepro.train import distributed
from gemrepro.train.checkpoint import load_checkpoint
from gemrepro.train.ema import ExponentialMovingAverage
from gemrepro.train.evaluation import evaluate
from gemrepro.train.losses import EnergyForceLoss
from gemrepro.train.schedules import WarmupExponentialDecay
from gemrepro.train.state import Optimization, TrainState
from gemrepro.train.strategies import Strategy, strategy_for

__all__ = ["TrainConfig", "TrainResult", "Trainer", "evaluate", "train_model"]

CHECKPOINT_NAME = "checkpoint.pt"
BEST_MODEL_NAME = "best_model.pt"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Fields a resumed run may change; any other change would make the resumed run a different run.
_RESUMABLE_CHANGES = {
    "max_epochs",
    "max_steps",
    "max_wall_time_s",
    "patience",
    "checkpoint_every",
    "device",
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


def _check_resumable(saved: dict, config: TrainConfig, n_train: int, n_val: int) -> None:
    changed = sorted(
        k for k, v in config.to_dict().items() if saved["config"].get(k) != v and k not in _RESUMABLE_CHANGES
    )
    if changed:
        raise ValueError(
            f"checkpoint: cannot resume with changed settings {changed}; use a new workdir or the checkpoint's values"
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


def _wrap(model: nn.Module, train_set: GraphSet, config: TrainConfig, fresh: bool) -> EnergyShift:
    """``model`` with per-element reference energies; a fresh run fits them to the training set
    unless the model brings its own (a fine-tuned model keeps its pretraining's)."""
    wrapped = as_energy_shift(model)
    if config.fit_element_references and fresh and not wrapped.reference_energies():
        wrapped.set_element_energies(fit_element_references(train_set))
    return wrapped


class Trainer:
    """One training run in ``workdir``: updates, validations, early stopping, checkpoints.

    Built from a checkpoint in ``workdir`` when there is one (same config up to
    ``_RESUMABLE_CHANGES``, same set sizes), so :meth:`run` continues where it stopped.
    ``strategy`` spreads the work (default: :func:`strategy_for` the current process group).
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: GraphSet,
        val_set: GraphSet,
        config: TrainConfig,
        workdir: str | Path,
        *,
        strategy: Strategy | None = None,
        progress: bool = True,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        if len(train_set) == 0 or len(val_set) == 0:
            raise ValueError(
                f"train_model: expected non-empty training and validation sets, got {len(train_set)} and {len(val_set)}"
            )
        self.train_set, self.val_set, self.config = train_set, val_set, config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.strategy = strategy or strategy_for(distributed.current_world())
        self.device, self.dtype = self.strategy.device(config.device), config.torch_dtype
        self.loss_fn = config.loss()
        self.eval_batch_size = config.eval_batch_size or config.batch_size
        self.progress, self.callback = progress, callback
        self._bar, self._started, self._samples_done = tqdm(disable=True), time.perf_counter(), 0  # set by run()
        torch.manual_seed(config.seed)
        saved = self._read_checkpoint()
        self.optimization = self._optimization(_wrap(model, train_set, config, fresh=saved is None))
        self.state = self._restore(saved) if saved is not None else TrainState()
        self.resumed_from = self.state.step

    @property
    def checkpoint_path(self) -> Path:
        return self.workdir / CHECKPOINT_NAME

    @property
    def model(self) -> EnergyShift:
        return self.optimization.model

    def _read_checkpoint(self) -> dict | None:
        if not self.checkpoint_path.is_file():
            return None
        saved = load_checkpoint(self.checkpoint_path)
        _check_resumable(saved, self.config, len(self.train_set), len(self.val_set))
        return saved

    def _restore(self, saved: dict) -> TrainState:
        """The checkpoint's state, its weights loaded; a model of another shape (preset, variant) is refused
        in one line, not torch's list of every mismatched tensor."""
        try:
            return TrainState.restore(saved, self.optimization)
        except RuntimeError as exc:
            if "size mismatch" not in str(exc) and "state_dict" not in str(exc):
                raise
            raise ValueError(
                f"{self.checkpoint_path}: its weights do not fit the model given (another architecture or size); "
                "resume with the model it was trained with, or use a new workdir"
            ) from None

    def _optimization(self, model: EnergyShift) -> Optimization:
        model.to(device=self.device, dtype=self.dtype)
        model.train()
        self.strategy.share_weights(model)
        config = self.config
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, amsgrad=True, weight_decay=config.weight_decay)
        ema = ExponentialMovingAverage(model, config.ema_decay, config.ema_use_num_updates)
        return Optimization(model, ema, optimizer, config.schedule())

    def should_stop(self) -> str | None:
        """The limit this run has reached before its next update, agreed by every process."""
        reason = _stop_reason(self.config, self.state.step, self.state.epoch, self._started)
        return self.strategy.agree_on_stop(reason, self.config.max_wall_time_s is not None, self.device)

    def train_step(self, indices: Sequence[int]) -> None:
        """One update on the global batch ``indices``; validate and checkpoint when they are due."""
        state, opt = self.state, self.optimization
        state.step += 1
        lr = opt.schedule.apply(opt.optimizer, state.step)
        opt.optimizer.zero_grad(set_to_none=True)
        loss, terms = self.strategy.backward(opt.model, self.train_set, indices, self.loss_fn, self.dtype, state.step)
        if self.config.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(opt.model.parameters(), self.config.grad_clip_norm)
        opt.optimizer.step()
        opt.ema.update(opt.model)
        state.batch_in_epoch += 1
        self._samples_done += len(indices)
        state.running.add(float(loss.detach()), terms)
        self._bar.update(1)
        if state.step % self.config.eval_every == 0:
            self.validate(lr)
        if state.step % self.config.checkpoint_every == 0 or state.stop_reason:
            self.checkpoint()
        if self.callback is not None:
            self.callback(state.step, {"loss": float(loss.detach()), "lr": lr, **terms})

    def validate(self, lr: float) -> None:
        """Errors of the EMA weights on the validation set, into the history and the early stopping."""
        opt = self.optimization
        with opt.ema.average_parameters(opt.model):
            metrics = self.strategy.evaluate(opt.model, self.val_set, self.eval_batch_size, self.loss_fn)
            if self.state.improves(metrics["loss"]):
                self.state.best_state = {k: v.detach().clone() for k, v in opt.model.state_dict().items()}
        self.state.record_validation(
            metrics,
            lr,
            patience=self.config.patience,
            min_delta=self.config.min_delta,
            min_relative_delta=self.config.min_relative_delta,
        )
        last = self.state.history[-1]
        self._bar.set_postfix(
            loss=f"{last['train_loss']:.4g}",
            val_F_mae=f"{last['val_forces_mae']:.4g}",
            val_E_mae=f"{last['val_energy_mae']:.4g}",
        )

    def checkpoint(self) -> None:
        """Everything an exact resume needs, written by the main process alone."""
        if not self.strategy.world.is_main:
            return
        identity = {"config": self.config.to_dict(), "n_train": len(self.train_set), "n_val": len(self.val_set)}
        self.state.save(self.checkpoint_path, self.optimization, identity, time.perf_counter() - self._started)

    def run_epoch(self) -> str | None:
        """Train on what is left of the current epoch; why the run stops within it, if it does."""
        batches = epoch_batches(len(self.train_set), self.config.batch_size, self.config.seed, self.state.epoch)
        while self.state.batch_in_epoch < len(batches):
            if (reason := self.should_stop()) is not None:
                return reason
            self.train_step(batches[self.state.batch_in_epoch])
            if self.state.stop_reason:
                return self.state.stop_reason
        self.state.new_epoch()
        return None

    def run(self) -> TrainResult:
        """Train until a limit or early stopping, checkpoint, and keep the best EMA weights."""
        self._bar = self._progress_bar()
        self._started = time.perf_counter()
        self._samples_done = 0
        if self.state.stop_reason != "early_stopping":  # a limit may have been raised since; early stopping holds
            self.state.stop_reason = None
        try:
            while self.state.stop_reason is None:
                self.state.stop_reason = self.should_stop() or self.run_epoch()
            self.checkpoint()
        finally:
            self._bar.close()
        elapsed = time.perf_counter() - self._started
        best_metrics = self._keep_best()
        history = pd.DataFrame(self.state.history)
        best_path = self._write_outputs(best_metrics, history)
        steps_done = self.state.step - self.resumed_from
        return TrainResult(
            model=self.model,
            history=history,
            best_metrics=best_metrics,
            stop_reason=self.state.stop_reason,
            steps=self.state.step,
            epochs_completed=self.state.epoch,
            wall_time_s=elapsed,
            steps_per_second=steps_done / elapsed if elapsed > 0 else float("nan"),
            samples_per_second=self._samples_done / elapsed if elapsed > 0 else float("nan"),
            workdir=self.workdir,
            best_model_path=best_path,
            resumed_from_step=self.resumed_from,
        )

    def _progress_bar(self) -> tqdm:
        n_batches = math.ceil(len(self.train_set) / self.config.batch_size)
        total: float | None = self.config.max_steps
        if self.config.max_epochs is not None:
            total = min(total or math.inf, self.config.max_epochs * n_batches)
        return tqdm(
            total=None if total in (None, math.inf) else int(total),
            initial=self.state.step,
            disable=not self.progress or not self.strategy.world.is_main,
            desc="train",
            unit="step",
        )

    def _keep_best(self) -> dict[str, float]:
        """Load the best EMA weights into the model (the current ones if nothing was validated); their metrics."""
        model, state = self.model, self.state
        if state.best_state is not None:
            model.load_state_dict(state.best_state)
            # best_state, best_step and best_metrics are set together (TrainState)
            best_metrics = {**cast(dict[str, float], state.best_metrics), "step": cast(int, state.best_step)}
        else:  # stopped before the first validation: keep the current EMA weights
            self.optimization.ema.copy_to(model)
            best_metrics = self.strategy.evaluate(model, self.val_set, self.eval_batch_size, self.loss_fn)
            best_metrics["step"] = state.step
        model.eval()
        return best_metrics

    def _write_outputs(self, best_metrics: dict[str, float], history: pd.DataFrame) -> Path:
        """``best_model.pt``, ``history.csv`` and ``train_config.json`` (main process), seen by every rank."""
        best_path = self.workdir / BEST_MODEL_NAME
        config = self.config.to_dict()
        if self.strategy.world.is_main:
            save_model(
                self.model,
                best_path,
                metadata={"train_config": config, "best_metrics": best_metrics, "steps": self.state.step},
            )
            history.to_csv(self.workdir / "history.csv", index=False)
            (self.workdir / "train_config.json").write_text(json.dumps(config, indent=2))
        self.strategy.finish()
        return best_path


def train_model(
    model: nn.Module,
    train_set: GraphSet,
    val_set: GraphSet,
    config: TrainConfig,
    workdir: str | Path,
    *,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set``, validating on ``val_set``; resume if ``workdir`` has a checkpoint.

    ``callback(step, info)`` runs after every update (``info``: loss terms and lr); an
    exception it raises ends the run without a checkpoint, like a killed job. The best EMA
    weights are saved to ``workdir/best_model.pt`` (see ``gemrepro.model.load_model``).

    Inside an initialised process group (``torchrun``; see ``gemrepro.train.distributed``) the
    global batch of ``config.batch_size`` is split over the ranks, which must all call this with
    the same data, model and config; ``callback`` runs on every rank.
    """
    return Trainer(model, train_set, val_set, config, workdir, progress=progress, callback=callback).run()
