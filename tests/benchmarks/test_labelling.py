"""The labelling benchmark: one worker and all workers in turns, both clusters started before any clock."""

import contextlib
import functools
import json
import math

import pytest

from gemrepro.benchmarks import labelling
from gemrepro.cache.cluster import dask_client
from gemrepro.cli import main as cli_main


def test_one_worker_and_all_workers_take_turns_on_clusters_started_beforehand(monkeypatch):
    events: list[str] = []

    @contextlib.contextmanager
    def fake_client(n_workers):
        client = type("Client", (), {"n": n_workers, "run": lambda self, *args: events.append(f"warm {self.n}")})()
        events.append(f"start {n_workers}")
        yield client

    def known_seconds(client, chunks, reference):
        events.append(f"label {client.n}")
        assert sum(len(chunk) for chunk in chunks) == 6 and len(chunks) == 4 * client.n
        return {1: 3.0, 3: 1.0}[client.n]

    monkeypatch.setattr(labelling, "dask_client", fake_client)
    monkeypatch.setattr(labelling, "_labelling_seconds", known_seconds)
    result = labelling.labelling_throughput(6, n_workers=3, repeats=2)
    assert events == ["start 1", "start 3", "warm 1", "warm 3", "label 1", "label 3", "label 1", "label 3"]
    assert result["single_worker_per_s"] == pytest.approx(2.0) and result["all_workers_per_s"] == pytest.approx(6.0)
    assert (
        result["ratio"] == pytest.approx(3.0) and result["ratios"] == [3.0, 3.0] and result["threads_per_worker"] == 1
    )


def test_bench_labelling_prints_a_finite_ratio_with_its_spread(monkeypatch, capsys):
    """Real GFN2-xTB labels on a cluster of threads (a process cluster takes longer to start than to label)."""
    monkeypatch.setattr(labelling, "dask_client", functools.partial(dask_client, processes=False))
    argv = ["bench", "labelling", "--configurations", "2", "--workers", "1", "--repeats", "2"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "ratio:" in out and "(rounds " in out and "1 thread per worker" in out
    assert cli_main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert math.isfinite(result["ratio"]) and result["ratio_min"] <= result["ratio"] <= result["ratio_max"]
    assert cli_main(["bench", "labelling", "--repeats", "0"]) == 2
