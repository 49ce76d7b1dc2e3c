"""The project's own promises: pins agree, the cache is ignored, the CLI answers."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins() -> set[str]:
    """The library's dependencies and every extra's (book, torchsim, test), without the extras' self-references."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins |= {pin for pin in extra if not pin.startswith("gemrepro[")}
    return pins


def test_the_library_does_not_need_the_book_or_test_tools():
    runtime = {
        pin.split("==")[0] for pin in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    assert not runtime & {"jupyter-book", "papermill", "jupytext", "nbval", "pytest", "ruff", "torch-sim-atomistic"}


def _conda_pins() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return set(pip)


def test_environment_yml_has_the_same_pins_as_pyproject():
    assert _pyproject_pins() == _conda_pins()


def test_torch_is_pinned_exactly_and_jupyter_book_is_version_1():
    pins = _pyproject_pins()
    assert "torch==2.13.0" in pins
    book = next(p for p in pins if p.startswith("jupyter-book"))
    assert book.split("==")[1].startswith("1.")


def test_artifact_cache_is_git_ignored():
    out = subprocess.run(["git", "check-ignore", "-q", "data/artifacts/x/y"], cwd=ROOT)
    assert out.returncode == 0


def test_cli_help_lists_the_stages():
    out = subprocess.run([sys.executable, "-m", "gemrepro", "--help"], capture_output=True, text=True, check=True)
    for command in ("data", "model"):
        assert command in out.stdout


def test_cli_bad_scale_is_one_line():
    out = subprocess.run(
        [sys.executable, "-m", "gemrepro", "data", "build", "--scale", "huge"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "unknown scale 'huge'" in out.stderr


def test_every_test_has_a_time_limit():
    """A hang fails its test (pytest-timeout) instead of stalling CI until its 90-minute limit."""
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(ini["timeout"]) <= 2700
    assert any(pin.startswith("pytest-timeout==") for pin in _pyproject_pins())
