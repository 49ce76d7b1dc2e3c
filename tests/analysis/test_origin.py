"""The hole-or-chemistry rule on failures whose answer is known."""

import math

import pytest
from ase import units

from gemrepro.analysis.origin import HOLE_THRESHOLD_KT, failure_origin


def test_a_torn_geometry_the_reference_prices_high_is_a_hole():
    # the model lets a C-H bond stretch for 0.1 eV; the reference charges 3 eV for it
    origin = failure_origin(
        model_before=-100.0, model_after=-99.9, reference_before=-200.0, reference_after=-197.0, temperature_K=600.0
    )
    assert origin.verdict == "hole"
    assert origin.excess_eV == pytest.approx(2.9)
    assert origin.threshold_eV == pytest.approx(HOLE_THRESHOLD_KT * units.kB * 600.0)


def test_a_break_both_surfaces_price_alike_is_chemistry():
    # an offset between model and reference cancels: only the rise into the failed geometry counts
    origin = failure_origin(
        model_before=-100.0, model_after=-98.5, reference_before=-250.0, reference_after=-248.3, temperature_K=1200.0
    )
    assert origin.verdict == "chemistry" and origin.excess_eV == pytest.approx(0.2)


def test_the_threshold_scales_with_temperature():
    # the same 0.5 eV excess is a hole at 300 K (10 kT = 0.26 eV) and chemistry at 1200 K (1.03 eV)
    args = dict(model_before=0.0, model_after=0.2, reference_before=0.0, reference_after=0.7)
    assert failure_origin(**args, temperature_K=300.0).verdict == "hole"
    assert failure_origin(**args, temperature_K=1200.0).verdict == "chemistry"


def test_a_failed_reference_calculation_leaves_it_undetermined():
    origin = failure_origin(
        model_before=0.0, model_after=0.2, reference_before=0.0, reference_after=math.nan, temperature_K=600.0
    )
    assert origin.verdict == "undetermined" and "did not converge" in origin.reason


def test_bad_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature_K: expected a positive temperature"):
        failure_origin(model_before=0.0, model_after=0.0, reference_before=0.0, reference_after=0.0, temperature_K=0)
