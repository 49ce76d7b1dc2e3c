"""Training GemNet-style energy-and-force models: loss, schedule, EMA, checkpoints, loop.

Public entry points: ``TrainConfig``, ``train_model`` (a ``Trainer`` run, its state a
``TrainState``), ``evaluate``. The trained model a run
writes is a model file of :mod:`gemrepro.model` (``save_model``, read by ``load_model``).
"""

from gemrepro.train.checkpoint import load_checkpoint, save_checkpoint
from gemrepro.train.ema import ExponentialMovingAverage
from gemrepro.train.losses import EnergyForceLoss, energy_mae, force_norm_error
from gemrepro.train.schedules import WarmupExponentialDecay
from gemrepro.train.state import TrainState
from gemrepro.train.trainer import TrainConfig, Trainer, TrainResult, evaluate, train_model

__all__ = [
    "EnergyForceLoss",
    "ExponentialMovingAverage",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "WarmupExponentialDecay",
    "energy_mae",
    "evaluate",
    "force_norm_error",
    "load_checkpoint",
    "save_checkpoint",
    "train_model",
]
