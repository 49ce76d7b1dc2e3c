"""The code digest of a module: what tells the cache that a result was made by other code.

A digest hashes the syntax trees (docstrings and comments left out) of a module and of every
gemrepro module it imports, transitively. Modules under ``gemrepro.cache`` are left out: the cache
stores and checks results, it computes none, so changing how it checks them must not make every
result stale. A :class:`SourceReader` says where the sources come from: the installed package
(:class:`PackageReader`) or a git revision of the checkout (:class:`GitReader`), so the digest of
the code that made an old artifact can be computed from its manifest's ``git_revision``.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

PACKAGE = "gemrepro"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
EXCLUDED = ("gemrepro.cache",)
"""Modules (and packages) that no closure follows: they hold no code that computes an output."""

SourceReader = Callable[[str], "tuple[str, bool] | None"]
"""Module name -> (its source text, whether it is a package's ``__init__``), None if no such module."""


def module_file(name: str, package_dir: Path | None = None) -> Path | None:
    """The source file of a gemrepro module (a package's ``__init__.py``), None if ``name`` is not a module.

    Found by path, without importing: ``from x import f`` names both ``x`` and ``x.f``.
    """
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = (package_dir or PACKAGE_DIR).joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


class PackageReader:
    """Reads the sources of a package folder on disk (default: the installed gemrepro)."""

    def __init__(self, package_dir: Path | None = None) -> None:
        self.package_dir = Path(package_dir) if package_dir else PACKAGE_DIR

    def __call__(self, name: str) -> tuple[str, bool] | None:
        path = module_file(name, self.package_dir)
        if path is None:
            return None
        return path.read_text(encoding="utf-8"), path.name == "__init__.py"


class GitReader:
    """Reads the sources of ``src/gemrepro`` as they were at a git revision of the checkout ``repo``."""

    def __init__(self, repo: Path, revision: str) -> None:
        self.repo, self.revision = Path(repo), revision
        listing = self._git("ls-tree", "-r", "--name-only", revision, "--", f"src/{PACKAGE}")
        self.files = set(listing.splitlines())

    def _git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.repo, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise LookupError(f"git {' '.join(args[:2])}: {done.stderr.strip() or 'failed'}")
        return done.stdout

    def __call__(self, name: str) -> tuple[str, bool] | None:
        parts = name.split(".")
        if parts[0] != PACKAGE:
            return None
        base = "/".join(["src", *parts])
        for path, is_package in ((base + ".py", False), (base + "/__init__.py", True)):
            if path in self.files:
                return self._git("show", f"{self.revision}:{path}"), is_package
        return None


def strip_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` without the docstrings of its module, classes and functions (they do not compute)."""
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

    ``from x import f`` gives both ``x`` and ``x.f`` (``f`` may be a module); the reader tells
    which are modules.
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


def excluded(name: str) -> bool:
    """Whether closures skip ``name`` (a module of :data:`EXCLUDED`)."""
    return any(name == e or name.startswith(e + ".") for e in EXCLUDED)


class CodeWalker:
    """Digests of module closures read through one :data:`SourceReader`; each module is parsed once."""

    def __init__(self, reader: SourceReader | None = None) -> None:
        self.reader = reader or PackageReader()
        self._sources: dict[str, tuple[str, frozenset[str], ast.Module] | None] = {}

    def source(self, name: str) -> tuple[str, frozenset[str], ast.Module] | None:
        """(syntax dump without docstrings, imported gemrepro names, tree) of a module, None if it is not one."""
        if name not in self._sources:
            found = self.reader(name)
            if found is None:
                self._sources[name] = None
            else:
                text, is_package = found
                tree = strip_docstrings(ast.parse(text))
                assert isinstance(tree, ast.Module)
                dump = ast.dump(tree, annotate_fields=False)
                self._sources[name] = (dump, frozenset(imported_names(tree, name, is_package)), tree)
        return self._sources[name]

    def closure(self, name: str) -> list[str]:
        """``name`` and every gemrepro module it imports, transitively (the cache's modules left out), sorted."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen or excluded(current):
                continue
            source = self.source(current)
            if source is None:
                continue
            seen.add(current)
            todo.extend(source[1] - seen)
        return sorted(seen)

    def digest(self, name: str) -> str:
        """16 hex digits over the docstring-free syntax of ``name``'s code closure."""
        digest = hashlib.sha256()
        for module in self.closure(name):
            digest.update(module.encode())
            source = self.source(module)
            assert source is not None  # closure keeps only the modules that have a source
            digest.update(source[0].encode())
        return digest.hexdigest()[:16]

    def constant(self, reference: str) -> int:
        """The integer a module assigns to a name at its top level (``"module:NAME"``), read without importing.

        Version constants are plain assignments (``STAGE_VERSION = 2``, or several names at once).
        """
        module, _, name = reference.partition(":")
        source = self.source(module)
        if source is None:
            raise LookupError(f"{reference}: no module {module}")
        for left, right in top_level_assignments(source[2]):
            if left == name and right is not None and _is_int(right):
                return int(right.value)  # type: ignore[attr-defined]
        raise LookupError(f"{reference}: {module} assigns no integer to {name}")


def top_level_assignments(tree: ast.Module) -> Iterator[tuple[str, ast.expr | None]]:
    """(name, value) of every module-level assignment to a plain name: ``A = 1``, ``A, B = 1, 2``, ``A: int = 1``."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = (
                    zip(target.elts, node.value.elts)
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                    else [(target, node.value)]
                )
                for left, right in pairs:
                    if isinstance(left, ast.Name):
                        yield left.id, right
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id, node.value


def _is_int(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool)


@lru_cache(maxsize=1)
def package_walker() -> CodeWalker:
    """The walker of the installed package (one per process: its modules are parsed once)."""
    return CodeWalker(PackageReader())


def code_closure(name: str) -> list[str]:
    """:meth:`CodeWalker.closure` of the installed package."""
    return package_walker().closure(name)


def code_digest(name: str) -> str:
    """:meth:`CodeWalker.digest` of the installed package."""
    return package_walker().digest(name)
