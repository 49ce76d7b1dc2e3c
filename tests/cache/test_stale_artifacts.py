"""A changed stage is not served from the old cache: an artifact records the digest of the code that made
it, and one made by other code is rebuilt (the old folder kept aside) unless the record accepts it."""

import json

import pytest

from gemrepro.cache import bundle
from gemrepro.cache.artifacts import MANIFEST, STALE, artifact_key, get_or_create, load_artifact


def _make(root, stage, params, payload="x"):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "payload.txt").write_text(payload)

    return get_or_create(stage, params, build, root), calls


def test_the_manifest_records_the_digest_of_the_code_that_made_it(tmp_path, fake_stage):
    artifact, _ = _make(tmp_path, fake_stage.name, {"n": 1})
    assert artifact.manifest["code_digest"] == fake_stage.digest()
    demo, _ = _make(tmp_path, "demo", {"n": 1})  # not a registered stage: no stamp, no check
    assert "code_digest" not in demo.manifest and load_artifact("demo", {"n": 1}, tmp_path) is not None


def test_an_artifact_made_by_other_code_is_rebuilt_and_the_old_folder_kept(tmp_path, fake_stage, capsys):
    old, _ = _make(tmp_path, fake_stage.name, {"n": 1}, "old")
    before = fake_stage.digest()
    after = fake_stage.edit()
    assert after != before
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path) is None
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path) is None  # asked twice: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{fake_stage.name}/{old.key}" in err[0] and before in err[0] and after in err[0]
    new, calls = _make(tmp_path, fake_stage.name, {"n": 1}, "new")
    assert len(calls) == 1 and new.manifest["code_digest"] == after
    assert (new.path / "payload.txt").read_text() == "new"
    kept = tmp_path / fake_stage.name / STALE / f"{old.key}-{before}"
    assert (kept / "payload.txt").read_text() == "old"  # moved aside, not deleted
    assert json.loads((kept / MANIFEST).read_text())["code_digest"] == before


def test_a_second_stale_folder_of_the_same_name_is_kept_too(tmp_path, fake_stage):
    key = _make(tmp_path, fake_stage.name, {"n": 1}, "a")[0].key
    a = fake_stage.digest()
    fake_stage.edit("return 2")
    _make(tmp_path, fake_stage.name, {"n": 1}, "b")  # a's folder goes to .stale/<key>-a
    fake_stage.edit("return 1")
    assert fake_stage.digest() == a
    _make(tmp_path, fake_stage.name, {"n": 1}, "a again")  # b's folder goes aside
    fake_stage.edit("return 2")
    _make(tmp_path, fake_stage.name, {"n": 1}, "b again")  # the second a-folder: <key>-a-2
    stale = tmp_path / fake_stage.name / STALE
    assert (stale / f"{key}-{a}" / "payload.txt").read_text() == "a"
    assert (stale / f"{key}-{a}-2" / "payload.txt").read_text() == "a again"


def test_an_artifact_without_a_digest_is_not_served(tmp_path, fake_stage, capsys):
    folder = tmp_path / fake_stage.name / artifact_key({"n": 1})
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"stage": fake_stage.name, "git_revision": "abc1234"}))
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path) is None
    assert "no digest" in capsys.readouterr().err


def test_an_accepted_digest_is_served_while_today_is_the_recorded_code(tmp_path, fake_stage):
    old, _ = _make(tmp_path, fake_stage.name, {"n": 1})
    before = fake_stage.digest()
    after = fake_stage.edit()
    fake_stage.write_record({"version": 1, "digest": after, "accepted": [{"digest": before, "evidence": "test"}]})
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path).key == old.key
    fake_stage.edit("return 3")  # today's code is no longer the recorded code: the evidence does not hold
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path) is None


def test_a_bundled_artifact_made_by_other_code_is_not_served(tmp_path, fake_stage):
    source = tmp_path / "source"
    shipped, _ = _make(source, fake_stage.name, {"n": 1})
    out = bundle.pack([f"{fake_stage.name}/{shipped.key}"], tmp_path / "b.tar.gz", "tiny", source)
    fake_stage.edit()
    bundle.unpack(out, tmp_path / "target")
    assert (tmp_path / "target" / fake_stage.name / shipped.key / MANIFEST).is_file()
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path / "target") is None


def test_a_bundle_replaces_a_cached_artifact_made_by_other_code(tmp_path, fake_stage):
    target = tmp_path / "target"
    stale, _ = _make(target, fake_stage.name, {"n": 1}, "stale")
    before = fake_stage.digest()
    fake_stage.edit()
    fresh, _ = _make(tmp_path / "source", fake_stage.name, {"n": 1}, "fresh")
    out = bundle.pack([f"{fake_stage.name}/{fresh.key}"], tmp_path / "b.tar.gz", "tiny", tmp_path / "source")
    report = bundle.unpack(out, target)
    assert report.added == [f"{fake_stage.name}/{fresh.key}"]
    served = load_artifact(fake_stage.name, {"n": 1}, target)
    assert (served.path / "payload.txt").read_text() == "fresh"
    assert (target / fake_stage.name / STALE / f"{stale.key}-{before}" / "payload.txt").read_text() == "stale"


def test_pack_refuses_an_artifact_made_by_other_code(tmp_path, fake_stage):
    made, _ = _make(tmp_path, fake_stage.name, {"n": 1})
    fake_stage.edit()
    with pytest.raises(ValueError, match="other code"):
        bundle.pack([f"{fake_stage.name}/{made.key}"], tmp_path / "b.tar.gz", "tiny", tmp_path)
