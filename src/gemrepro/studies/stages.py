"""Which code produces each cached stage, so a change of that code cannot serve stale results unnoticed.

Every stage puts a version constant into its cache key. A constant alone relies on memory; this
module gives each stage a *code digest*: a hash of the syntax trees (docstrings and comments
left out) of the module that builds it and of every gemrepro module it imports, transitively.
``tests/stage_code.json`` records, per stage, the version and the digest it was last reviewed
at; ``tests/test_stage_versions.py`` fails when a stage's code changed but neither was updated.
The developer then decides: the outputs change, so bump the stage's version (its cache keys
change, nothing stale is served); or they do not (a refactor), so record the new digest::

    python -m gemrepro.studies.stages --record
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gemrepro.cache.paths import repo_root

PACKAGE = "gemrepro"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StageCode:
    """One cached stage family: where its version constant lives and which module builds it."""

    stages: str  # the artifact folders it writes, as in data/artifacts/<stage>/
    version: str  # "module:CONSTANT"
    builder: str  # the module whose functions build it (its imports are followed)

    def version_value(self) -> int:
        module, _, name = self.version.partition(":")
        return int(getattr(importlib.import_module(module), name))

    def digest(self) -> str:
        return code_digest(self.builder)


STAGE_CODE: tuple[StageCode, ...] = (
    StageCode("labels, dataset", "gemrepro.data.build:SAMPLER_VERSION", "gemrepro.data.build"),
    StageCode("models", "gemrepro.studies.learning_curve:STAGE_VERSION", "gemrepro.studies.learning_curve"),
    StageCode("md-start", "gemrepro.studies.sweep:START_STAGE_VERSION", "gemrepro.studies.sweep"),
    StageCode("md-sweep, md-labels", "gemrepro.studies.sweep:STAGE_VERSION", "gemrepro.studies.sweep"),
    StageCode("md-seeds", "gemrepro.studies.holes:STAGE_VERSION", "gemrepro.studies.holes"),
    StageCode("md-long", "gemrepro.studies.long_runs:STAGE_VERSION", "gemrepro.studies.long_runs"),
    StageCode("oos-start, oos", "gemrepro.studies.out_of_sample:STAGE_VERSION", "gemrepro.studies.out_of_sample"),
    StageCode(
        "pretrained, md17-models, stability-md",
        "gemrepro.studies.pretraining:STAGE_VERSION",
        "gemrepro.studies.pretraining",
    ),
    StageCode(
        "arms-pretrained, arms-models, arms-md",
        "gemrepro.studies.pretraining_arms:STAGE_VERSION",
        "gemrepro.studies.pretraining_arms",
    ),
    StageCode(
        "committee-disagreement, md-committee", "gemrepro.studies.committee:STAGE_VERSION", "gemrepro.studies.committee"
    ),
    StageCode("performance", "gemrepro.studies.performance:STAGE_VERSION", "gemrepro.studies.performance"),
    StageCode("cost-measurements", "gemrepro.studies.estimate:STAGE_VERSION", "gemrepro.studies.estimate"),
    StageCode("reference-md", "gemrepro.data.reference_md:STAGE_VERSION", "gemrepro.data.reference_md"),
    StageCode("stress-audit", "gemrepro.stress.cached:STAGE_VERSION", "gemrepro.stress.cached"),
)


def module_file(name: str) -> Path | None:
    """The source file of a gemrepro module (a package's ``__init__.py``), None if ``name`` is not a module.

    Found by path, without importing: ``from x import f`` names both ``x`` and ``x.f``.
    """
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def imported_names(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """gemrepro names imported anywhere in ``tree`` (inside functions too), relative imports resolved.

    ``from x import f`` gives both ``x`` and ``x.f`` (``f`` may be a module); :func:`module_file`
    tells which are modules.
    """
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


@lru_cache(maxsize=None)
def _module_source(name: str) -> tuple[str, frozenset[str]] | None:
    """(syntax dump without docstrings, imported gemrepro modules) of a module, None if it is not one."""
    path = module_file(name)
    if path is None:
        return None
    tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8")))
    return ast.dump(tree, annotate_fields=False), frozenset(imported_names(tree, name, path.name == "__init__.py"))


def code_closure(name: str) -> list[str]:
    """``name`` and every gemrepro module it imports, transitively, sorted."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        source = _module_source(current)
        if source is None:
            continue
        seen.add(current)
        todo.extend(source[1] - seen)
    return sorted(seen)


def code_digest(name: str) -> str:
    """16 hex digits over the docstring-free syntax of ``name``'s code closure."""
    digest = hashlib.sha256()
    for module in code_closure(name):
        digest.update(module.encode())
        source = _module_source(module)
        assert source is not None  # code_closure keeps only the modules that have a source
        digest.update(source[0].encode())
    return digest.hexdigest()[:16]


def current_record() -> dict[str, dict]:
    """``{stages: {"version": int, "digest": str}}`` of the code as it is now."""
    return {s.stages: {"version": s.version_value(), "digest": s.digest()} for s in STAGE_CODE}


def stale_stages(recorded: dict[str, dict]) -> list[str]:
    """Stages whose code changed since ``recorded`` while their version did not (each a sentence)."""
    problems = []
    for stage, now in current_record().items():
        before = recorded.get(stage)
        if before is None:
            problems.append(f"{stage}: not recorded (new stage); run python -m gemrepro.studies.stages --record")
        elif now["version"] == before["version"] and now["digest"] != before["digest"]:
            problems.append(
                f"{stage}: its code changed at version {now['version']}; bump the version if its "
                "outputs change, else record the new digest (python -m gemrepro.studies.stages --record)"
            )
        elif now != before:
            problems.append(
                f"{stage}: version {before['version']} -> {now['version']}; record it "
                "(python -m gemrepro.studies.stages --record)"
            )
    return problems


def default_record_path() -> Path:
    root = repo_root()
    if root is None:
        raise FileNotFoundError("stages: no checkout found (the record lives in tests/stage_code.json)")
    return root / "tests" / "stage_code.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="write the current versions and digests")
    parser.add_argument("--path", type=Path, default=None, help="record file (default tests/stage_code.json)")
    args = parser.parse_args(argv)
    path = args.path or default_record_path()
    if args.record:
        path.write_text(json.dumps(current_record(), indent=2, sort_keys=True) + "\n")
        print(f"{path}: {len(STAGE_CODE)} stages recorded")
        return 0
    problems = stale_stages(json.loads(path.read_text()) if path.is_file() else {})
    print("\n".join(problems) or "every stage's code matches its recorded version")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
