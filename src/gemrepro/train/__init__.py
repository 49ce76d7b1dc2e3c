"""Training GemNet-style energy-and-force models: loss, schedule, EMA, checkpoints, loop.

Public entry points: ``TrainConfig``, ``train_model``, ``evaluate``, ``EnergyShift`` and
``save_trained_model`` / ``load_trained_model``.
"""

from gemrepro.train.checkpoint import (
    load_checkpoint,
    load_trained_model,
    save_checkpoint,
    save_trained_model,
)
from gemrepro.train.ema import ExponentialMovingAverage
from gemrepro.train.energy_shift import EnergyShift
from gemrepro.train.losses import EnergyForceLoss, energy_mae, force_norm_error
from gemrepro.train.schedules import WarmupExponentialDecay
from gemrepro.train.trainer import TrainConfig, TrainResult, evaluate, train_model

__all__ = [
    "EnergyForceLoss",
    "EnergyShift",
    "ExponentialMovingAverage",
    "TrainConfig",
    "TrainResult",
    "WarmupExponentialDecay",
    "energy_mae",
    "evaluate",
    "force_norm_error",
    "load_checkpoint",
    "load_trained_model",
    "save_checkpoint",
    "save_trained_model",
    "train_model",
]
