"""Model files, and the one loader that reads them all.

Two kinds of file exist, both written atomically (temp file in the same folder, then
``os.replace``, so a killed write never leaves a truncated file that a later run trusts):

* a bare GemNet (:func:`save_model`): config (T or Q) plus weights, e.g. a random-init benchmark;
* a *trained model* (:func:`save_trained_model`, what training and the learning-curve cache
  write): an :class:`~gemrepro.model.EnergyShift` around the network, i.e. the EMA weights of
  the best validation step, the per-element reference energies, the class and configuration
  to rebuild it, and free-form metadata (training config, metrics).

:func:`load_model` reads either and gives back what was saved, ready for inference.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gemrepro.model.energy_shift import EnergyShift
from gemrepro.model.gemnet import GemNet, build_model, resolve_device
from gemrepro.model.presets import GemNetConfig

TRAINED_MODEL_FORMAT = "gemrepro-trained-model/1"

# The format name predates GemNet-Q; the config's ``variant`` (absent in version 1 files, which
# are all GemNet-T) says which class to rebuild.
CHECKPOINT_FORMAT = "gemrepro.gemnet-t"
CHECKPOINT_VERSION = 2


def save_payload(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with ``torch.save`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def save_model(model: GemNet, path: str | os.PathLike) -> Path:
    """Write a bare GemNet's config + weights to ``path`` atomically."""
    return save_payload(path, {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    })


def load_model(path: str | os.PathLike, device: str | torch.device = "auto") -> nn.Module:
    """The model in a file of either kind, in eval mode on ``device``: a trained model comes back as
    its ``EnergyShift`` (references included), a bare file as its ``GemNetT``/``GemNetQ``."""
    payload = read_checkpoint(path)
    if isinstance(payload, dict) and payload.get("format") == TRAINED_MODEL_FORMAT:
        return trained_model_from_payload(payload, path).to(resolve_device(device)).eval()
    return model_from_payload(payload, path, device)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> object:
    """The raw contents of a torch file, with one-line errors for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # noqa: BLE001 - torch's message advises unsafe loading; the user needs what the file is not
        raise ValueError(f"{str(path)!r} is not a gemrepro model file (torch cannot read it as saved weights)") from None


def model_from_payload(payload: object, path: str | os.PathLike, device: str | torch.device = "auto") -> GemNet:
    """Rebuild the model of a ``save_model`` payload already read by :func:`read_checkpoint`."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a GemNet checkpoint written by save_model")
    config = GemNetConfig.from_dict(payload["config"])
    model = build_model(config)
    model = model.to(getattr(torch, payload.get("dtype", "float32")))
    load_weights(model, payload["state_dict"], path, f"GemNet-{config.variant}")
    return model.to(resolve_device(device)).eval()


def load_weights(model: torch.nn.Module, state_dict: dict, path: str | os.PathLike, what: str) -> None:
    """``model.load_state_dict`` with a one-line error when the weights are another architecture's."""
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else type(exc).__name__)
        raise ValueError(f"{str(path)!r}: its weights do not fit the {what} its config describes "
                         f"(a file of another variant or preset? {detail[:120]})") from None


# ----------------------------------------------------------------------------- trained models
def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _config_dict(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def save_trained_model(path: str | os.PathLike, model: EnergyShift, metadata: dict[str, Any] | None = None) -> Path:
    """Save an ``EnergyShift``-wrapped model so :func:`load_model` can rebuild it."""
    if not isinstance(model, EnergyShift):
        raise ValueError(f"model: expected an EnergyShift-wrapped model, got {type(model).__name__}")
    return save_payload(path, {
        "format": TRAINED_MODEL_FORMAT,
        "model_class": _class_path(model.model),
        "model_config": _config_dict(model.model),
        "config_class": _class_path(model.model.config) if hasattr(model.model, "config") else None,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "element_energies": {int(k): float(v) for k, v in model.reference_energies().items()},
        "metadata": metadata or {},
    })


def _import(class_path: str) -> Any:
    module_name, _, qualname = class_path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _build_network(class_path: str, config: dict | None, config_class: str | None) -> nn.Module:
    """Instantiate ``module:Class`` as ``Class(ConfigClass(**config))`` (or ``from_dict``)."""
    cls = _import(class_path)
    if config is None:
        return cls()
    if config_class is None:
        return cls(**config)
    config_cls = _import(config_class)
    values = config_cls.from_dict(config) if hasattr(config_cls, "from_dict") else config_cls(**config)
    return cls(values)


def trained_model_from_payload(payload: dict, path: str | os.PathLike, model: nn.Module | None = None) -> EnergyShift:
    """The ``EnergyShift`` of a trained-model payload; ``model`` (same architecture) receives the weights."""
    if payload.get("format") != TRAINED_MODEL_FORMAT:
        raise ValueError(f"trained model {path}: expected format {TRAINED_MODEL_FORMAT!r}, got {payload.get('format')!r}")
    if model is None:
        model = _build_network(payload["model_class"], payload["model_config"], payload.get("config_class"))
    wrapped = model if isinstance(model, EnergyShift) else EnergyShift(model)
    state = payload["state_dict"]
    dtype = next((v.dtype for k, v in state.items() if k.startswith("model.") and v.is_floating_point()), None)
    if dtype is not None:
        wrapped.to(dtype)
    load_weights(wrapped, state, path, f"trained {payload['model_class'].rpartition(':')[2]}")
    wrapped.metadata = payload["metadata"]
    return wrapped.eval()


def load_trained_model(path: str | os.PathLike, model: nn.Module | None = None,
                       map_location: str | torch.device = "cpu") -> EnergyShift:
    """A trained model file only (fine-tuning needs the references), optionally into ``model``'s architecture."""
    payload = read_checkpoint(path, map_location)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a gemrepro trained model file (holds a {type(payload).__name__})")
    return trained_model_from_payload(payload, path, model)


def read_trained_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata stored with a trained model (training config, metrics), without rebuilding it."""
    payload = read_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != TRAINED_MODEL_FORMAT:
        raise ValueError(f"trained model {path}: expected format {TRAINED_MODEL_FORMAT!r}")
    return payload["metadata"]
