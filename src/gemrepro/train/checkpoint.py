"""Atomic training checkpoints (the whole training state, for an exact resume).

A checkpoint is written to a temporary file in the same folder and moved into place with
``os.replace``, which is atomic on POSIX: a run killed mid-write leaves the previous
checkpoint intact, never a truncated one that a resumed run would trust. The trained model a
run produces is a model file (:func:`gemrepro.model.save_model`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gemrepro.model.checkpoint import read_checkpoint, save_payload

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically (temp file + fsync + ``os.replace``)."""
    return save_payload(path, state)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``."""
    payload = read_checkpoint(path, map_location)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a gemrepro checkpoint or model file (holds a {type(payload).__name__})")
    return payload
