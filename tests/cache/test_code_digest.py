"""The code digest: what changes it (code), what does not (docstrings, comments, the cache's own modules),
and the same digest read from a git revision as from the files."""

import shutil
import subprocess

import pytest

from gemrepro.cache.code import PACKAGE_DIR, CodeWalker, GitReader, PackageReader, code_closure


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package sources (edited by the test), and a walker factory over it."""
    copy = tmp_path / "gemrepro"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.json"))
    return copy


def _digest(package, module):
    return CodeWalker(PackageReader(package)).digest(module)


def test_changing_a_builder_or_what_it_imports_changes_its_digest(package_copy):
    before = _digest(package_copy, "gemrepro.studies.sweep")
    integrators = package_copy / "md" / "integrators.py"
    integrators.write_text(integrators.read_text().replace("def ", "def _unused_helper():\n    return 1\n\n\ndef ", 1))
    assert _digest(package_copy, "gemrepro.studies.sweep") != before
    assert _digest(package_copy, "gemrepro.data.build") == CodeWalker().digest("gemrepro.data.build")  # no MD in it


def test_docstrings_and_comments_do_not_count_as_code(package_copy):
    before = _digest(package_copy, "gemrepro.data.build")
    build = package_copy / "data" / "build.py"
    build.write_text(build.read_text().replace('"""', '"""A reworded docstring. ', 1) + "\n# a comment\n")
    assert _digest(package_copy, "gemrepro.data.build") == before


def test_the_cache_modules_are_no_part_of_any_closure(package_copy):
    assert not [m for m in code_closure("gemrepro.studies.sweep") if m.startswith("gemrepro.cache")]
    before = _digest(package_copy, "gemrepro.studies.sweep")
    artifacts = package_copy / "cache" / "artifacts.py"
    artifacts.write_text(artifacts.read_text() + "\n\ndef _another_check():\n    return None\n")
    assert _digest(package_copy, "gemrepro.studies.sweep") == before


def test_a_version_constant_is_read_without_importing():
    walker = CodeWalker()
    assert walker.constant("gemrepro.studies.sweep:STAGE_VERSION") >= 1
    assert walker.constant("gemrepro.studies.pretraining:STAGE_VERSION") >= 1  # beside a tuple assignment
    with pytest.raises(LookupError, match="NO_SUCH"):
        walker.constant("gemrepro.studies.sweep:NO_SUCH")


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_a_git_revision_gives_the_digest_its_files_had(tmp_path):
    repo = tmp_path / "repo"
    package = repo / "src" / "gemrepro"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .helper import f\n")
    (package / "sub" / "helper.py").write_text("def f():\n    return 1\n")
    (package / "builder.py").write_text('"""Doc."""\nfrom gemrepro.sub import f\n\nVERSION = 3\n')
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    first = _git(repo, "rev-parse", "--short", "HEAD")
    then = CodeWalker(PackageReader(package)).digest("gemrepro.builder")
    (package / "sub" / "helper.py").write_text("def f():\n    return 2\n")
    now = CodeWalker(PackageReader(package)).digest("gemrepro.builder")
    at_first = CodeWalker(GitReader(repo, first))
    assert at_first.digest("gemrepro.builder") == then != now
    assert at_first.closure("gemrepro.builder") == ["gemrepro.builder", "gemrepro.sub", "gemrepro.sub.helper"]
    assert at_first.constant("gemrepro.builder:VERSION") == 3
    with pytest.raises(LookupError):
        GitReader(repo, "0123456")
