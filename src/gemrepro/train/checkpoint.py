"""Atomic checkpoint files and the saved form of a trained model.

A checkpoint is written to a temporary file in the same folder and moved into place with
``os.replace``, which is atomic on POSIX: a run killed mid-write leaves the previous
checkpoint intact, never a truncated one that a resumed run would trust.

A *trained model* file holds the wrapped model's weights (EMA weights of the best
validation step), its per-element energy references (the ``EnergyShift`` buffer), the model
class and configuration needed to rebuild it, and free-form metadata (training config,
metrics).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gemrepro.model.checkpoint import load_weights
from gemrepro.train.energy_shift import EnergyShift

__all__ = ["load_checkpoint", "load_trained_model", "save_checkpoint", "save_trained_model"]

TRAINED_MODEL_FORMAT = "gemrepro-trained-model/1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # noqa: BLE001 - torch's message advises unsafe loading; the user needs what the file is not
        raise ValueError(f"{path}: not a gemrepro checkpoint or model file (torch cannot read it as saved weights)") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a gemrepro checkpoint or model file (holds a {type(payload).__name__})")
    return payload


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _config_dict(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def save_trained_model(
    path: str | os.PathLike, model: EnergyShift, metadata: dict[str, Any] | None = None
) -> Path:
    """Save an ``EnergyShift``-wrapped model so ``load_trained_model`` can rebuild it."""
    if not isinstance(model, EnergyShift):
        raise ValueError(f"model: expected an EnergyShift-wrapped model, got {type(model).__name__}")
    payload = {
        "format": TRAINED_MODEL_FORMAT,
        "model_class": _class_path(model.model),
        "model_config": _config_dict(model.model),
        "config_class": _class_path(model.model.config) if hasattr(model.model, "config") else None,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "element_energies": {int(k): float(v) for k, v in model.reference_energies().items()},
        "metadata": metadata or {},
    }
    return save_checkpoint(path, payload)


def _import(class_path: str) -> Any:
    module_name, _, qualname = class_path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _build_model(class_path: str, config: dict | None, config_class: str | None) -> nn.Module:
    """Instantiate ``module:Class`` as ``Class(ConfigClass(**config))`` (or ``from_dict``)."""
    cls = _import(class_path)
    if config is None:
        return cls()
    if config_class is None:
        return cls(**config)
    config_cls = _import(config_class)
    values = config_cls.from_dict(config) if hasattr(config_cls, "from_dict") else config_cls(**config)
    return cls(values)


def load_trained_model(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> EnergyShift:
    """A trained model, in eval mode, with its element references applied.

    ``model`` (an untrained instance of the same architecture, bare or wrapped) receives the
    weights; without it the model is rebuilt from the saved class and configuration.
    """
    payload = load_checkpoint(path, map_location=map_location)
    if payload.get("format") != TRAINED_MODEL_FORMAT:
        raise ValueError(f"trained model {path}: expected format {TRAINED_MODEL_FORMAT!r}, got {payload.get('format')!r}")
    if model is None:
        model = _build_model(payload["model_class"], payload["model_config"], payload.get("config_class"))
    wrapped = model if isinstance(model, EnergyShift) else EnergyShift(model)
    state = payload["state_dict"]
    dtype = next((v.dtype for k, v in state.items() if k.startswith("model.") and v.is_floating_point()), None)
    if dtype is not None:
        wrapped.to(dtype)
    load_weights(wrapped, state, path, f"trained {payload['model_class'].rpartition(':')[2]}")
    wrapped.metadata = payload["metadata"]
    return wrapped.eval()


def read_trained_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata stored with a trained model (training config, metrics)."""
    return load_checkpoint(path)["metadata"]
