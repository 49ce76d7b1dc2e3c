"""Regenerate the book: execute every chapter with papermill at a scale, then build the HTML.

Chapter text sources live in ``notebooks/<name>.md`` (jupytext MyST); the book holds the
executed ``book/chapters/<name>.ipynb``. Every scale is executed and built in ``_build/<scale>``
and leaves the committed notebooks alone, so ``make book && make test`` compares a fresh
execution (nbval) with the committed outputs, not the book with itself. Replacing the committed
outputs is a separate, named step (``make update-book``: ``--update-committed``, ``tiny`` only),
taken when a change of results is meant.

    python -m gemrepro.book.build --scale tiny --build-dir _build/tiny
    python -m gemrepro.book.build --scale tiny --update-committed   # after a deliberate change
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from gemrepro.book.profile import profile_table, shipped_entries, summary
from gemrepro.book.reader import tag_notebook
from gemrepro.cache.artifacts import ACCESS_LOG_ENV, STAGE_LOG_ENV, git_revision, hardware
from gemrepro.cache.paths import FRESH_ENV, artifacts_dir, repo_root
from gemrepro.config.scales import get_scale

DEFAULT_SCALE = "tiny"
BUILD_FLAGS = ("-W", "-n", "--keep-going")
"""Warnings are errors and every cross-reference inside the book must resolve."""

SUMMARY_CHAPTERS = ("results",)
"""Pages that gather the other chapters' results: executed last (they would otherwise compute it all)."""

COLAB_GPU = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
"""Notebook metadata that makes the Colab launch button open a GPU runtime."""


def chapters(root: Path) -> list[str]:
    """Chapter names in table-of-contents order (files under ``book/chapters/``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names: list[str] = []

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            file = entry.get("file", "")
            if file.startswith("book/chapters/"):
                names.append(Path(file).name)
            for key in ("sections", "chapters"):
                walk(entry.get(key, []))
            for part in entry.get("parts", []):
                walk(part.get("chapters", []))

    walk(toc.get("chapters", []) + [p for part in toc.get("parts", []) for p in part.get("chapters", [])])
    return names


def execute_chapter(root: Path, name: str, output: Path, parameters: dict) -> float:
    """Execute ``notebooks/<name>.md`` with papermill into ``output``; returns wall time (s)."""
    # Imported here: jupytext and papermill belong to the book extra (gemrepro[book]).
    import jupytext
    import papermill

    source = root / "notebooks" / f"{name}.md"
    if not source.is_file():
        raise FileNotFoundError(f"chapter source {source} is missing")
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.update(COLAB_GPU)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            notebook,
            str(output),
            parameters=parameters,
            cwd=str(root / "book" / "chapters"),
            kernel_name="python3",
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as exc:
        raise RuntimeError(f"chapter {name} failed: {exc.ename}: {exc.evalue}") from None
    return time.perf_counter() - start


def build_html(source: Path, output: Path) -> Path:
    """Build the HTML of the book in ``source`` (executed notebooks) into ``output``; warnings are errors.

    The staged notebooks get the reader's folds first (:mod:`gemrepro.book.reader`); the committed
    ones keep their tags.
    """
    for notebook in sorted((source / "book" / "chapters").glob("*.ipynb")):
        tag_notebook(notebook)
    subprocess.run(
        [
            str(Path(sys.executable).with_name("jupyter-book")),
            "build",
            str(source),
            "--path-output",
            str(output),
            *BUILD_FLAGS,
        ],
        check=True,
    )
    return output / "_build" / "html"


PROFILES = Path("book") / "profiles"
"""Where ``--record-profile`` keeps a build's profile for the performance appendix (committed)."""


def report_profile(executed: dict[str, tuple[Path, float]], root: Path, build_dir: Path, about: dict) -> None:
    """Print each executed chapter's wall time and where its artifacts came from; keep the stage
    table in ``<build>/profile.csv`` (chapter, wall_s, stage, source, artifacts, seconds) and what
    the build was in ``<build>/profile.json`` (scale, jobs, wall time, commit, machine)."""
    table = profile_table(executed, shipped_entries(root))
    table.to_csv(build_dir / "profile.csv", index=False)
    (build_dir / "profile.json").write_text(json.dumps(about, indent=2) + "\n")
    overview = summary(table, {name: wall for name, (_, wall) in executed.items()})
    print("[book] profile (s; artifacts computed / from a bundle / from the cache):")
    print(overview.to_string(index=False))


def _execute_logged(root: Path, name: str, staged: Path, stage_log: Path, scale: str, update: bool) -> float:
    """Execute one chapter with its stage log (in a worker process of :func:`_execute_all`); with
    ``update`` its executed notebook replaces the committed one as soon as it is done."""
    print(f"[book] executing {name} at scale={scale} ...", flush=True)
    stage_log.unlink(missing_ok=True)
    os.environ[STAGE_LOG_ENV] = str(stage_log)  # the chapter's kernel inherits it
    try:
        seconds = execute_chapter(root, name, staged, {"scale": scale})
    finally:
        os.environ.pop(STAGE_LOG_ENV, None)
    print(f"[book] {name}: {seconds:.0f} s", flush=True)
    if update:
        shutil.copy2(staged, root / "book" / "chapters" / f"{name}.ipynb")
    return seconds


def _execute_all(
    root: Path, runs: list[tuple[str, Path, Path]], scale: str, jobs: int, update: bool
) -> dict[str, tuple[Path, float]]:
    """Execute ``runs`` (name, output notebook, stage log), ``jobs`` at a time; the first failure stops
    the build with its chapter's name."""
    if jobs == 1 or len(runs) < 2:
        return {name: (log, _execute_logged(root, name, staged, log, scale, update)) for name, staged, log in runs}
    # Spawned, not forked: the parent may have run OpenMP threads, and a fork of those can hang.
    with ProcessPoolExecutor(min(jobs, len(runs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            name: (log, pool.submit(_execute_logged, root, name, staged, log, scale, update))
            for name, staged, log in runs
        }
        return {name: (log, future.result()) for name, (log, future) in futures.items()}


def build_book(
    scale: str = DEFAULT_SCALE,
    build_dir: Path | None = None,
    only: list[str] | None = None,
    update_committed: bool = False,
    jobs: int = 1,
    record_profile: bool = False,
) -> Path:
    """Execute all chapters at ``scale`` and build the HTML book; returns the HTML folder.

    ``update_committed`` also copies the executed notebooks over the committed ones (only at the
    committed book's scale, ``tiny``). ``jobs`` chapters execute at once, each in a process of its
    own (every chapter computes single-threaded); two chapters that need the same missing artifact
    share it through the cache's per-key lock, so the book is the same whatever ``jobs`` is.
    ``record_profile`` copies the build's profile into ``book/profiles/<scale>.{csv,json}``, where
    the performance appendix reads it.
    """
    if isinstance(jobs, bool) or int(jobs) != jobs or jobs < 1:
        raise ValueError(f"--jobs: expected a positive number of chapters executed at once, got {jobs!r}")
    get_scale(scale)  # one-line error for an unknown scale before any work
    if update_committed and scale != DEFAULT_SCALE:
        raise ValueError(f"--update-committed: the committed book is the {DEFAULT_SCALE} scale, got --scale {scale}")
    root = repo_root()
    if root is None:
        raise FileNotFoundError("run inside a gemrepro checkout (no _config.yml / pyproject.toml found)")
    build_dir = (root / (build_dir or Path("_build") / scale)).resolve()
    stage = build_dir / "src"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy2(root / name, stage / name)
    if (root / "_static").is_dir():
        shutil.copytree(root / "_static", stage / "_static")  # the reader view's CSS
    shutil.copytree(root / "book", stage / "book", ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))

    log = build_dir / "artifacts.txt"  # what the chapters used: `gemrepro artifacts pack` ships it
    if not only:
        log.unlink(missing_ok=True)
    os.environ[ACCESS_LOG_ENV] = str(log)
    names = chapters(root)
    profile_dir = build_dir / "profile"
    profile_dir.mkdir(exist_ok=True)
    runs = []
    for name in names:
        committed = root / "book" / "chapters" / f"{name}.ipynb"
        staged = stage / "book" / "chapters" / f"{name}.ipynb"
        if only and name not in only:
            if committed.is_file():
                shutil.copy2(committed, staged)
            continue
        runs.append((name, staged, profile_dir / f"{name}.jsonl"))
    executed: dict[str, tuple[Path, float]] = {}
    cached_before = sum(1 for _ in artifacts_dir().glob("*/*/manifest.json"))
    start = time.perf_counter()
    first = [run for run in runs if run[0] not in SUMMARY_CHAPTERS]
    last = [run for run in runs if run[0] in SUMMARY_CHAPTERS]
    for group in (first, last):  # the summary pages read what the others computed: they wait for them
        executed.update(_execute_all(root, group, scale, jobs, update_committed))
    about = {
        "scale": scale,
        "jobs": int(jobs),
        "chapter_wall_s": {name: round(wall, 1) for name, (_, wall) in executed.items()},
        "wall_s": round(time.perf_counter() - start, 1),
        "artifacts_cached_before": cached_before,
        "bundles_used": os.environ.get(FRESH_ENV) != "1",
        "git_revision": git_revision(),
        "hardware": hardware(),
    }
    report_profile(executed, root, build_dir, about)
    if record_profile:
        (root / PROFILES).mkdir(parents=True, exist_ok=True)
        for suffix in ("csv", "json"):
            shutil.copy2(build_dir / f"profile.{suffix}", root / PROFILES / f"{scale}.{suffix}")

    build_html(stage, build_dir)
    html = build_dir / "_build" / "html"
    print(f"[book] HTML: {html / 'index.html'}")
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default=DEFAULT_SCALE)
    parser.add_argument("--build-dir", type=Path, default=None)
    parser.add_argument("--only", nargs="*", help="execute only these chapters (others keep their outputs)")
    parser.add_argument(
        "--update-committed",
        action="store_true",
        help=f"replace the committed notebooks with the executed ones ({DEFAULT_SCALE} only)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="chapters executed at once, each single-threaded (default 1; make book uses 2)",
    )
    parser.add_argument(
        "--record-profile",
        action="store_true",
        help=f"keep this build's profile in {PROFILES}/<scale>.csv/.json for the performance appendix",
    )
    parser.add_argument(
        "--html-only",
        action="store_true",
        help="build the committed notebooks as they are (no execution), e.g. to publish",
    )
    args = parser.parse_args(argv)
    try:
        if args.html_only:
            root = repo_root()
            if root is None:
                raise FileNotFoundError("run inside a gemrepro checkout (no _config.yml / pyproject.toml found)")
            html = build_html(root, (root / (args.build_dir or Path("_build") / "committed")).resolve())
            print(f"[book] HTML: {html / 'index.html'}")
        else:
            build_book(args.scale, args.build_dir, args.only, args.update_committed, args.jobs, args.record_profile)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"book: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
