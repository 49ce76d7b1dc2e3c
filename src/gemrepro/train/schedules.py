"""Learning rate: linear warm-up, then exponential decay (GemNet's reference schedule).

``lr(step) = lr0 · min(1, step / warmup_steps) · decay_rate ** (step / decay_steps)``.

``step`` counts optimizer updates from 1: the first update uses ``lr(1)``, so no update is
wasted at a zero learning rate. The schedule is a pure function of the step, so resuming a run
needs only the step count to restore it exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

__all__ = ["WarmupExponentialDecay"]


@dataclass(frozen=True)
class WarmupExponentialDecay:
    lr: float = 1e-3
    warmup_steps: int = 1000
    decay_steps: int = 100_000
    decay_rate: float = 0.01

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected >= 0, got {self.warmup_steps}")
        if self.decay_steps <= 0:
            raise ValueError(f"decay_steps: expected > 0, got {self.decay_steps}")
        if not 0 < self.decay_rate <= 1:
            raise ValueError(f"decay_rate: expected a value in (0, 1], got {self.decay_rate}")

    def __call__(self, step: int) -> float:
        """The learning rate of update number ``step`` (1-based)."""
        warmup = 1.0 if self.warmup_steps == 0 else min(1.0, step / self.warmup_steps)
        return self.lr * warmup * self.decay_rate ** (step / self.decay_steps)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's learning rate for update ``step``; return it."""
        lr = self(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def to_dict(self) -> dict:
        return asdict(self)
