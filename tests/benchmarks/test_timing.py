"""The turn-taking every benchmark shares: the order of the calls, and the spread beside the median."""

import pytest

from gemrepro.benchmarks.timing import ratio_text, round_ratios, spread, take_turns


def test_paths_take_turns_round_by_round():
    order: list[str] = []
    seconds = take_turns({"A": lambda: order.append("A") or 1.0, "B": lambda: order.append("B") or 2.0}, 3)
    assert order == ["A", "B", "A", "B", "A", "B"]
    assert seconds == {"A": [1.0, 1.0, 1.0], "B": [2.0, 2.0, 2.0]}
    with pytest.raises(ValueError, match="repeats"):
        take_turns({"A": lambda: 1.0}, 0)


def test_a_ratio_is_taken_within_each_round_and_reported_with_its_spread():
    # round 2 is slow for both paths: its ratio is as good as the others', though both times are off
    result = round_ratios([2.0, 20.0, 3.0], [1.0, 10.0, 1.0])
    assert result["ratios"] == [2.0, 2.0, 3.0]
    assert (result["ratio"], result["ratio_min"], result["ratio_max"]) == (2.0, 2.0, 3.0)
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert ratio_text(result) == "2.00x (rounds 2.00-3.00x, 3 rounds)"
    with pytest.raises(ValueError, match="round"):
        spread([])
