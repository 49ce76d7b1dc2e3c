"""Model files: one format, one writer, one loader.

Every model the project writes — a trained model, a fine-tuned one, a random-init network for a
benchmark — is the same file (:data:`MODEL_FORMAT`): an :class:`~gemrepro.model.EnergyShift`
around the network (per-element reference energies, empty for an untrained network), the class and
configuration to rebuild it, its weights and free-form metadata (training config, metrics).
:func:`save_model` writes it atomically (temp file in the same folder, fsync, ``os.replace``, so a
killed write never leaves a truncated file that a later run trusts); :func:`load_model` reads it.

Files of the two earlier formats (a bare GemNet, ``gemrepro.gemnet-t``; a trained model,
``gemrepro-trained-model/1``, as shipped in ``models/tiny.tar.xz``) are read through
:func:`upgrade_payload`: their per-element energies moved from the network's former
``atom_reference`` buffer into the ``EnergyShift``, the one place they live now.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gemrepro.model.energy_shift import MAX_ATOMIC_NUMBER, EnergyShift, as_energy_shift, nonzero_references
from gemrepro.model.gemnet import GemNetQ, GemNetT, resolve_device
from gemrepro.model.presets import GemNetConfig

MODEL_FORMAT = "gemrepro-model/2"

# The earlier formats, read by ``upgrade_payload``.
LEGACY_TRAINED_FORMAT = "gemrepro-trained-model/1"
LEGACY_NETWORK_FORMAT = "gemrepro.gemnet-t"  # a bare GemNet (T or Q, by its config's ``variant``)
_LEGACY_REFERENCE_KEY = "atom_reference"  # the network's per-element buffer, folded into the EnergyShift


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


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> object:
    """The raw contents of a torch file, with one-line errors for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # noqa: BLE001 - torch's message advises unsafe loading; the user needs what the file is not
        raise ValueError(
            f"{str(path)!r} is not a gemrepro model file (torch cannot read it as saved weights)"
        ) from None


def load_weights(model: torch.nn.Module, state_dict: dict, path: str | os.PathLike, what: str) -> None:
    """``model.load_state_dict`` with a one-line error when the weights are another architecture's."""
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else type(exc).__name__)
        raise ValueError(
            f"{str(path)!r}: its weights do not fit the {what} its config describes "
            f"(a file of another variant or preset? {detail[:120]})"
        ) from None


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _config_dict(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def save_model(model: nn.Module, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a network, or an ``EnergyShift`` around one) to ``path`` atomically.

    A bare network is saved as an ``EnergyShift`` without references, so every file loads the same.
    """
    wrapped = as_energy_shift(model)
    network = wrapped.model
    return save_payload(
        path,
        {
            "format": MODEL_FORMAT,
            "model_class": _class_path(network),
            "model_config": _config_dict(network),
            "config_class": _class_path(network.config) if hasattr(network, "config") else None,
            "state_dict": {key: value.detach().cpu() for key, value in wrapped.state_dict().items()},
            "element_energies": wrapped.reference_energies(),
            "metadata": metadata or {},
        },
    )


def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ``EnergyShift`` state dict without the network's former ``atom_reference`` buffer.

    Its values (zero unless a test set them) move into ``element_energies``, where they add the same
    per-element energy; a training checkpoint of an earlier version resumes through this too.
    """
    state = dict(state)
    legacy = state.pop(f"model.{_LEGACY_REFERENCE_KEY}", None)
    if legacy is not None and bool(legacy.any()):
        references = state["element_energies"].clone()
        references[: len(legacy)] += legacy.to(references.dtype)
        state["element_energies"] = references
    return state


def upgrade_payload(payload: object, path: str | os.PathLike) -> dict[str, Any]:
    """A payload of :data:`MODEL_FORMAT`, from a file of this format or of one of the two earlier ones."""
    if not isinstance(payload, dict):
        raise ValueError(f"{str(path)!r} is not a gemrepro model file (holds a {type(payload).__name__})")
    kind = payload.get("format")
    if kind == MODEL_FORMAT:
        return payload
    if kind == LEGACY_TRAINED_FORMAT:
        state = upgrade_state_dict(payload["state_dict"])
        references = nonzero_references(state["element_energies"])
        return {**payload, "format": MODEL_FORMAT, "state_dict": state, "element_energies": references}
    if kind == LEGACY_NETWORK_FORMAT:
        config = dict(payload["config"])
        variant = config.get("variant", "T")  # version-1 files predate GemNet-Q
        dtype = getattr(torch, payload.get("dtype", "float32"))
        state = {
            f"model.{key}": value.to(dtype) if value.is_floating_point() else value
            for key, value in payload["state_dict"].items()
        }
        state["element_energies"] = torch.zeros(MAX_ATOMIC_NUMBER + 1, dtype=torch.float64)
        state = upgrade_state_dict(state)
        references = nonzero_references(state["element_energies"])
        return {
            "format": MODEL_FORMAT,
            "model_class": f"gemrepro.model.gemnet:GemNet{variant}",
            "model_config": config,
            "config_class": "gemrepro.model.presets:GemNetConfig",
            "state_dict": state,
            "element_energies": references,
            "metadata": {},
        }
    raise ValueError(f"{str(path)!r} is not a gemrepro model file (format {kind!r}, expected {MODEL_FORMAT!r})")


# The only classes a model file may name. A file is data: the class it names is looked up here,
# never imported, so a file naming ``os:system`` (or anything else) runs nothing.
NETWORKS: dict[str, type[nn.Module]] = {
    "gemrepro.model.gemnet:GemNetT": GemNetT,
    "gemrepro.model.gemnet:GemNetQ": GemNetQ,
}
CONFIGS: dict[str, type] = {"gemrepro.model.presets:GemNetConfig": GemNetConfig}


def _allowed(table: dict[str, Any], class_path: object, field: str, path: str | os.PathLike) -> Any:
    if not isinstance(class_path, str) or class_path not in table:
        raise ValueError(
            f"{str(path)!r}: {field} {class_path!r} is not a network of this package; expected one of {', '.join(table)}"
        )
    return table[class_path]


def _build_network(payload: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """``Class(Config.from_dict(config))`` for an allowlisted class and configuration; one-line errors otherwise."""
    missing = [key for key in ("model_class", "model_config", "state_dict") if key not in payload]
    if missing:
        raise ValueError(f"{str(path)!r}: model file without {', '.join(missing)}; expected a file save_model wrote")
    cls = _allowed(NETWORKS, payload["model_class"], "model_class", path)
    config_cls = _allowed(
        CONFIGS, payload.get("config_class") or "gemrepro.model.presets:GemNetConfig", "config_class", path
    )
    config = payload["model_config"]
    if not isinstance(config, dict):
        raise ValueError(
            f"{str(path)!r}: model_config is a {type(config).__name__}; expected a dict of GemNet settings"
        )
    try:
        values = config_cls.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{str(path)!r}: model_config does not describe a GemNet ({exc})".splitlines()[0]) from None
    return cls(values)


def load_model(
    path: str | os.PathLike, device: str | torch.device = "auto", *, model: nn.Module | None = None
) -> EnergyShift:
    """The model in ``path`` as an ``EnergyShift`` (references included), in eval mode on ``device``.

    ``model`` (same architecture) receives the weights instead of a network rebuilt from the file.
    Fine-tuning calls ``.train()`` on the result.
    """
    payload = upgrade_payload(read_checkpoint(path), path)
    if model is None:
        model = _build_network(payload, path)
    wrapped = as_energy_shift(model)
    state = payload["state_dict"]
    dtype = next((v.dtype for k, v in state.items() if k.startswith("model.") and v.is_floating_point()), None)
    if dtype is not None:
        wrapped.to(dtype)
    variant = getattr(wrapped.config, "variant", None)
    load_weights(wrapped, state, path, f"GemNet-{variant}" if variant else payload["model_class"].rpartition(":")[2])
    wrapped.metadata = payload["metadata"]
    return wrapped.to(resolve_device(device)).eval()


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata stored with a model (training config, metrics), without rebuilding it."""
    return upgrade_payload(read_checkpoint(path), path)["metadata"]
