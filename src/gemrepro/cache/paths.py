"""Where the project keeps its data: one place to ask, so chapters and the CLI agree."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root(start: Path | None = None) -> Path | None:
    """The checkout that holds ``pyproject.toml`` and ``_config.yml`` above ``start``, if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "_config.yml").is_file():
            return folder
    package_root = Path(__file__).resolve().parents[3]
    if (package_root / "pyproject.toml").is_file():
        return package_root
    return None


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data folder: ``override``, else ``$GEMREPRO_DATA``, else ``<repo>/data``."""
    if override:
        return Path(override).expanduser().resolve()
    if os.environ.get("GEMREPRO_DATA"):
        path = Path(os.environ["GEMREPRO_DATA"]).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"GEMREPRO_DATA={os.environ['GEMREPRO_DATA']}: is a file; expected a folder for "
                "gemrepro's datasets and artifact cache"
            )
        return path
    root = repo_root()
    if root is not None:
        return root / "data"
    return Path.home() / ".cache" / "gemrepro"


def artifacts_dir(override: str | os.PathLike | None = None) -> Path:
    """The content-addressed cache ``<data>/artifacts`` (git-ignored)."""
    return data_dir(override) / "artifacts"


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (small real QM7-X and rMD17 files), if present."""
    if os.environ.get("GEMREPRO_SHARED_DATA"):
        path = Path(os.environ["GEMREPRO_SHARED_DATA"])
        return path if path.is_dir() else None
    root = repo_root()
    if root is None:
        return None
    path = root.parent / "shared" / "data"
    return path if path.is_dir() else None


FRESH_ENV = "GEMREPRO_FRESH"
"""``1``: no committed bundle is used, everything is recomputed (``make book FRESH=1``)."""


def shipped_models(scale: str, part: str = "") -> Path | None:
    """The committed bundle of a scale's expensive results, if any: ``<repo>/models/<scale>.tar.xz``
    (learning-curve models and long runs) or, for a ``part``, ``<repo>/models/<scale>-<part>.tar.xz``.

    Training every ``tiny`` model to convergence takes longer on 2 CPU cores than the book may;
    the bundle holds exactly the artifacts the training stage would write, under the same keys.
    """
    root = repo_root()
    if root is None or os.environ.get(FRESH_ENV) == "1":
        return None
    path = root / "models" / (f"{scale}-{part}.tar.xz" if part else f"{scale}.tar.xz")
    return path if path.is_file() else None
