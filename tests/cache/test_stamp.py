"""Migration: an artifact made before manifests recorded their code gets the digest its git revision had."""

import json
import shutil
import subprocess

from gemrepro.cache.artifacts import MANIFEST
from gemrepro.cache.stages import stale_reason
from gemrepro.cache.stamp import stamp_artifacts


def _git(repo, *args):
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _old_artifact(root, stage, key, revision):
    folder = root / stage / key
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"stage": stage, "key": key, "git_revision": revision}))
    return folder / MANIFEST


def test_stamp_attributes_the_digest_of_the_artifacts_revision(tmp_path, fake_stage):
    repo = tmp_path / "repo"
    shutil.copytree(fake_stage.package, repo / "src" / "gemrepro")  # the stage's code at the revision
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "first")
    first, then = _git(repo, "rev-parse", "--short", "HEAD"), fake_stage.digest()
    now = fake_stage.edit()  # today's code differs from the revision's
    root = tmp_path / "cache"
    old = _old_artifact(root, fake_stage.name, "a" * 16, first)
    dirty = _old_artifact(root, fake_stage.name, "b" * 16, first + "+dirty")
    unknown = _old_artifact(root, fake_stage.name, "c" * 16, "unknown")
    report = stamp_artifacts(root, repo, write=False)
    assert report.stamped == {(fake_stage.name, then): 1} and "code_digest" not in json.loads(old.read_text())
    report = stamp_artifacts(root, repo)
    assert json.loads(old.read_text())["code_digest"] == then != now
    assert len(report.unattributed) == 2  # +dirty and unknown: nothing certain about their code
    assert "code_digest" not in json.loads(dirty.read_text()) and "code_digest" not in json.loads(unknown.read_text())
    assert stale_reason(fake_stage.name, json.loads(old.read_text())) is not None  # not today's code
    fake_stage.edit("return 1")  # back to the revision's code: the stamped artifact is today's
    assert stale_reason(fake_stage.name, json.loads(old.read_text())) is None
    assert stamp_artifacts(root, repo).had == {(fake_stage.name, then): 1}  # stamping twice changes nothing
