"""Model checkpoints: the config (to rebuild the architecture, T or Q) plus the state dict."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from gemrepro.model.gemnet import GemNet, build_model, resolve_device
from gemrepro.model.presets import GemNetConfig

# The format name predates GemNet-Q; the config's ``variant`` (absent in version 1 files, which
# are all GemNet-T) says which class to rebuild.
CHECKPOINT_FORMAT = "gemrepro.gemnet-t"
CHECKPOINT_VERSION = 2


def save_model(model: GemNet, path: str | os.PathLike) -> Path:
    """Write config + weights to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_model(path: str | os.PathLike, device: str | torch.device = "auto") -> GemNet:
    """Rebuild a model saved by ``save_model`` (``GemNetT`` or ``GemNetQ``), in eval mode, on ``device``."""
    return model_from_payload(read_checkpoint(path), path, device)


def read_checkpoint(path: str | os.PathLike) -> object:
    """The raw contents of a torch model file, with one-line errors for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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
