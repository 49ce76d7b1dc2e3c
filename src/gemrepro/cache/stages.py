"""Which code makes each cached stage, and whether an artifact was made by today's code.

Every artifact of a registered stage records in its manifest the ``code_digest`` of the code that
made it (:mod:`gemrepro.cache.code`: the stage's builder module and everything it imports). The
cache serves it only when that digest is today's, or when the record ``stage_code.json`` (beside
this module) accepts it: today's code is the recorded code, and a sampler recomputed a piece of an
artifact made under the old digest and found the same output (``accepted``, with its evidence).
Anything else is recomputed: a changed stage is never served from the old cache. Only
``python -m gemrepro.studies.stages --record`` writes the record, and it needs that evidence.

Stage names and builders are strings: the walker reads files, so the cache imports no study.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gemrepro.cache import code
from gemrepro.cache.code import CodeWalker

RECORD = Path(__file__).with_name("stage_code.json")
"""Per stage: ``{"version": int, "digest": str, "accepted": [{"digest": str, "evidence": str}, ...]}``."""


@dataclass(frozen=True)
class StageCode:
    """One artifact folder: the constant its cache key carries and the module whose code builds it."""

    version: str | None  # "module:CONSTANT"; None: the stage's key carries no version
    builder: str  # the module whose functions build it (its imports are followed)

    def digest(self, walker: CodeWalker | None = None) -> str:
        return (walker or code.package_walker()).digest(self.builder)

    def version_value(self, walker: CodeWalker | None = None) -> int | None:
        return (walker or code.package_walker()).constant(self.version) if self.version else None


def _family(version: str | None, builder: str, *stages: str) -> dict[str, StageCode]:
    return {stage: StageCode(version, builder) for stage in stages}


_DATA, _LC, _SWEEP = "gemrepro.data.build", "gemrepro.studies.learning_curve", "gemrepro.studies.sweep"
_PRE, _ARMS = "gemrepro.studies.pretraining", "gemrepro.studies.pretraining_arms"

STAGES: dict[str, StageCode] = {
    **_family(f"{_DATA}:SAMPLER_VERSION", _DATA, "labels", "dataset"),
    **_family(None, "gemrepro.reference.free_atoms", "free-atoms"),
    **_family("gemrepro.data.compare:STAGE_VERSION", "gemrepro.data.compare", "reference-cost"),
    **_family("gemrepro.data.reference_md:STAGE_VERSION", "gemrepro.data.reference_md", "reference-md"),
    **_family(f"{_LC}:STAGE_VERSION", _LC, "models", "sanity-fit"),
    **_family(f"{_SWEEP}:START_STAGE_VERSION", _SWEEP, "md-start"),
    **_family(f"{_SWEEP}:STAGE_VERSION", _SWEEP, "md-sweep", "md-labels"),
    **_family("gemrepro.studies.holes:STAGE_VERSION", "gemrepro.studies.holes", "md-seeds"),
    **_family("gemrepro.studies.long_runs:STAGE_VERSION", "gemrepro.studies.long_runs", "md-long"),
    **_family("gemrepro.studies.out_of_sample:STAGE_VERSION", "gemrepro.studies.out_of_sample", "oos-start"),
    **_family(f"{_PRE}:STAGE_VERSION", _PRE, "pretrained", "md17-models", "stability-md"),
    **_family(f"{_ARMS}:STAGE_VERSION", _ARMS, "arms-pretrained", "arms-models", "arms-md"),
    **_family(
        "gemrepro.studies.committee:STAGE_VERSION",
        "gemrepro.studies.committee",
        "committee-disagreement",
        "md-committee",
    ),
    **_family("gemrepro.studies.performance:STAGE_VERSION", "gemrepro.studies.performance", "performance"),
    **_family("gemrepro.studies.estimate:STAGE_VERSION", "gemrepro.studies.estimate", "cost-measurements"),
    **_family("gemrepro.stress.cached:STAGE_VERSION", "gemrepro.stress.cached", "stress-audit"),
}
"""Every artifact folder the package writes (``tests/cache/test_stages.py`` checks none is missing)."""


def read_record(path: Path | None = None) -> dict[str, dict]:
    """The record at ``path`` (default :data:`RECORD`); ``{}`` when there is none yet."""
    path = path or RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


@lru_cache(maxsize=1)
def _record() -> dict[str, dict]:
    return read_record()


@lru_cache(maxsize=None)
def today_digest(stage: str) -> str | None:
    """The digest of the code that would build ``stage`` now (None: not a registered stage)."""
    found = STAGES.get(stage)
    return None if found is None else found.digest()


def accepted_digests(stage: str) -> frozenset[str]:
    """Older digests of ``stage`` that today's code is shown to reproduce (empty unless today's code is
    the recorded code: the evidence is about the recorded code)."""
    entry = _record().get(stage) or {}
    if entry.get("digest") != today_digest(stage):
        return frozenset()
    return frozenset(a["digest"] for a in entry.get("accepted", []))


def stale_reason(stage: str, manifest: dict) -> str | None:
    """Why an artifact of ``stage`` may not be served (None: it may); cheap after the first call per stage."""
    today = today_digest(stage)
    if today is None:
        return None
    made = manifest.get("code_digest")
    if made == today or (made is not None and made in accepted_digests(stage)):
        return None
    if made is None:
        return f"was made before artifacts recorded their code (no digest; today {today})"
    return f"was made by other code (digest {made}, today {today}, not shown output-preserving)"


def clear_caches() -> None:
    """Forget the digests and the record read so far (tests that change the code or the record)."""
    today_digest.cache_clear()
    _record.cache_clear()
    code.package_walker.cache_clear()
