"""Results at a glance: claims evaluated on tables, verdicts, snapshots per scale."""

import types

import pandas as pd
import pytest

from gemrepro.workflow import claims


class FakeResults(claims.Results):
    """Results whose chapter tables are given, not loaded from the cache."""

    def __init__(self, curve: pd.DataFrame, means: pd.DataFrame | None = None):
        super().__init__("tiny")
        self.__dict__["curve"] = curve
        if means is not None:
            self.__dict__["sweep_means"] = means.set_index(["train_size", "temperature"])
            self.__dict__["sweep"] = types.SimpleNamespace(
                protocol=types.SimpleNamespace(temperatures=tuple(sorted(means["temperature"].unique()))))


def _curve(forces):
    return pd.DataFrame({"train_size": [4, 40, 400, 4000], "forces_mae": forces, "energy_mae": [1.0] * 4})


def _claim(claim_id):
    return next(c for c in claims.CLAIMS if c.id == claim_id)


def test_learning_curve_shape_is_judged_from_the_numbers():
    good = _claim("fig1-shape").evaluate(FakeResults(_curve([1.0, 0.3, 0.1, 0.08])))
    assert good.verdict == claims.REPRODUCED and "3.33x" in good.value
    flat = _claim("fig1-shape").evaluate(FakeResults(_curve([1.0, 1.1, 0.5, 0.2])))
    assert flat.verdict == claims.NOT_REPRODUCED


def test_sparse_model_claim_uses_the_papers_lower_bound():
    means = pd.DataFrame({"train_size": [4, 4000], "temperature": [300.0, 300.0], "energy_mae": [12.0, 0.1],
                          "forces_mae": [1.0, 0.1]})
    outcome = _claim("fig2b-sparse").evaluate(FakeResults(_curve([1, 0.5, 0.3, 0.2]), means))
    assert outcome.verdict == claims.REPRODUCED and outcome.value.startswith("12 eV")
    means.loc[0, "energy_mae"] = 3.0
    assert _claim("fig2b-sparse").evaluate(FakeResults(_curve([1, 0.5, 0.3, 0.2]), means)).verdict == \
        claims.NOT_REPRODUCED


def test_every_claim_names_a_chapter_of_the_book_and_a_paper_value():
    from pathlib import Path

    from gemrepro.workflow.book import chapters

    names = set(chapters(Path(__file__).resolve().parents[1]))
    assert len({c.id for c in claims.CLAIMS}) == len(claims.CLAIMS)
    for claim in claims.CLAIMS:
        assert claim.chapter in names and claim.paper_value and claim.source


def test_snapshots_round_trip_and_the_glance_table_marks_verdicts(tmp_path):
    root = tmp_path / "artifacts"
    table = pd.DataFrame([{"id": "a", "source": "s", "claim": "c", "paper": "1", "ours": "2",
                           "verdict": claims.NOT_COMPARABLE, "chapter": "data"}])
    claims.save_snapshot(table, "tiny", root)
    claims.save_snapshot(table.assign(verdict=claims.REPRODUCED), "small", root)
    loaded = claims.load_snapshots(root)
    assert list(loaded) == ["tiny", "small"]
    glance = claims.at_a_glance(loaded)
    assert glance.loc[0, "ours (tiny)"].endswith("not comparable")
    assert glance.loc[0, "ours (small)"].endswith("reproduced")
    with pytest.raises(ValueError, match="verdict"):
        claims.Outcome("1", "maybe")
    with pytest.raises(ValueError, match="unknown scale"):
        claims.snapshot_path("huge", root)
