"""Artifact cache, scales and splits."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from gemrepro.cache.artifacts import (
    artifact_key,
    build_lock,
    get_or_create,
    load_artifact,
    remove_stale_temporaries,
    work_folder,
)
from gemrepro.config.scales import SCALES, get_scale
from gemrepro.data.splits import make_splits, scale_splits


def test_key_ignores_dict_order_but_not_values():
    assert artifact_key({"a": 1, "b": (1, 2)}) == artifact_key({"b": [1, 2], "a": 1})
    assert artifact_key({"a": 1}) != artifact_key({"a": 2})


def test_artifact_is_built_once_and_has_a_manifest(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "payload.txt").write_text("42")
        return {"answer": 42}

    first = get_or_create("stage", {"x": 1}, build, root=tmp_path)
    second = get_or_create("stage", {"x": 1}, build, root=tmp_path)
    assert len(calls) == 1
    assert first.path == second.path
    assert first.file("payload.txt").read_text() == "42"
    manifest = json.loads((first.path / "manifest.json").read_text())
    for key in ("params", "version", "git_revision", "hardware", "wall_time_s", "created"):
        assert key in manifest
    assert manifest["answer"] == 42
    assert "stage/" in first.provenance()


def test_a_killed_build_leaves_nothing_a_later_run_trusts(tmp_path):
    def crash(folder):
        (folder / "half.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_or_create("stage", {"x": 2}, crash, root=tmp_path)
    assert load_artifact("stage", {"x": 2}, root=tmp_path) is None
    assert not list((tmp_path / "stage").iterdir())
    # a folder without a manifest (e.g. power cut mid-rename) is not trusted either
    (tmp_path / "stage" / artifact_key({"x": 3})).mkdir()
    assert load_artifact("stage", {"x": 3}, root=tmp_path) is None
    (tmp_path / "stage" / ".tmp-abc").mkdir()
    assert remove_stale_temporaries(tmp_path) == 1


def test_scales_keep_the_shape_of_the_experiment():
    for scale in SCALES.values():
        sizes = scale.train_sizes
        assert len(sizes) == 4
        # evenly spaced on a log scale: a decade apart (small, paper) or half a decade (tiny)
        steps = [b / a for a, b in zip(sizes, sizes[1:])]
        assert all(abs(s - steps[0]) < 0.05 * steps[0] for s in steps) and steps[0] >= 3.1
        assert scale.validation_sizes == tuple(n // 4 for n in sizes)
        assert scale.n_training_seeds >= 1 and scale.n_md_molecules <= scale.n_molecules
    assert get_scale("small").train_sizes == (32, 320, 3200, 32000)
    assert get_scale("tiny").n_training_seeds >= 3
    assert get_scale("paper").train_sizes == (3200, 32000, 320000, 3200000)
    assert get_scale("paper").validation_sizes == (800, 8000, 80000, 800000)
    assert get_scale("paper").test_size == 10100


def test_every_scale_holds_a_design_for_every_study():
    """One object per scale: the designs of gemrepro.config.designs are fields of the Scale."""
    from gemrepro.config import designs
    from gemrepro.md.integrators import DEFAULT_DT_FS

    assert designs.DEFAULT_DT_FS == DEFAULT_DT_FS  # config cannot import md: the long runs' step, copied
    for scale in SCALES.values():
        assert isinstance(scale.recipe, designs.Recipe) and isinstance(scale.pretraining, designs.Plan)
        assert isinstance(scale.seeds, designs.SeedsDesign) and isinstance(scale.long_runs, designs.LongRunDesign)
        assert isinstance(scale.performance, designs.PerformancePlan)
        assert set(scale.committee.train_sizes) <= set(scale.train_sizes)


def test_unknown_scale_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"unknown scale 'huge': expected one of tiny, small, paper"):
        get_scale("huge")


def test_splits_are_disjoint_nested_and_seeded():
    splits = make_splits(6000, (4, 40, 400, 4000), 500, seed=3)
    assert len(splits.test) == 500
    for n in splits.sizes():
        train, val = set(splits.train[n]), set(splits.validation[n])
        assert len(train) == n and len(val) == n // 4
        assert not train & val and not train & set(splits.test) and not val & set(splits.test)
    assert set(splits.train[40]) <= set(splits.train[400])
    assert set(splits.validation[40]) <= set(splits.validation[400])
    again = make_splits(6000, (4, 40, 400, 4000), 500, seed=3)
    other = make_splits(6000, (4, 40, 400, 4000), 500, seed=4)
    assert np.array_equal(splits.test, again.test)
    assert not np.array_equal(splits.test, other.test)


def test_splits_refuse_a_dataset_that_is_too_small():
    with pytest.raises(ValueError, match="dataset has 100 configurations; the splits need 4500"):
        scale_splits(100, SCALES["tiny"])


def test_chapter_figures_are_numbered_and_carry_their_data_as_csv():
    import base64
    import re

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from gemrepro.book import chapter

    chapter.setup(scale="tiny")
    table = pd.DataFrame({"train_size": [4, 40], "forces_mae": [0.9, 0.5]})
    for caption in ("first", "second"):
        fig, _ = plt.subplots()
        chapter.figure(fig, caption, data=table)
    assert chapter._FIGURES == ["first", "second"]
    link = chapter.csv_download_link(table, "f.csv")
    payload = re.search(r"base64,([^\"]+)", link).group(1)
    assert base64.b64decode(payload).decode() == table.to_csv(index=False)
    with pytest.raises(ValueError, match="caption"):
        chapter.figure(plt.figure(), "")
    chapter.setup(scale="tiny")
    assert chapter._FIGURES == []  # a new chapter starts at Figure 1


def test_a_resumable_build_keeps_its_work_folder_across_a_crash_and_drops_it_when_done(tmp_path):
    """What training and MD rely on: checkpoints in <stage>-work/<key>/ survive a failed build, the next
    build sees them, and the folder goes once the artifact exists."""
    params = {"name": "long"}
    calls = []

    def crashing(folder, work):
        (work / "checkpoint.txt").write_text("step 10")
        calls.append(work)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        get_or_create("long", params, crashing, tmp_path, resumable=True)
    assert load_artifact("long", params, tmp_path) is None
    assert (work_folder("long", params, tmp_path) / "checkpoint.txt").read_text() == "step 10"

    def resuming(folder, work):
        (folder / "result.txt").write_text((work / "checkpoint.txt").read_text() + " -> done")
        calls.append(work)

    artifact = get_or_create("long", params, resuming, tmp_path, resumable=True)
    assert artifact.file("result.txt").read_text() == "step 10 -> done"
    assert calls[0] == calls[1] == tmp_path / "long-work" / artifact_key(params)
    assert not work_folder("long", params, tmp_path).exists()


def _slow_counted_build(root: str, log: str) -> str:
    """Asks for one artifact whose build takes a second and appends to ``log`` when it runs."""

    def build(folder):
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(1.0)
        (folder / "value.txt").write_text("7")

    return get_or_create("stage", {"x": 7}, build, root=root).key


def test_two_processes_asking_for_one_artifact_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        keys = list(pool.map(_slow_counted_build, [str(tmp_path / "cache")] * 2, [str(log)] * 2))
    assert keys[0] == keys[1]
    assert log.read_text().splitlines() == ["built"]
    assert [p.name for p in (tmp_path / "cache" / "stage").iterdir()] == [keys[0]]


def test_the_temporary_folder_of_a_build_in_progress_is_not_removed(tmp_path):
    key = artifact_key({"x": 8})
    (tmp_path / "stage").mkdir()
    running = tmp_path / "stage" / f".tmp-{key}-0123abcd"
    running.mkdir()
    with build_lock(tmp_path / "stage", key):  # as another process building it would hold it
        assert remove_stale_temporaries(tmp_path) == 0
        assert running.is_dir()
    assert remove_stale_temporaries(tmp_path) == 1
    assert not running.exists()
