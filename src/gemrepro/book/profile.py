"""Where the book's time goes: each chapter's wall time and, per stage, how many artifacts it read
from the cache, took from a committed bundle, or computed, and how long the computations took.

The chapters run in papermill kernels; each writes the stage log of
:data:`gemrepro.cache.artifacts.STAGE_LOG_ENV` (one JSON line per artifact read or computed), which
the book runner points at ``<build>/profile/<chapter>.jsonl``. A read artifact counts as *bundle*
when a committed bundle (``models/*.tar.xz``) holds it, else as *cache*.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pandas as pd

__all__ = ["chapter_profile", "profile_table", "recorded_profile", "shipped_entries", "summary"]

SOURCES = ("computed", "bundle", "cache")


def shipped_entries(checkout: Path) -> set[str]:
    """``stage/key`` of every artifact the committed bundles of a checkout hold."""
    entries: set[str] = set()
    for path in sorted((checkout / "models").glob("*.tar.*")):
        with tarfile.open(path, "r:*") as tar:
            handle = tar.extractfile("bundle.json")
            if handle is not None:
                entries.update(json.loads(handle.read())["artifacts"])
    return entries


def chapter_profile(log: Path, shipped: set[str]) -> pd.DataFrame:
    """One row per (stage, source) of one chapter's stage log: artifacts and seconds computing them."""
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    computed = {(e["stage"], e["key"]): e["seconds"] for e in events if e["event"] == "computed"}
    rows = {}
    for e in events:
        entry = (e["stage"], e["key"])
        if entry in rows:
            continue
        if entry in computed:
            source = "computed"
        else:
            source = "bundle" if f"{e['stage']}/{e['key']}" in shipped else "cache"
        rows[entry] = {"stage": e["stage"], "source": source, "seconds": computed.get(entry, 0.0)}
    columns = ["stage", "source", "artifacts", "seconds"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows.values())
    grouped = table.groupby(["stage", "source"], sort=True).agg(
        artifacts=("seconds", "size"), seconds=("seconds", "sum")
    )
    return grouped.reset_index()[columns]


def profile_table(chapters: dict[str, tuple[Path, float]], shipped: set[str]) -> pd.DataFrame:
    """Every chapter's profile: chapter, wall_s (the chapter's), stage, source, artifacts, seconds."""
    frames = [
        chapter_profile(log, shipped).assign(chapter=name, wall_s=round(wall, 1))
        for name, (log, wall) in chapters.items()
    ]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table[["chapter", "wall_s", "stage", "source", "artifacts", "seconds"]] if len(table) else table


def summary(table: pd.DataFrame, walls: dict[str, float]) -> pd.DataFrame:
    """One row per chapter: wall time, seconds spent computing, artifacts by source."""
    rows = []
    for name, wall in walls.items():
        part = table[table["chapter"] == name] if len(table) else table
        counts = {s: int(part.loc[part["source"] == s, "artifacts"].sum()) if len(part) else 0 for s in SOURCES}
        computing = float(part.loc[part["source"] == "computed", "seconds"].sum()) if len(part) else 0.0
        rows.append({"chapter": name, "wall_s": round(wall, 1), "computing_s": round(computing, 1), **counts})
    return pd.DataFrame(rows)


def recorded_profile(checkout: Path, scale: str) -> tuple[pd.DataFrame, dict] | None:
    """The profile a build kept with ``--record-profile`` (``book/profiles/<scale>.csv`` and ``.json``):
    one summary row per chapter, and what the build was; None when none was recorded."""
    table_file, about_file = (checkout / "book" / "profiles" / f"{scale}.{suffix}" for suffix in ("csv", "json"))
    if not (table_file.is_file() and about_file.is_file()):
        return None
    about = json.loads(about_file.read_text())
    return summary(pd.read_csv(table_file), about["chapter_wall_s"]), about
