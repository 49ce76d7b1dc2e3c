"""Artifact bundles: ship the results of a scale so readers can rebuild its book without recomputing.

``make book SCALE=small`` on a GPU machine records every artifact its chapters load or build
(``_build/<scale>/artifacts.txt``, see :data:`gemrepro.cache.artifacts.ACCESS_LOG_ENV`).
:func:`pack` writes those artifact folders into one versioned tar file (gzip, or xz for a name ending
in ``.xz``: slower to write, smaller, what the committed ``models/<scale>.tar.xz`` uses) with
a checksummed ``bundle.json``; :func:`unpack` verifies every checksum and then moves each artifact into the
cache atomically, keeping artifacts that are already there (one made by other code gives way to the
bundle's, and moves to ``<stage>/.stale/``). A bundled artifact is served under the cache's rule: only
if today's code made it or was shown to reproduce it (:mod:`gemrepro.cache.stages`). Re-executing the chapters then only
reads the cache: a reader builds the ``small`` book on a laptop.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import lzma
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from gemrepro import __version__
from gemrepro.cache.artifacts import MANIFEST, Artifact, git_revision, load_artifact, move_aside
from gemrepro.cache.paths import artifacts_dir, repo_root, shipped_models
from gemrepro.cache.stages import stale_reason
from gemrepro.config.scales import Scale, get_scale

BUNDLE_MANIFEST = "bundle.json"
FORMAT = 1


@dataclass(frozen=True)
class UnpackReport:
    """What :func:`unpack` did: artifacts added, artifacts already present, the bundle's metadata."""

    added: list[str]
    present: list[str]
    metadata: dict


def access_log(scale: str, root: Path | None = None) -> Path:
    """Where the book runner records the artifacts of a scale's chapters."""
    get_scale(scale)
    root = root or repo_root() or Path.cwd()
    return Path(root) / "_build" / scale / "artifacts.txt"


def default_bundle_name(scale: str) -> str:
    return f"gemrepro-artifacts-{scale}-v{__version__}.tar.gz"


def file_digest(path: Path) -> str:
    """The SHA-256 of a file (hex), read in blocks."""
    return _sha256(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_access_log(path: Path) -> list[str]:
    """Unique ``stage/key`` entries of an access log, in first-use order."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no artifact log; run `make book SCALE=<scale>` first (it writes one)")
    seen: dict[str, None] = {}
    for line in path.read_text().splitlines():
        entry = line.strip()
        if entry and len(PurePosixPath(entry).parts) == 2 and not entry.startswith("."):
            seen.setdefault(entry, None)
    return list(seen)


def _open_for_writing(path: Path, output: Path) -> tarfile.TarFile:
    """``path`` as a new tar file compressed as ``output``'s suffix asks: xz (preset 9) for
    ``.xz``, else gzip."""
    if output.name.endswith(".xz"):
        return tarfile.open(path, "w:xz", preset=9)
    return tarfile.open(path, "w:gz")


def pack(entries: list[str], output: Path, scale: str, root: Path | None = None) -> Path:
    """Write the artifact folders ``entries`` (``stage/key``) of ``root`` into the bundle ``output``."""
    get_scale(scale)
    root = Path(root) if root else artifacts_dir()
    if not entries:
        raise ValueError("entries: expected at least one artifact (stage/key) to pack")
    files: dict[str, str] = {}
    for entry in entries:
        folder = root / entry
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(f"artifact {entry}: not a finished artifact under {root}")
        reason = stale_reason(folder.parent.name, json.loads((folder / MANIFEST).read_text()))
        if reason is not None:
            raise ValueError(f"artifact {entry}: {reason}; a bundle ships only what today's code serves")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            files[path.relative_to(root).as_posix()] = _sha256(path)
    metadata = {
        "format": FORMAT,
        "scale": scale,
        "gemrepro_version": __version__,
        "git_revision": git_revision(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "artifacts": list(entries),
        "files": files,
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with _open_for_writing(partial, output) as tar:
        info = tarfile.TarInfo(BUNDLE_MANIFEST)
        payload = json.dumps(metadata, indent=1).encode()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
        for name in files:
            tar.add(root / name, arcname=f"artifacts/{name}", recursive=False)
    os.replace(partial, output)
    return output


def _metadata(tar: tarfile.TarFile, bundle: Path) -> dict:
    try:
        handle = tar.extractfile(BUNDLE_MANIFEST)
        metadata = json.loads(handle.read()) if handle else None
    except (KeyError, json.JSONDecodeError):
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT or "files" not in metadata:
        raise ValueError(f"{bundle}: not a gemrepro artifact bundle (missing or unreadable {BUNDLE_MANIFEST})")
    return metadata


def unpack(bundle: Path, root: Path | None = None) -> UnpackReport:
    """Verify ``bundle`` and add its artifacts to the cache ``root``; existing artifacts are kept."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise FileNotFoundError(f"{bundle}: no such bundle")
    root = Path(root) if root else artifacts_dir()
    try:
        tar = tarfile.open(bundle, "r:*")
    except (tarfile.TarError, OSError, lzma.LZMAError):  # tarfile's message lists every method it tried
        raise ValueError(f"{bundle}: not a readable .tar.gz or .tar.xz bundle (no tar archive inside)") from None
    with tar, tempfile.TemporaryDirectory(prefix=".unpack-", dir=_ensure(root)) as scratch:
        metadata = _metadata(tar, bundle)
        expected = {f"artifacts/{name}": digest for name, digest in metadata["files"].items()}
        members = [m for m in tar.getmembers() if m.name != BUNDLE_MANIFEST]
        unknown = [m.name for m in members if m.name not in expected or not m.isfile()]
        if unknown:
            raise ValueError(f"{bundle}: unexpected member {unknown[0]!r} (not listed in {BUNDLE_MANIFEST})")
        try:
            tar.extractall(scratch, members=members, filter="data")
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
            raise ValueError(f"{bundle}: corrupt bundle ({exc})") from None
        for name, digest in expected.items():
            path = Path(scratch) / name
            if not path.is_file() or _sha256(path) != digest:
                raise ValueError(f"{bundle}: checksum mismatch for {name}; the bundle is corrupt")
        added, present = [], []
        for entry in metadata["artifacts"]:
            final = root / entry
            if (final / MANIFEST).is_file():
                if not _gives_way(final, Path(scratch) / "artifacts" / entry):
                    present.append(entry)
                    continue
                move_aside(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(Path(scratch) / "artifacts" / entry, final)  # same filesystem: atomic
            except OSError:
                if not (final / MANIFEST).is_file():
                    raise
                present.append(entry)  # another process unpacked or built it meanwhile
                continue
            added.append(entry)
    return UnpackReport(added, present, {k: v for k, v in metadata.items() if k != "files"})


def _servable(folder: Path) -> bool:
    manifest = json.loads((folder / MANIFEST).read_text())
    return stale_reason(folder.parent.name, manifest) is None


def _gives_way(present: Path, shipped: Path) -> bool:
    """Whether the cache's artifact, made by other code, is to be replaced by the bundle's, made by today's."""
    return not _servable(present) and _servable(shipped)


def _ensure(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root


def remove_bundle_scratch(root: Path | None = None) -> None:
    """Delete scratch folders a killed :func:`unpack` left behind."""
    for folder in (Path(root) if root else artifacts_dir()).glob(".unpack-*"):
        shutil.rmtree(folder, ignore_errors=True)


@functools.lru_cache(maxsize=8)
def _bundle_digest(path: Path, size: int, mtime_ns: int) -> str:
    """SHA-256 of a bundle, read once per process and file version (every shipped lookup asks for it)."""
    return file_digest(path)


def unpack_shipped(scale: Scale | str, root: Path, part: str = "") -> None:
    """Unpack the scale's committed bundle (or its ``part``) into ``root`` (once per bundle content), if any.

    The committed bundles (:func:`~gemrepro.cache.paths.shipped_models`) hold artifacts of the
    stages' own functions under their own keys; a marker per bundle content makes the second call free.
    """
    name = scale if isinstance(scale, str) else scale.name
    bundle = shipped_models(name, part)
    if bundle is None:
        return
    stat = bundle.stat()
    marker = Path(root) / ".shipped" / f"{name}-{_bundle_digest(bundle, stat.st_size, stat.st_mtime_ns)[:16]}"
    if not marker.is_file():
        unpack(bundle, Path(root))  # verifies checksums; keeps artifacts already present
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(bundle))


def shipped_artifact(scale: Scale | str, stage: str, params: dict, root: Path, part: str = "") -> Artifact | None:
    """The ``stage`` artifact of ``params`` from the scale's committed bundle (or its ``part``), if it holds it."""
    unpack_shipped(scale, root, part)
    return load_artifact(stage, params, root)
