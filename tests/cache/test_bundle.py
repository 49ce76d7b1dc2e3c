"""Artifact bundles: pack what a scale used, unpack with checksums, keep what is there, refuse corruption."""

import gzip
import io
import json
import tarfile

import pytest

from gemrepro.cache import bundle
from gemrepro.cache.artifacts import ACCESS_LOG_ENV, get_or_create
from gemrepro.cli import main


def _make(root, stage, params, payload):
    def build(folder):
        (folder / "payload.txt").write_text(payload)
        return {"n": len(payload)}

    return get_or_create(stage, params, build, root)


def test_access_log_records_built_and_loaded_artifacts(tmp_path, monkeypatch):
    log = tmp_path / "artifacts.txt"
    monkeypatch.setenv(ACCESS_LOG_ENV, str(log))
    a = _make(tmp_path / "cache", "models", {"size": 4}, "weights")
    _make(tmp_path / "cache", "models", {"size": 4}, "weights")  # loaded again: logged again, read once
    assert bundle.read_access_log(log) == [f"models/{a.key}"]


def test_pack_then_unpack_into_an_empty_cache_restores_identical_artifacts(tmp_path):
    source = tmp_path / "source"
    a = _make(source, "models", {"size": 4}, "weights")
    b = _make(source, "md-sweep", {"model": a.key}, "frames")
    out = bundle.pack([f"models/{a.key}", f"md-sweep/{b.key}"], tmp_path / "b.tar.gz", "small", source)
    target = tmp_path / "target"
    _make(target, "models", {"size": 4}, "weights")  # already present: kept, not replaced
    report = bundle.unpack(out, target)
    assert report.added == [f"md-sweep/{b.key}"] and report.present == [f"models/{a.key}"]
    assert (target / "md-sweep" / b.key / "payload.txt").read_text() == "frames"
    assert report.metadata["scale"] == "small"
    assert not list(target.glob(".unpack-*"))


@pytest.mark.parametrize(("suffix", "magic"), [(".tar.gz", b"\x1f\x8b"), (".tar.xz", b"\xfd7zXZ\x00")])
def test_the_name_picks_the_compression_and_unpack_reads_either(tmp_path, suffix, magic):
    source = tmp_path / "source"
    a = _make(source, "models", {"size": 4}, "weights " * 1000)
    out = bundle.pack([f"models/{a.key}"], tmp_path / f"b{suffix}", "tiny", source)
    assert out.read_bytes()[: len(magic)] == magic
    report = bundle.unpack(out, tmp_path / "target")
    assert report.added == [f"models/{a.key}"]
    assert (tmp_path / "target" / "models" / a.key / "payload.txt").read_text() == "weights " * 1000


def test_unpack_refuses_a_tampered_bundle_and_changes_nothing(tmp_path):
    source = tmp_path / "source"
    a = _make(source, "models", {"size": 4}, "weights")
    out = bundle.pack([f"models/{a.key}"], tmp_path / "b.tar.gz", "tiny", source)
    # rewrite the payload inside the archive, keep the old checksum
    with tarfile.open(out, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    tampered = tmp_path / "t.tar.gz"
    with tarfile.open(tampered, "w:gz") as tar:
        for m, data in members:
            if m.name.endswith("payload.txt"):
                data = b"poisoned"
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    target = tmp_path / "target"
    with pytest.raises(ValueError, match="checksum mismatch"):
        bundle.unpack(tampered, target)
    assert not (target / "models").exists()


def test_unpack_of_a_non_bundle_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"not a tar"))
    assert main(["artifacts", "unpack", str(junk), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "junk.tar.gz" in err and len(err.splitlines()) == 1


def test_pack_cli_reads_the_log_and_names_the_bundle_by_version(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    a = _make(data / "artifacts", "models", {"size": 4}, "weights")
    log = tmp_path / "log.txt"
    log.write_text(f"models/{a.key}\n")
    out = tmp_path / "bundle.tar.gz"
    assert (
        main(["artifacts", "pack", "--scale", "tiny", "--log", str(log), "--out", str(out), "--data-dir", str(data)])
        == 0
    )
    with tarfile.open(out, "r:gz") as tar:
        meta = json.loads(tar.extractfile("bundle.json").read())
    assert meta["artifacts"] == [f"models/{a.key}"] and meta["scale"] == "tiny"
    assert bundle.default_bundle_name("small").startswith("gemrepro-artifacts-small-v")


def test_fresh_uses_no_committed_bundle(monkeypatch):
    from gemrepro.cache.paths import FRESH_ENV, shipped_models

    assert shipped_models("tiny") is not None  # the committed tiny bundle
    monkeypatch.setenv(FRESH_ENV, "1")
    assert shipped_models("tiny") is None
