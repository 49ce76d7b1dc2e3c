"""The layer rule of ARCHITECTURE.md: a package imports only packages on lower floors (imports inside
functions included), so the data flow reads bottom-up and no floor depends on the book above it."""

import ast
from pathlib import Path

from gemrepro.cache import code

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "gemrepro"

#: Floor of each top-level package or module of gemrepro (ARCHITECTURE.md draws the same table).
FLOORS = {
    "__init__": 0,
    "paper": 0,
    "config": 0,
    "cache": 1,
    "catalog": 2,
    "model": 2,
    "analysis": 2,
    "reference": 2,
    "data": 3,
    "md": 3,
    "train": 4,
    "integrations": 4,
    "benchmarks": 5,
    "plots": 5,
    "studies": 6,
    "stress": 7,
    "book": 7,
    "cli": 8,
    "__main__": 9,
}


def top_level(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path, module: str) -> set[str]:
    """The gemrepro modules ``path`` imports (the resolver the stage digests use)."""
    names = code.imported_names(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py")
    return {name for name in names if code.module_file(name) is not None}


def modules():
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        yield path, ".".join(rel.parts).removesuffix(".__init__")


def test_every_package_has_a_floor():
    tops = {top_level(module) for _, module in modules()}
    assert tops <= set(FLOORS), f"packages without a floor in FLOORS and ARCHITECTURE.md: {sorted(tops - set(FLOORS))}"


def test_no_package_imports_one_on_its_own_or_a_higher_floor():
    violations = []
    for path, module in modules():
        mine = top_level(module)
        for imported in imports_of(path, module):
            theirs = top_level(imported)
            if theirs != mine and theirs != "__init__" and FLOORS[theirs] >= FLOORS[mine]:
                violations.append(f"{module} (floor {FLOORS[mine]}) imports {imported} (floor {FLOORS[theirs]})")
    assert not violations, "\n".join(violations)


def test_the_rule_sees_an_upward_import(tmp_path):
    """The checker itself: a model module importing a study is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from gemrepro.studies.sweep import Protocol\n    return Protocol\n")
    (imported,) = imports_of(bad, "gemrepro.model.bad")
    assert FLOORS[top_level(imported)] > FLOORS[top_level("gemrepro.model.bad")]


def test_architecture_page_lists_every_floor():
    text = (PACKAGE_DIR.parents[1] / "ARCHITECTURE.md").read_text()
    for name in FLOORS:
        if not name.startswith("__"):
            assert f"`{name}`" in text, f"ARCHITECTURE.md does not place `{name}`"
