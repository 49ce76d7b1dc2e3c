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
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable torch checkpoint: {str(exc).splitlines()[0]}") from exc


def model_from_payload(payload: object, path: str | os.PathLike, device: str | torch.device = "auto") -> GemNet:
    """Rebuild the model of a ``save_model`` payload already read by :func:`read_checkpoint`."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a GemNet checkpoint written by save_model")
    model = build_model(GemNetConfig.from_dict(payload["config"]))
    model = model.to(getattr(torch, payload.get("dtype", "float32")))
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
