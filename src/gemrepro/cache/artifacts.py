"""Content-addressed artifact cache with atomic writes.

Every stage's output lives in ``<artifacts>/<stage>/<key>/`` where ``key`` hashes the stage's
parameters. A folder is built under a temporary name and renamed into place only after its
``manifest.json`` is written, so a killed run never leaves a folder a later run would trust.
The manifest of a registered stage records the digest of the code that made it; an artifact made
by other code is not served (:func:`gemrepro.cache.stages.stale_reason`) but rebuilt, and its old
folder is moved to ``<stage>/.stale/``, never deleted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gemrepro import __version__
from gemrepro.cache.paths import artifacts_dir, repo_root
from gemrepro.cache.stages import stale_reason, today_digest

MANIFEST = "manifest.json"
STALE = ".stale"
"""``<stage>/.stale/<key>-<digest>/``: where an artifact made by other code goes when it is rebuilt."""
ACCESS_LOG_ENV = "GEMREPRO_ARTIFACT_LOG"
"""When set, every artifact a process loads or builds is appended to this file as ``stage/key``
(the book runner uses it to know which artifacts a scale's chapters need, for ``artifacts pack``)."""
STAGE_LOG_ENV = "GEMREPRO_STAGE_LOG"
"""When set, every artifact read or computed is appended to this file as one JSON line (event
``read`` or ``computed``, stage, key, seconds): the book runner's profile of where time goes."""


def log_stage(event: str, stage: str, key: str, seconds: float = 0.0) -> None:
    """Append one event to the stage log named by :data:`STAGE_LOG_ENV`, if any (one short line: safe
    across processes)."""
    log = os.environ.get(STAGE_LOG_ENV)
    if log:
        line = json.dumps({"event": event, "stage": stage, "key": key, "seconds": round(seconds, 3)})
        with open(log, "a") as handle:
            handle.write(line + "\n")


def _canonical(value: Any) -> Any:
    """JSON-able, order-independent form of parameters (tuples -> lists, sorted keys)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


def artifact_key(params: dict) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``params``."""
    text = json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_revision() -> str:
    """Short git revision of the checkout, or ``unknown``; ``+dirty`` when the package's code differs from it.

    Only the code that computes artifacts counts (``src/``, ``pyproject.toml``): the book's executed
    notebooks change while the book is being rebuilt, which does not change what produced a result.
    """
    root = repo_root()
    if root is None:
        return "unknown"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "pyproject.toml"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def hardware() -> str:
    """One line naming the CPU (cores) and, when present, the GPU."""
    cpu = platform.processor() or platform.machine()
    text = f"{cpu} ({os.cpu_count()} cores)"
    try:
        # Imported here: torch takes seconds to import and the cache only needs it to name the GPU.
        import torch

        if torch.cuda.is_available():
            text += f", {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return text


@dataclass(frozen=True)
class Artifact:
    """A finished artifact folder and its manifest."""

    path: Path
    manifest: dict

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def stage(self) -> str:
        return self.path.parent.name

    def file(self, name: str) -> Path:
        return self.path / name

    def provenance(self) -> str:
        """The line printed under every figure built from this artifact."""
        m = self.manifest
        p = m.get("params", {})
        bits = [
            f"{self.stage}/{self.key}",
            f"scale={p['scale']}" if "scale" in p else None,
            f"seed={p['seed']}" if "seed" in p else None,
            f"reference={p['reference']}" if "reference" in p else None,
            f"gemrepro {m.get('version')}",
            f"git {m.get('git_revision')}",
            m.get("hardware"),
            f"wall {m.get('wall_time_s', 0):.1f} s",
            m.get("created"),
        ]
        return " · ".join(b for b in bits if b)


def load_artifact(stage: str, params: dict, root: str | os.PathLike | None = None) -> Artifact | None:
    """The finished artifact for ``params``, or ``None`` when it has not been built or was made by other code."""
    path = Path(root) if root else artifacts_dir()
    folder = path / stage / artifact_key(params)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    content = json.loads(manifest.read_text())
    reason = stale_reason(stage, content)
    if reason is not None:
        _warn_stale(folder, content, reason)
        return None
    log = os.environ.get(ACCESS_LOG_ENV)
    if log:
        with open(log, "a") as handle:  # one short line per append: safe across processes
            handle.write(f"{stage}/{folder.name}\n")
    log_stage("read", stage, folder.name)
    return Artifact(folder, content)


_warned: set[Path] = set()


def _warn_stale(folder: Path, manifest: dict, reason: str) -> None:
    """One line on stderr, once per process and folder, saying why it is not served and where it will go."""
    if folder in _warned:
        return
    _warned.add(folder)
    aside = f"{folder.parent.name}/{STALE}/{_stale_name(folder, manifest)}"
    print(
        f"gemrepro: {folder.parent.name}/{folder.name} {reason}: recomputing it; the old folder is kept in {aside}",
        file=sys.stderr,
    )


def _stale_name(folder: Path, manifest: dict) -> str:
    return f"{folder.name}-{manifest.get('code_digest') or 'unstamped'}"


def move_aside(folder: Path) -> Path:
    """Move an artifact folder made by other code to ``<stage>/.stale/<key>-<digest>`` (a suffix if that
    exists); nothing computed is deleted. Returns where it went."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        manifest = {}
    target = folder.parent / STALE / _stale_name(folder, manifest)
    target.parent.mkdir(exist_ok=True)
    candidate, n = target, 1
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}-{n}")
    os.rename(folder, candidate)
    return candidate


def work_folder(stage: str, params: dict, root: str | os.PathLike | None = None) -> Path:
    """``<artifacts>/<stage>-work/<key>/``: where a resumable build keeps its checkpoints."""
    return (Path(root) if root else artifacts_dir()) / f"{stage}-work" / artifact_key(params)


def get_or_create(
    stage: str,
    params: dict,
    build: Callable[..., dict | None],
    root: str | os.PathLike | None = None,
    *,
    resumable: bool = False,
) -> Artifact:
    """Load the artifact for ``params`` or build it with ``build(tmp_folder)`` atomically.

    ``build`` writes its payload into the folder it is given and may return extra manifest
    entries (counts, timings). The folder becomes visible only when complete.

    ``resumable`` is for long builds (training, MD): ``build(tmp_folder, work_folder)`` also gets
    :func:`work_folder`, which outlives a killed process, so the next call resumes from the
    checkpoints kept there; it is removed once the artifact exists.
    """
    found = load_artifact(stage, params, root)
    if found is not None:
        return found
    base = (Path(root) if root else artifacts_dir()) / stage
    base.mkdir(parents=True, exist_ok=True)
    final = base / artifact_key(params)
    with build_lock(base, final.name):
        found = load_artifact(stage, params, root)  # another process may have built it while we waited
        if found is not None:
            return found
        if (final / MANIFEST).is_file():  # made by other code: kept aside, rebuilt
            move_aside(final)
        return _build(stage, params, build, root, final, resumable)


def _build(stage: str, params: dict, build: Callable[..., dict | None], root, final: Path, resumable: bool) -> Artifact:
    """Build one artifact under a temporary name and rename it into place (the caller holds its lock)."""
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    work = work_folder(stage, params, root) if resumable else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        extra = (build(tmp, work) if work is not None else build(tmp)) or {}
        manifest = {
            "stage": stage,
            "key": final.name,
            "params": _canonical(params),
            "version": __version__,
            "git_revision": git_revision(),
            "hardware": hardware(),
            "wall_time_s": round(time.perf_counter() - start, 3),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **_canonical(extra),
        }
        digest = today_digest(stage)
        if digest is not None:
            manifest["code_digest"] = digest
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            os.rename(tmp, final)
        except OSError:  # present already (a process without the lock, e.g. an unpacked bundle): keep it
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)  # the checkpoints are not needed once the artifact exists
    log_stage("computed", stage, final.name, time.perf_counter() - start)
    return load_artifact(stage, params, root)  # type: ignore[return-value]


@contextmanager
def build_lock(base: Path, key: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of one artifact key while it is built (``<artifacts>/.locks/<stage>-<key>``, an
    advisory ``flock`` the kernel releases when its process dies).

    Two processes asking for the same missing artifact (chapters or tests run in parallel) would
    otherwise both compute it and share its resumable work folder; with the lock the second waits
    and then reads the first one's result. With ``wait=False`` it yields whether the lock was free.
    """
    locks = base.parent / ".locks"
    locks.mkdir(exist_ok=True)
    with open(locks / f"{base.name}-{key}", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_temporaries(root: str | os.PathLike | None = None) -> int:
    """Delete ``.tmp-*`` folders left by killed runs; returns how many were removed. A folder whose
    key is locked is a build in progress in another process and stays."""
    base = Path(root) if root else artifacts_dir()
    removed = 0
    for tmp in base.glob("*/.tmp-*"):
        key = tmp.name.removeprefix(".tmp-").rsplit("-", 1)[0]
        with build_lock(tmp.parent, key, wait=False) as free:
            if free:
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
    return removed
