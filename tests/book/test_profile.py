"""The book's profile: every artifact read or computed is logged, and each is classed by where it came from."""

import json
import tarfile

from gemrepro.book import profile
from gemrepro.cache.artifacts import STAGE_LOG_ENV, get_or_create


def test_get_or_create_logs_a_computation_then_reads(tmp_path, monkeypatch):
    log = tmp_path / "stages.jsonl"
    monkeypatch.setenv(STAGE_LOG_ENV, str(log))
    first = get_or_create("toy", {"n": 1}, lambda folder: {"answer": 42}, tmp_path)
    get_or_create("toy", {"n": 1}, lambda folder: {"answer": 0}, tmp_path)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["computed", "read", "read"]
    assert {e["key"] for e in events} == {first.key} and events[0]["seconds"] >= 0


def _bundle(checkout, entries):
    (checkout / "models").mkdir(parents=True)
    manifest = checkout / "bundle.json"
    manifest.write_text(json.dumps({"artifacts": entries}))
    with tarfile.open(checkout / "models" / "tiny.tar.xz", "w:xz") as tar:
        tar.add(manifest, arcname="bundle.json")


def test_reads_are_classed_by_bundle_and_computations_keep_their_seconds(tmp_path):
    _bundle(tmp_path, ["models/aaa"])
    shipped = profile.shipped_entries(tmp_path)
    assert shipped == {"models/aaa"}
    log = tmp_path / "chapter.jsonl"
    events = [
        {"event": "read", "stage": "models", "key": "aaa", "seconds": 0},
        {"event": "read", "stage": "dataset", "key": "bbb", "seconds": 0},
        {"event": "computed", "stage": "md-labels", "key": "ccc", "seconds": 12.5},
        {"event": "read", "stage": "md-labels", "key": "ccc", "seconds": 0},
        {"event": "read", "stage": "models", "key": "aaa", "seconds": 0},
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    table = profile.profile_table({"convergence": (log, 20.0), "empty": (tmp_path / "none.jsonl", 1.0)}, shipped)
    rows = {(r.stage, r.source): (r.artifacts, r.seconds) for r in table.itertuples()}
    assert rows == {
        ("dataset", "cache"): (1, 0.0),
        ("md-labels", "computed"): (1, 12.5),
        ("models", "bundle"): (1, 0.0),
    }
    overview = profile.summary(table, {"convergence": 20.0, "empty": 1.0}).set_index("chapter")
    assert overview.loc["convergence", "computing_s"] == 12.5 and overview.loc["convergence", "bundle"] == 1
    assert overview.loc["empty", ["computed", "bundle", "cache"]].sum() == 0
