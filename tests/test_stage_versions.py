"""A stage's code cannot change without its cache version (or a reviewed record) changing too."""

import json
import shutil
from pathlib import Path

import pytest

from gemrepro.studies import stages

RECORD = Path(__file__).with_name("stage_code.json")


def test_every_stage_code_matches_its_recorded_version():
    problems = stages.stale_stages(json.loads(RECORD.read_text()))
    assert not problems, "\n".join(problems)


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package sources that the digests read instead of the installed ones."""
    copy = tmp_path / "gemrepro"
    shutil.copytree(stages.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stages, "PACKAGE_DIR", copy)
    stages._module_source.cache_clear()
    yield copy
    stages._module_source.cache_clear()


def test_a_change_of_md_code_flags_the_md_stages_and_only_them(package_copy):
    recorded = stages.current_record()
    integrators = package_copy / "md" / "integrators.py"
    integrators.write_text(integrators.read_text().replace("def ", "def _unused_helper():\n    return 1\n\n\ndef ", 1))
    stages._module_source.cache_clear()
    flagged = {problem.split(":")[0] for problem in stages.stale_stages(recorded)}
    assert "md-sweep, md-labels" in flagged and "md-seeds" in flagged
    assert "labels, dataset" not in flagged and "models" not in flagged  # neither imports the MD engine


def test_docstrings_and_comments_do_not_count_as_code(package_copy):
    recorded = stages.current_record()
    build = package_copy / "data" / "build.py"
    text = build.read_text()
    build.write_text(text.replace('"""', '"""A reworded docstring. ', 1) + "\n# a comment\n")
    stages._module_source.cache_clear()
    assert stages.stale_stages(recorded) == []
