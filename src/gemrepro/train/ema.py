"""Exponential moving average of model weights, the weights GemNet is evaluated and saved with.

After each optimizer update, ``shadow ← decay · shadow + (1 − decay) · θ``. Averaging over
the last ~1/(1 − decay) updates (1000 for 0.999) smooths out the noise of the final steps of
stochastic training, which lowers validation error at no cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    """Shadow copies of a model's trainable parameters, keyed by parameter name.

    ``use_num_updates`` caps the decay at ``(1 + n) / (10 + n)`` after ``n`` updates (the
    ``torch_ema`` convention), so the average forgets the random initialisation in short runs;
    the cap reaches 0.999 after ~9000 updates. With it off, a 0.999 average of a 100-step run
    would still weigh the initial weights by 0.9.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, use_num_updates: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ema_decay: expected a value in [0, 1], got {decay}")
        self.decay = float(decay)
        self.use_num_updates = use_num_updates
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def current_decay(self) -> float:
        if self.use_num_updates:
            return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the average (call after each step)."""
        self.num_updates += 1
        decay = self.current_decay()
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters with the averaged ones."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name])

    @contextmanager
    def average_parameters(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily swap the averaged weights in (for evaluation); restore them exactly after."""
        saved = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in saved:
                        p.copy_(saved[name])

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "use_num_updates": self.use_num_updates,
            "num_updates": self.num_updates,
            "shadow": {k: v.clone() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state: parameter names do not match the model: {sorted(missing)[:5]}")
        self.decay = float(state["decay"])
        self.use_num_updates = bool(state["use_num_updates"])
        self.num_updates = int(state["num_updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
