"""Record which code makes each cached stage, and only with evidence that a change keeps its outputs.

The cache serves an artifact only if today's code made it or the record
(``src/gemrepro/cache/stage_code.json``, see :mod:`gemrepro.cache.stages`) accepts the digest it was
made under. When a stage's code changes, the developer decides:

* its outputs change: bump the stage's version constant (its cache keys change), then ``--record``;
* they do not (a refactor): ``--record`` recomputes a sample of a stored artifact made by the recorded
  code with today's code (:mod:`gemrepro.studies.samplers`: a prefix of MD, a few training steps, a
  few labels) and records the new digest only if the sample agrees, accepting the old digests with
  that evidence. It refuses when they differ, or when the stage has no sampler::

    python -m gemrepro.studies.stages              # which stages changed since the record
    python -m gemrepro.studies.stages --record     # record, with evidence (samples the cache and bundles)
    python -m gemrepro.studies.stages --stamp DIR  # give old artifacts the digest of their git revision
    python -m gemrepro.studies.stages --stamp DIR --sample  # and sample those whose code is unknown

``--accept`` also samples artifacts made under digests the record does not accept yet (after
``--stamp``), so that what today's code reproduces is served again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from gemrepro.cache.artifacts import STALE, Artifact
from gemrepro.cache.bundle import unpack
from gemrepro.cache.paths import artifacts_dir, repo_root
from gemrepro.cache.stages import RECORD, STAGES, clear_caches, read_record
from gemrepro.cache.stamp import stamp_artifacts, stamp_sampled
from gemrepro.studies.samplers import SAMPLERS, Inputs, SampleUnavailable

RECORD_COMMAND = "python -m gemrepro.studies.stages --record"


def current_record(names: list[str] | None = None) -> dict[str, dict]:
    """``{stage: {"version": int | None, "digest": str}}`` of the code as it is now (all stages, or ``names``)."""
    return {
        stage: {"version": STAGES[stage].version_value(), "digest": STAGES[stage].digest()} for stage in names or STAGES
    }


def stale_stages(recorded: dict[str, dict]) -> list[str]:
    """Stages whose code or version differs from ``recorded`` (each a sentence)."""
    problems = []
    for stage, now in current_record().items():
        before = recorded.get(stage)
        if before is None:
            problems.append(f"{stage}: not recorded (new stage); run {RECORD_COMMAND}")
        elif now["version"] == before["version"] and now["digest"] != before["digest"]:
            problems.append(
                f"{stage}: its code changed at version {now['version']}; bump the version if its "
                f"outputs change, else show they do not ({RECORD_COMMAND} samples it)"
            )
        elif now["version"] != before["version"]:
            problems.append(f"{stage}: version {before['version']} -> {now['version']}; record it ({RECORD_COMMAND})")
    return problems


def stored_artifacts(roots: list[Path], stage: str) -> Iterator[Artifact]:
    """Every stored artifact of ``stage`` under ``roots``, those moved aside to ``.stale`` included."""
    for root in roots:
        for pattern in (f"{stage}/*/manifest.json", f"{stage}/{STALE}/*/manifest.json"):
            for manifest in sorted(Path(root).glob(pattern)):
                yield Artifact(manifest.parent, json.loads(manifest.read_text()))


def _cost(artifact: Artifact) -> float:
    """The time an artifact took to make: its sample is likely the cheaper, the less it took."""
    return float(artifact.manifest.get("wall_time_s") or 0.0)


def _bump(stage: str) -> str:
    version = STAGES[stage].version
    return f"bump {version}" if version else "give it a version constant in its cache key"


@dataclass
class Decision:
    """The record entry of one stage after ``--record`` (``refused``: the old entry stays), and why."""

    entry: dict | None
    message: str
    refused: bool = False


def _evidence(stage: str, digests: set[str], inputs: Inputs) -> tuple[dict | None, str]:
    """Sample one stored artifact made under one of ``digests``: (accepted entry, message); entry None: refused."""
    candidates = [a for a in stored_artifacts(inputs.roots, stage) if a.manifest.get("code_digest") in digests]
    if stage not in SAMPLERS:
        return None, f"{stage}: no sampler; {_bump(stage)}"
    if not candidates:
        return (
            None,
            f"{stage}: no stored artifact made by digest {' or '.join(sorted(digests))} to sample; {_bump(stage)}",
        )
    reasons = []
    for artifact in sorted(candidates, key=_cost):  # the cheapest first; the next when one holds nothing to compare
        try:
            sample = SAMPLERS[stage](artifact, inputs)
            break
        except SampleUnavailable as exc:
            reasons.append(f"{stage}/{artifact.key}: {exc}")
    else:
        return None, f"{stage}: cannot sample {'; '.join(reasons)}; {_bump(stage)}"
    if not sample.agrees:
        return None, (
            f"{stage}: today's code gives different output (max |Δ| = {sample.difference:.3g} {sample.unit}, "
            f"tolerance {sample.tolerance:g}); {_bump(stage)}"
        )
    made = artifact.manifest["code_digest"]
    return {"digest": made, "evidence": sample.evidence()}, f"{stage}: {sample.evidence()}"


def decide(stage: str, before: dict | None, now: dict, inputs: Inputs, accept: bool = False) -> Decision:
    """The new record entry of ``stage``: kept, re-recorded with evidence, or refused."""
    fresh = {"version": now["version"], "digest": now["digest"], "accepted": []}
    if before is None:
        return Decision(fresh, f"{stage}: new stage, recorded at version {now['version']}")
    if before.get("version") != now["version"]:
        return Decision(fresh, f"{stage}: version {before.get('version')} -> {now['version']}: its keys changed")
    accepted = list(before.get("accepted", []))
    if before["digest"] != now["digest"]:
        entry, message = _evidence(stage, {before["digest"], *(a["digest"] for a in accepted)}, inputs)
        if entry is None:
            return Decision(None, message, refused=True)
        carried = [a for a in accepted if a["digest"] != entry["digest"]]
        if entry["digest"] != before["digest"]:  # an accepted digest was sampled: the recorded one is as good
            carried.append({"digest": before["digest"], "evidence": f"recorded before; {entry['evidence']}"})
        return Decision({**fresh, "accepted": [*carried, entry]}, message)
    entry_now = {**before, **fresh, "accepted": accepted}
    if not accept:
        return Decision(entry_now, "")
    known = {now["digest"], *(a["digest"] for a in accepted)}
    found = {
        str(a.manifest["code_digest"]) for a in stored_artifacts(inputs.roots, stage) if a.manifest.get("code_digest")
    }
    found -= known
    messages = []
    for digest in sorted(found):
        entry, message = _evidence(stage, {digest}, inputs)
        messages.append(message if entry is not None else f"not accepted: {message}")
        if entry is not None:
            entry_now["accepted"].append(entry)
    return Decision(entry_now, "\n".join(messages))


def record(path: Path, inputs: Inputs, *, accept: bool = False, stages: list[str] | None = None) -> int:
    """Write the record at ``path`` for the stages that pass; 1 if any was refused (its old entry stays)."""
    recorded = read_record(path)
    names = stages or sorted(STAGES)
    now = current_record(names)
    out, refused = dict(recorded), False
    for stage in names:
        decision = decide(stage, recorded.get(stage), now[stage], inputs, accept)
        if decision.message:
            print(decision.message, file=sys.stderr if decision.refused else sys.stdout)
        refused |= decision.refused
        if decision.entry is not None:
            out[stage] = decision.entry
    path.write_text(json.dumps(out, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    clear_caches()
    print(f"{path}: {sum(1 for s in STAGES if out.get(s) == recorded.get(s))} of {len(STAGES)} stages unchanged")
    return 1 if refused else 0


def _stamp(root: Path, write: bool, inputs: Inputs | None = None) -> int:
    """Stamp ``root``; with ``inputs``, sample each unattributed artifact and stamp those today's code reproduces."""
    repo = repo_root()
    if repo is None or not (repo / ".git").exists():
        raise FileNotFoundError("--stamp: no git checkout found to read old revisions from")
    report = stamp_artifacts(root, repo, write=write)
    today = current_record()
    for (stage, digest), n in sorted((report.stamped + report.had).items()):
        state = "today's" if digest == today[stage]["digest"] else "not today's"
        print(f"{stage}: {n} artifact(s) made by digest {digest} ({state})")
    for entry, manifest in zip(report.unattributed, report.unattributed_paths):
        verdict = "stays stale" if inputs is None else sample_unattributed(manifest, today, inputs, write)
        print(f"unattributed ({verdict}): {entry}")
    return 0


def sample_unattributed(manifest: Path, today: dict[str, dict], inputs: Inputs, write: bool = True) -> str:
    """Sample one artifact whose code is unknown with today's code; stamp it with today's digest if the
    sample agrees. Returns what happened, in a few words."""
    artifact = Artifact(manifest.parent, json.loads(manifest.read_text()))
    stage = artifact.stage
    if stage not in SAMPLERS:
        return "stays stale: its stage has no sampler"
    try:
        sample = SAMPLERS[stage](artifact, inputs)
    except SampleUnavailable as exc:
        return f"stays stale: cannot sample it: {exc}"
    measured = f"max |Δ| = {sample.difference:.3g} {sample.unit}, tolerance {sample.tolerance:g}"
    if not sample.agrees:
        return f"stays stale: today's code gives different output ({measured})"
    if write:
        stamp_sampled(manifest, today[stage]["digest"], sample.evidence())
    return f"{'stamped' if write else 'would be stamped'} with today's digest: {sample.what} agrees ({measured})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="record today's versions and digests, with evidence")
    parser.add_argument("--accept", action="store_true", help="with --record: also sample digests not yet accepted")
    parser.add_argument("--stage", action="append", default=None, help="with --record: only this stage (repeat)")
    parser.add_argument("--stamp", type=Path, default=None, metavar="DIR", help="stamp the artifacts under DIR")
    parser.add_argument("--dry-run", action="store_true", help="with --stamp: report, write nothing")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="with --stamp: sample each artifact of unknown code (+dirty) and stamp it if today's code reproduces it",
    )
    parser.add_argument(
        "--from", dest="roots", type=Path, action="append", default=[], help="artifact folders to sample"
    )
    parser.add_argument(
        "--bundle", type=Path, action="append", default=None, help="bundles to sample (default: models/)"
    )
    parser.add_argument("--path", type=Path, default=None, help=f"record file (default {RECORD})")
    args = parser.parse_args(argv)
    path = args.path or RECORD
    try:
        if args.stamp is not None and not args.sample:
            return _stamp(args.stamp, not args.dry_run)
        if not args.record and not args.sample:
            problems = stale_stages(read_record(path))
            print("\n".join(problems) or "every stage's code matches its record")
            return 1 if problems else 0
        with ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gemrepro-sample-")))
            if args.sample:
                if args.stamp is None:
                    raise ValueError("--sample: expected --stamp DIR (the artifacts to stamp)")
                roots = [args.stamp, *args.roots]
                return _stamp(args.stamp, not args.dry_run, Inputs([r for r in roots if r.is_dir()], scratch / "work"))
            roots = [*args.roots, artifacts_dir(), *_unpacked(args.bundle, scratch)]
            return record(
                path, Inputs([r for r in roots if r.is_dir()], scratch / "work"), accept=args.accept, stages=args.stage
            )
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"stages: {exc}", file=sys.stderr)
        return 2


def _unpacked(bundles: list[Path] | None, scratch: Path) -> list[Path]:
    """Each bundle (default: the committed ``models/*.tar.xz``) unpacked into a folder of ``scratch``."""
    if bundles is None:
        repo = repo_root()
        bundles = sorted((repo / "models").glob("*.tar.xz")) if repo else []
    roots = []
    for k, bundle in enumerate(bundles):
        root = scratch / f"bundle-{k}"
        unpack(bundle, root)
        roots.append(root)
    return roots


if __name__ == "__main__":
    sys.exit(main())
