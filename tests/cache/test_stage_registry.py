"""Every artifact folder the package writes is a registered stage, so none escapes the code check."""

import ast
from pathlib import Path

from gemrepro.cache.code import PACKAGE_DIR, top_level_assignments
from gemrepro.cache.stages import STAGES

CALLS = ("get_or_create", "load_artifact", "shipped_artifact", "_train")


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level names bound to strings (``STAGE = "x"``, ``A, B = "x", "y"``)."""
    return {
        name: value.value
        for name, value in top_level_assignments(tree)
        if isinstance(value, ast.Constant) and isinstance(value.value, str)
    }


def written_stages() -> dict[str, str]:
    """Stage name -> where: string literals and module constants passed as the stage of the cache's calls,
    and every module-level ``*STAGE`` constant."""
    stages = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.parent.name == "cache":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _string_constants(tree)
        stages.update({v: f"{path.name}:{k}" for k, v in constants.items() if k.endswith("STAGE")})
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in CALLS:
                for arg in node.args[:2]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        stages[arg.value] = f"{path.name}:{node.lineno}"
                    elif isinstance(arg, ast.Name) and arg.id in constants:
                        stages[constants[arg.id]] = f"{path.name}:{arg.id}"
    return stages


def test_every_stage_the_package_writes_is_registered():
    found = written_stages()
    assert {"models", "md-sweep", "free-atoms", "labels", "dataset", "sanity-fit"} <= set(found)  # the scan sees them
    missing = {stage: where for stage, where in found.items() if stage not in STAGES}
    assert not missing, f"stages written but not in gemrepro.cache.stages.STAGES: {missing}"


def test_every_registered_builder_and_version_exists():
    for stage, code in STAGES.items():
        assert Path(PACKAGE_DIR.parent, *code.builder.split(".")).with_suffix(".py").is_file(), stage
        assert code.version is None or code.version_value() >= 1, stage
