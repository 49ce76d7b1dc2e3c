"""Campaigns: task graphs of cached artifacts on Dask, resumable after a kill; SLURM configs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import pytest

from gemrepro.cache.artifacts import Artifact, artifact_key, get_or_create, load_artifact
from gemrepro.cache.cluster import dask_client, load_slurm_config, slurm_cluster
from gemrepro.config.scales import SCALES
from gemrepro.studies.campaign import Campaign, Task, describe, run_campaign, summarize

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- a tiny plan
def _build_number(name: str, value: int, upstream: tuple[str, ...], root: str, log: str) -> Artifact:
    """A cheap task: its number is ``value`` plus the numbers of its upstream artifacts."""

    def build(folder: Path) -> dict:
        with open(log, "a") as handle:
            handle.write(name + "\n")
        total = value + sum(
            json.loads((load_artifact("number", {"name": u}, root).file("n.json")).read_text()) for u in upstream
        )
        if total < 0:
            raise RuntimeError(f"{name}: negative total {total}")
        (folder / "n.json").write_text(json.dumps(total))

    return get_or_create("number", {"name": name}, build, root)


def _plan(root: Path, log: Path, values: dict[str, int], edges: dict[str, tuple[str, ...]]) -> Campaign:
    tasks = [
        Task(
            name,
            "number",
            {"name": name},
            partial(_build_number, name, value, edges.get(name, ()), str(root), str(log)),
            partial(load_artifact, "number", {"name": name}, str(root)),
            edges.get(name, ()),
        )
        for name, value in values.items()
    ]
    return Campaign("test", tuple(tasks), root)


def _number(root: Path, name: str) -> int:
    return json.loads(load_artifact("number", {"name": name}, root).file("n.json").read_text())


def test_campaign_runs_in_dependency_order_and_skips_finished_tasks(tmp_path):
    log = tmp_path / "log.txt"
    campaign = _plan(tmp_path, log, {"a": 1, "b": 10, "c": 100}, {"c": ("a", "b")})
    assert summarize(campaign.status()).to_dict("records") == [{"stage": "number", "done": 0, "pending": 3, "total": 3}]
    with dask_client(n_workers=2, processes=False) as client:
        first = run_campaign(campaign, client, progress=False)
        assert first.ok and sorted(first.finished) == ["a", "b", "c"] and first.skipped == ()
        assert _number(tmp_path, "c") == 111  # c ran after both of its inputs existed
        assert first.finished["c"] == artifact_key({"name": "c"})
        second = run_campaign(campaign, client, progress=False)
    assert second.finished == {} and second.skipped == ("a", "b", "c")
    assert sorted(log.read_text().split()) == ["a", "b", "c"]  # nothing built twice
    lines = describe(campaign.status())
    assert len(lines) == 3 and all(line.strip().startswith("done") for line in lines)


def test_a_failed_task_fails_its_dependents_but_not_the_others(tmp_path):
    log = tmp_path / "log.txt"
    campaign = _plan(tmp_path, log, {"bad": -5, "after": 1, "other": 2}, {"after": ("bad",)})
    with dask_client(n_workers=1, processes=False) as client:
        outcome = run_campaign(campaign, client, progress=False)
    assert not outcome.ok
    assert set(outcome.failed) == {"bad", "after"} and "negative total -5" in outcome.failed["bad"]
    assert list(outcome.finished) == ["other"] and _number(tmp_path, "other") == 2
    assert "after" not in log.read_text().split()  # never started: its input does not exist


def test_plan_rejects_a_dependency_listed_after_its_dependent(tmp_path):
    with pytest.raises(ValueError, match="depends on \\['a'\\]"):
        _plan(tmp_path, tmp_path / "log", {"c": 1, "a": 2}, {"c": ("a",)})


SCRIPT = """
import sys, time
from dataclasses import replace
from functools import partial
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_campaign as t
from gemrepro.studies.campaign import run_campaign
from gemrepro.cache.cluster import dask_client

root, log = Path(sys.argv[1]), Path(sys.argv[2])

def slow(name, value, upstream):
    time.sleep(0.4)
    return t._build_number(name, value, upstream, str(root), str(log))

campaign = t._plan(root, log, {{f"t{{i}}": i for i in range(6)}}, {{"t5": ("t0", "t1")}})
campaign = replace(campaign, tasks=tuple(
    replace(task, run=partial(slow, task.name, int(task.name[1:]), task.depends_on)) for task in campaign.tasks))
with dask_client(n_workers=1, processes=False) as client:
    outcome = run_campaign(campaign, client, progress=False)
print(len(outcome.finished), len(outcome.skipped))
"""


def _finished(root: Path) -> set[str]:
    folder = root / "number"
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def test_a_killed_campaign_restarts_without_redoing_or_losing_work(tmp_path):
    script = tmp_path / "campaign.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).resolve().parent))))
    root = tmp_path / "artifacts"
    process = subprocess.Popen(
        [sys.executable, str(script), str(root), str(tmp_path / "first.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while len(_finished(root)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    before = _finished(root)
    assert 2 <= len(before) < 6, f"the kill should land mid-campaign: {stderr.decode()[-2000:]}"
    keys = {artifact_key({"name": f"t{i}"}): f"t{i}" for i in range(6)}
    done_before = {keys[k] for k in before}

    rerun = subprocess.run(
        [sys.executable, str(script), str(root), str(tmp_path / "second.log")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    built_again = set((tmp_path / "second.log").read_text().split())
    assert built_again.isdisjoint(done_before)  # finished work is not redone
    assert built_again == {f"t{i}" for i in range(6)} - done_before  # and nothing is lost
    assert rerun.stdout.split() == [str(6 - len(done_before)), str(len(done_before))]
    assert _number(root, "t5") == 5 + 0 + 1
    assert all(load_artifact("number", {"name": f"t{i}"}, root) is not None for i in range(6))


# ----------------------------------------------------------------------------- keys agree with the stages
def test_plan_keys_agree_with_the_functions_the_chapters_call(monkeypatch, tmp_path):
    """The campaign predicts the dataset, start-structure and MD keys without building them."""
    from ase.io import write

    import gemrepro.data.build as build
    import gemrepro.studies.sweep as sweep
    from gemrepro.catalog import md_molecules, molecule_from_smiles
    from gemrepro.data.sampling import embed_conformers
    from gemrepro.studies.campaign import dataset_params, md_params, start_params

    seen = {}
    few = [molecule_from_smiles(s) for s in ("CCO", "CCl", "C1CN1")]
    monkeypatch.setattr("gemrepro.data.build.dataset_molecules", lambda n, n_md, seed: few)  # not 23k catalog entries

    def capture(stage, params, *args, **kwargs):
        seen[stage] = artifact_key(params)
        return Artifact(tmp_path, {})

    monkeypatch.setattr(build, "load_artifact", capture)
    build.build_dataset(scale=SCALES["tiny"], seed=3, root=tmp_path)
    assert seen["dataset"] == artifact_key(dataset_params(SCALES["tiny"], "gfn2-xtb", 3)[0])

    monkeypatch.setattr(sweep, "get_or_create", capture)
    sweep.start_structures(4, seed=2, root=tmp_path)
    assert seen["md-start"] == artifact_key(start_params(4, seed=2))

    images = []
    for molecule in md_molecules(2):
        atoms = embed_conformers(molecule.smiles, 1, seed=0)[0]
        atoms.info["name"] = molecule.name
        images.append(atoms)
    starts = Artifact(tmp_path / "starts-key", {})
    (tmp_path / "starts-key").mkdir()
    write(starts.file("start.xyz"), images, format="extxyz")
    model = Artifact(tmp_path / "model-key", {})
    monkeypatch.setattr(sweep, "load_artifact", capture)
    protocol = sweep.protocol_for(SCALES["tiny"])
    sweep.run_sweep_md(model, starts, protocol, seed=1, root=tmp_path)
    assert seen["md-sweep"] == artifact_key(md_params("model-key", "starts-key", protocol, seed=1))


def test_campaign_cli_dry_run_lists_done_and_pending(monkeypatch, tmp_path, capsys):
    import gemrepro.studies.campaign as campaign_module
    from gemrepro.cli import main

    log = tmp_path / "log.txt"
    _build_number("a", 1, (), str(tmp_path), str(log))
    plan = _plan(tmp_path, log, {"a": 1, "b": 2}, {"b": ("a",)})
    monkeypatch.setattr(campaign_module, "plan_campaign", lambda *args, **kwargs: plan)
    assert main(["campaign", "--scale", "tiny", "--dry-run", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"done    {artifact_key({'name': 'a'})} a" in out and "pending                  b" in out
    assert log.read_text().split() == ["a"]  # a dry run builds nothing


def test_campaign_cli_rejects_a_bad_scale(capsys):
    from gemrepro.cli import main

    assert main(["campaign", "--scale", "huge", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown scale 'huge'" in err


# ----------------------------------------------------------------------------- SLURM
def test_slurm_example_config_builds_the_expected_job_script():
    config = load_slurm_config(REPO / "configs" / "slurm.example.yaml")
    assert config.jobs is None and config.adapt["maximum_jobs"] >= config.adapt["minimum_jobs"]
    with slurm_cluster(config) as cluster:  # starts a local scheduler only; nothing is submitted
        script = cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script
    assert f"#SBATCH -t {config.cluster['walltime']}" in script
    assert f"#SBATCH --cpus-per-task={config.cluster['cores']}" in script
    assert "OMP_NUM_THREADS=1" in script
    assert "distributed.cli.dask_worker" in script


@pytest.mark.parametrize(
    "text, message",
    [
        ("cluster: {cores: 4, memory: 8GB}\njobs: 0\n", "'jobs' must be a positive integer"),
        ("cluster: {cores: 4, memory: 8GB}\nworkers: 3\n", "unknown section(s) ['workers']"),
        ("jobs: 2\n", "non-empty 'cluster' mapping"),
        ("cluster: {cores: 4, memory: 8GB, partitionn: gpu}\n", "unexpected keyword argument 'partitionn'"),
    ],
)
def test_bad_slurm_configs_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "slurm.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        slurm_cluster(path)
    assert message in str(error.value) and "\n" not in str(error.value) and str(path) in str(error.value)
