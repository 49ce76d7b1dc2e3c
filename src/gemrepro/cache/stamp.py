"""Give artifacts made before manifests recorded their code the digest of the code that made them.

An old manifest names the git revision its code was at (``git_revision``). Reading that revision's
sources from the checkout (:class:`~gemrepro.cache.code.GitReader`) gives the stage's digest then,
with today's walker. A revision that is unknown or ``+dirty`` (uncommitted changes) says nothing
certain about the code: such an artifact stays unstamped, so it is recomputed, unless a sampler
recomputes a piece of that very artifact with today's code and finds the same output
(``python -m gemrepro.studies.stages --stamp DIR --sample``, :func:`stamp_sampled`). Stamping by
revision states a fact about the past; whether today's code reproduces it is a separate question
(``python -m gemrepro.studies.stages --record`` answers it with a sampler).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gemrepro.cache.code import CodeWalker, GitReader
from gemrepro.cache.stages import STAGES

MANIFEST = "manifest.json"
RENAMED = (("gemrepro.studies.", "gemrepro.workflow."),)
"""(today's prefix, its earlier name): the studies were ``gemrepro.workflow`` before commit 62e5de9."""


@dataclass
class StampReport:
    """What :func:`stamp_artifacts` did: per (stage, digest) how many it stamped, and what it could not."""

    stamped: Counter = field(default_factory=Counter)  # (stage, digest) -> artifacts
    had: Counter = field(default_factory=Counter)  # (stage, digest) -> artifacts stamped before
    unattributed: list[str] = field(default_factory=list)  # "stage/key (revision)"
    unattributed_paths: list[Path] = field(default_factory=list)  # their manifests


def artifact_manifests(root: Path) -> list[Path]:
    """The manifests of every finished artifact of a registered stage under ``root`` (not those in ``.stale``)."""
    return sorted(p for stage in STAGES for p in (Path(root) / stage).glob(f"*/{MANIFEST}"))


def attributable(revision: str | None) -> bool:
    """Whether a manifest's ``git_revision`` names committed code (not unknown, not ``+dirty``)."""
    return bool(revision) and revision != "unknown" and not str(revision).endswith("+dirty")


def stamp_artifacts(root: Path, repo: Path, *, write: bool = True) -> StampReport:
    """Stamp every unstamped manifest under ``root`` with its stage's digest at its ``git_revision`` in ``repo``.

    Each revision's sources are read once; ``write=False`` only reports. A manifest is rewritten
    atomically (a temporary file renamed over it).
    """
    report = StampReport()
    walkers: dict[str, CodeWalker | None] = {}
    for manifest_path in artifact_manifests(root):
        stage, key = manifest_path.parent.parent.name, manifest_path.parent.name
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("code_digest"):
            report.had[(stage, manifest["code_digest"])] += 1
            continue
        revision = manifest.get("git_revision")
        walker = _walker(walkers, repo, revision) if attributable(revision) else None
        if walker is None:
            report.unattributed.append(f"{stage}/{key} ({revision})")
            report.unattributed_paths.append(manifest_path)
            continue
        try:
            digest = _digest_then(walker, STAGES[stage].builder)
        except SyntaxError:
            digest = None
        if digest is None:
            report.unattributed.append(f"{stage}/{key} ({revision}: no readable builder then)")
            report.unattributed_paths.append(manifest_path)
            continue
        report.stamped[(stage, digest)] += 1
        if write:
            _write(manifest_path, {**manifest, "code_digest": digest})
    return report


def stamp_sampled(manifest_path: Path, digest: str, evidence: str) -> None:
    """Stamp one unattributed artifact with today's ``digest``: a sampler recomputed a piece of this very
    artifact with today's code and found the same output (``evidence`` says what, and is kept)."""
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("code_digest"):
        raise ValueError(f"{manifest_path.parent.name}: already stamped ({manifest['code_digest']})")
    _write(manifest_path, {**manifest, "code_digest": digest, "code_evidence": evidence})


def _write(manifest_path: Path, manifest: dict) -> None:
    """Rewrite a manifest atomically (a temporary file renamed over it)."""
    partial = manifest_path.with_name(MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2))
    os.replace(partial, manifest_path)


def _digest_then(walker: CodeWalker, builder: str) -> str | None:
    """The digest of ``builder`` as the revision of ``walker`` had it, under its earlier name if it was
    renamed since; None if that revision has no such module."""
    for now, before in ((builder, builder), *((builder, builder.replace(a, b, 1)) for a, b in RENAMED)):
        if walker.source(before) is not None:
            return walker.digest(before)
    return None


def _walker(walkers: dict[str, CodeWalker | None], repo: Path, revision: str) -> CodeWalker | None:
    if revision not in walkers:
        try:
            walkers[revision] = CodeWalker(GitReader(repo, revision))
        except LookupError:  # not a revision of this checkout
            walkers[revision] = None
    return walkers[revision]
