"""Re-recording a stage's digest needs evidence: a sampler recomputes a piece of a stored artifact with
today's code, and the record refuses when it differs or cannot be checked. A person cannot make the
cache serve old results by re-recording alone."""

import json

import numpy as np
import pytest

from gemrepro.cache.artifacts import MANIFEST, get_or_create, load_artifact
from gemrepro.data import reference_md
from gemrepro.reference.free_atoms import free_atom_energy
from gemrepro.reference.registry import get_method
from gemrepro.studies import samplers, stages
from gemrepro.studies.samplers import Inputs, Sample


def _made_then_changed(tmp_path, fake_stage):
    """An artifact of the fake stage made by its recorded code, then the code changed; (old digest, new)."""
    get_or_create(fake_stage.name, {"n": 1}, lambda folder: None, tmp_path / "cache")
    before = fake_stage.digest()
    fake_stage.write_record({"version": 1, "digest": before, "accepted": []})
    return before, fake_stage.edit()


def _record(tmp_path, fake_stage):
    return stages.record(fake_stage.record, Inputs([tmp_path / "cache"], tmp_path / "work"), stages=[fake_stage.name])


def _sampler(difference):
    def sample(artifact, inputs):
        made = artifact.manifest["code_digest"]
        return Sample(artifact.stage, artifact.key, made, "the whole thing", difference, 1e-3, "eV", 0.1)

    return sample


def test_a_changed_stage_without_a_sampler_is_refused(tmp_path, fake_stage, capsys):
    before, _ = _made_then_changed(tmp_path, fake_stage)
    assert _record(tmp_path, fake_stage) == 1
    assert "fake: no sampler; bump gemrepro.fake:STAGE_VERSION" in capsys.readouterr().err
    assert json.loads(fake_stage.record.read_text())["fake"]["digest"] == before  # nothing recorded
    assert stages.stale_stages(json.loads(fake_stage.record.read_text()))  # still flagged


def test_a_sampler_that_sees_other_output_refuses(tmp_path, fake_stage, monkeypatch, capsys):
    before, _ = _made_then_changed(tmp_path, fake_stage)
    monkeypatch.setitem(samplers.SAMPLERS, fake_stage.name, _sampler(0.5))
    assert _record(tmp_path, fake_stage) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "fake: today's code gives different output (max |Δ| = 0.5 eV, tolerance 0.001); bump gemrepro.fake:STAGE_VERSION"
    )
    assert json.loads(fake_stage.record.read_text())["fake"]["digest"] == before
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path / "cache") is None


def test_a_sampler_that_agrees_records_the_old_digest_as_accepted_and_it_is_served(tmp_path, fake_stage, monkeypatch):
    before, after = _made_then_changed(tmp_path, fake_stage)
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path / "cache") is None
    monkeypatch.setitem(samplers.SAMPLERS, fake_stage.name, _sampler(1e-6))
    assert _record(tmp_path, fake_stage) == 0
    entry = json.loads(fake_stage.record.read_text())["fake"]
    assert entry["digest"] == after and [a["digest"] for a in entry["accepted"]] == [before]
    assert "the whole thing recomputed" in entry["accepted"][0]["evidence"]
    assert load_artifact(fake_stage.name, {"n": 1}, tmp_path / "cache").manifest["code_digest"] == before
    third = fake_stage.edit("return 3")  # and again: the accepted digest is carried on with new evidence
    assert _record(tmp_path, fake_stage) == 0
    entry = json.loads(fake_stage.record.read_text())["fake"]
    assert entry["digest"] == third and {a["digest"] for a in entry["accepted"]} == {before, after}


def test_a_bumped_version_is_recorded_without_evidence_and_accepts_nothing(tmp_path, fake_stage):
    _made_then_changed(tmp_path, fake_stage)
    fake_stage.bump()
    assert _record(tmp_path, fake_stage) == 0
    entry = json.loads(fake_stage.record.read_text())["fake"]
    assert entry["version"] == 2 and entry["accepted"] == [] and entry["digest"] == fake_stage.digest()


def test_no_stored_artifact_of_the_recorded_code_is_a_refusal(tmp_path, fake_stage, monkeypatch, capsys):
    fake_stage.write_record({"version": 1, "digest": fake_stage.digest(), "accepted": []})
    fake_stage.edit()
    monkeypatch.setitem(samplers.SAMPLERS, fake_stage.name, _sampler(0.0))
    (tmp_path / "cache").mkdir()
    assert _record(tmp_path, fake_stage) == 1
    assert "no stored artifact made by digest" in capsys.readouterr().err


@pytest.mark.parametrize("shift", [0.0, 0.1])
def test_the_free_atom_sampler_recomputes_the_atom_and_sees_a_changed_energy(tmp_path, shift):
    method = get_method("gfn2-xtb")
    free_atom_energy(method, 1, root=tmp_path / "cache")
    (manifest,) = (tmp_path / "cache" / "free-atoms").glob(f"*/{MANIFEST}")
    content = json.loads(manifest.read_text())
    content["energy_eV"] += shift  # what another code would have stored
    manifest.write_text(json.dumps(content))
    artifact = next(stages.stored_artifacts([tmp_path / "cache"], "free-atoms"))
    sample = samplers.SAMPLERS["free-atoms"](artifact, Inputs([tmp_path / "cache"], tmp_path / "work"))
    assert sample.agrees == (shift == 0.0)
    assert sample.difference == pytest.approx(shift, abs=1e-9)


def test_the_md_comparison_sees_moved_atoms_and_refuses_other_frames():
    steps = np.array([0, 200, 400, 600])
    theirs = {"step": steps, "alive": np.ones(4, bool), "positions": np.zeros((4, 3, 3))}
    ours = {k: v[:3].copy() for k, v in theirs.items()}  # a prefix of the same run
    assert samplers.frames_difference(ours, theirs) == 0.0
    ours["positions"][2, 1, 0] = 0.25
    assert samplers.frames_difference(ours, theirs) == 0.25
    ours["positions"][3:] = 0.0
    assert samplers.frames_difference({**ours, "step": steps[:3] + 1}, theirs) == float("inf")  # other frames
    assert samplers.frames_difference({**ours, "alive": np.array([1, 0, 0], bool)}, theirs) == float("inf")


def test_the_reference_md_sampler_reproduces_its_first_frames(tmp_path):
    recipe = reference_md.MDRecipe(n_frames=2, frame_interval=5, equilibration_steps=10)
    stored = reference_md.reference_md_frames("O", recipe, root=tmp_path / "cache")
    sample = samplers.SAMPLERS["reference-md"](stored, Inputs([tmp_path / "cache"], tmp_path / "work"))
    assert sample.agrees and sample.difference == 0.0 and "2 frames" in sample.what


@pytest.mark.parametrize("shift", [0.0, 0.1])
def test_an_artifact_of_unknown_code_is_stamped_only_if_todays_code_reproduces_it(tmp_path, shift, capsys):
    root = tmp_path / "cache"
    free_atom_energy(get_method("gfn2-xtb"), 1, root=root)
    (manifest,) = (root / "free-atoms").glob(f"*/{MANIFEST}")
    content = json.loads(manifest.read_text())
    del content["code_digest"]
    content["git_revision"] = "0123abc+dirty"  # uncommitted code: its revision says nothing
    content["energy_eV"] += shift
    manifest.write_text(json.dumps(content))
    params = content["params"]
    assert stages.main(["--stamp", str(root), "--sample", "--dry-run"]) == 0
    assert "code_digest" not in json.loads(manifest.read_text())  # a dry run writes nothing
    assert stages.main(["--stamp", str(root), "--sample"]) == 0
    out = capsys.readouterr().out
    stamped = json.loads(manifest.read_text())
    served = load_artifact("free-atoms", params, root)
    if shift == 0.0:
        assert "stamped with today's digest" in out and "the free atom Z=1 agrees" in out
        assert stamped["code_digest"] == stages.current_record(["free-atoms"])["free-atoms"]["digest"]
        assert "recomputed in" in stamped["code_evidence"] and served is not None
    else:
        assert "stays stale: today's code gives different output (max |Δ| = 0.1 eV" in out
        assert "code_digest" not in stamped and served is None


def test_an_artifact_with_nothing_to_compare_gives_way_to_the_next(tmp_path, fake_stage, monkeypatch):
    get_or_create(fake_stage.name, {"n": 1}, lambda folder: None, tmp_path / "cache")
    get_or_create(fake_stage.name, {"n": 2}, lambda folder: None, tmp_path / "cache")
    before = fake_stage.digest()
    fake_stage.write_record({"version": 1, "digest": before, "accepted": []})
    fake_stage.edit()
    tried = []

    def sample(artifact, inputs):
        tried.append(artifact.manifest["params"]["n"])
        if len(tried) == 1:
            raise samplers.SampleUnavailable("it holds nothing to compare")
        return Sample(artifact.stage, artifact.key, before, "the whole thing", 0.0, 1e-3, "eV", 0.1)

    monkeypatch.setitem(samplers.SAMPLERS, fake_stage.name, sample)
    assert _record(tmp_path, fake_stage) == 0
    assert sorted(tried) == [1, 2]  # the second artifact was sampled after the first could not be
    assert [a["digest"] for a in json.loads(fake_stage.record.read_text())["fake"]["accepted"]] == [before]
