"""Results at a glance: each claim's rule on tables, verdicts that can go either way, snapshots per scale."""

import types

import numpy as np
import pandas as pd
import pytest

from gemrepro.book import claims
from gemrepro.config.designs import LongRunDesign
from gemrepro.config.scales import SCALES

SIZES = (100, 320, 1000, 3200)


def _curve(forces_by_size, seeds=3, stop="early_stopping", noise=0.02):
    rng = np.random.default_rng(0)
    rows = []
    for size, forces in zip(SIZES, forces_by_size):
        for member in range(seeds):
            rows.append(
                {
                    "train_size": size,
                    "member": member,
                    "energy_mae": 1.0,
                    "stop_reason": stop,
                    "forces_mae": forces * float(np.exp(rng.normal(0, noise))),
                }
            )
    return pd.DataFrame(rows)


def _sweep(
    failed,
    forces=None,
    temperatures=(300.0, 600.0, 1200.0),
    molecules=("a", "b", "c", "d", "e"),
    horizon=1.0,
    failure_ps=0.1,
    energies=None,
):
    """A stand-in temperature sweep: ``failed[(size, T)]`` molecules fail; ``forces[(size, T)]`` their force MAE;
    ``energies[(size, T)]`` scales their AE error before a failure."""
    trajectories, frames = [], []
    for size in SIZES:
        for t in temperatures:
            for k, molecule in enumerate(molecules):
                system = len(trajectories)
                fails = k < failed.get((size, t), 0)
                trajectories.append(
                    {
                        "train_size": size,
                        "system": system,
                        "molecule": molecule,
                        "temperature": t,
                        "failed": fails,
                        "time_to_failure_ps": failure_ps if fails else np.nan,
                    }
                )
                base = (forces or {}).get((size, t), 0.1) * (1 + 0.05 * k)
                for frame, time_ps in enumerate(np.linspace(0.05, horizon, 8)):
                    after = fails and time_ps >= failure_ps
                    frames.append(
                        {
                            "train_size": size,
                            "system": system,
                            "molecule": molecule,
                            "temperature": t,
                            "frame": frame,
                            "time_ps": time_ps,
                            "converged": True,
                            "after_failure": after,
                            "energy_error": (30.0 if after else 0.2 * (energies or {}).get((size, t), 1.0))
                            * (1 + 0.1 * k),
                            "forces_mae": base,
                        }
                    )
    return types.SimpleNamespace(
        models={n: None for n in SIZES},
        trajectories=pd.DataFrame(trajectories),
        frames=pd.DataFrame(frames),
        protocol=types.SimpleNamespace(temperatures=temperatures, md_time_ps=horizon),
    )


def test_fig1_shape_tests_the_slope_and_the_levelling_off_and_can_fail():
    levels = claims.fig1_shape(_curve([0.30, 0.18, 0.10, 0.095]))
    assert levels.verdict == claims.REPRODUCED and "slope" in levels.value and "n = 3" in levels.value
    rising = claims.fig1_shape(_curve([0.10, 0.15, 0.22, 0.30]))
    assert rising.verdict == claims.NOT_REPRODUCED
    steeper_at_top = claims.fig1_shape(_curve([0.30, 0.25, 0.20, 0.05]))
    assert steeper_at_top.verdict == claims.NOT_REPRODUCED
    capped = claims.fig1_shape(_curve([0.30, 0.18, 0.10, 0.095], stop="max_steps"))
    assert capped.verdict == claims.UNDERPOWERED and "step cap" in capped.value
    assert claims.fig1_shape(_curve([0.30, 0.18, 0.10, 0.095], seeds=2)).verdict == claims.UNDERPOWERED


def test_sparse_to_dense_ratio_resamples_seeds():
    ratio = claims.sparse_to_dense_ratio(_curve([0.30, 0.18, 0.10, 0.10]))
    assert ratio.estimate == pytest.approx(3.0, rel=0.05) and ratio.low < ratio.estimate < ratio.high and ratio.n == 3


def test_thesis_needs_a_good_test_error_and_more_failures_of_the_sparse_model():
    curve = _curve([0.30, 0.18, 0.10, 0.10])  # sparsest 3x the densest: looks good
    fails = _sweep({(100, 600.0): 4, (100, 1200.0): 5})
    assert claims.thesis(curve, fails).verdict == claims.REPRODUCED
    assert claims.thesis(curve, _sweep({(100, 1200.0): 1, (3200, 1200.0): 1})).verdict == claims.NOT_REPRODUCED
    assert claims.thesis(curve, _sweep({(100, 1200.0): 2})).verdict == claims.UNDERPOWERED
    bad_test_error = _curve([1.0, 0.5, 0.2, 0.1])
    assert claims.thesis(bad_test_error, fails).verdict == claims.NOT_COMPARABLE


def test_the_long_run_thesis_takes_the_molecule_as_its_unit():
    curve = _curve([0.3, 0.2, 0.14, 0.1])
    design = LongRunDesign(temperature=1200.0, n_seeds=4, time_ps=10.0)

    def runs(failed_sparse, failed_dense):
        """Four replicas of each molecule; ``failed_*[m]`` of molecule m's replicas fail."""
        rows = [
            {"train_size": size, "molecule": f"m{m}", "replica": r, "failed": r < failed[m]}
            for size, failed in ((100, failed_sparse), (3200, failed_dense))
            for m in range(len(failed))
            for r in range(4)
        ]
        return types.SimpleNamespace(trajectories=pd.DataFrame(rows), design=design)

    outcome = claims.thesis_long(curve, runs([4, 4, 4, 3, 4], [0, 0, 1, 1, 0]))
    assert outcome.verdict == claims.REPRODUCED
    assert "fails more often on 5 of 5 molecules, less often on 0" in outcome.value and "p = 0.031" in outcome.value
    assert claims.thesis_long(curve, runs([1, 1, 1, 1, 1], [1, 1, 1, 1, 1])).verdict == claims.NOT_REPRODUCED
    # 12 of 20 against 0 of 20 is Fisher p < 1e-4 pooled, but on three molecules of five: chance allows it
    assert claims.thesis_long(curve, runs([4, 4, 4, 0, 0], [0, 0, 0, 0, 0])).verdict == claims.UNDERPOWERED


def test_errors_must_rise_with_temperature_for_the_sparse_model():
    rising = {(100, 300.0): 0.2, (100, 1200.0): 0.8, (3200, 300.0): 0.1, (3200, 1200.0): 0.12}
    assert claims.fig2bc_shape(_sweep({}, rising)).verdict == claims.REPRODUCED
    flat = {(100, 300.0): 0.2, (100, 1200.0): 0.19, (3200, 300.0): 0.1, (3200, 1200.0): 0.12}
    assert claims.fig2bc_shape(_sweep({}, flat)).verdict == claims.NOT_REPRODUCED
    two = _sweep({}, rising, molecules=("a", "b"))
    assert claims.fig2bc_shape(two).verdict == claims.UNDERPOWERED
    # the densest model's AE error rising tenfold is not "only slightly", whatever its forces do
    ae_rise = _sweep({}, rising, energies={(3200, 1200.0): 10.0})
    assert claims.fig2bc_shape(ae_rise).verdict == claims.NOT_REPRODUCED


def test_equally_accurate_and_robust_needs_enough_hot_trajectories():
    curve = _curve([0.3, 0.2, 0.1, 0.1])
    many = tuple(f"m{k}" for k in range(20))
    assert claims.exhaustive_pair(curve, _sweep({}, molecules=many)).verdict == claims.REPRODUCED
    # five molecules at 600 and 1200 K: no failure in ten is still compatible with a 31 % failure rate
    few = claims.exhaustive_pair(curve, _sweep({}))
    assert few.verdict == claims.UNDERPOWERED and "0.00 [0.00, 0.31], n = 10 trajectories" in few.value
    fragile = _sweep({(3200, 600.0): 4, (3200, 1200.0): 5})
    assert claims.exhaustive_pair(curve, fragile).verdict == claims.NOT_REPRODUCED
    apart = _curve([0.3, 0.2, 0.1, 0.05])
    assert claims.exhaustive_pair(apart, _sweep({}, molecules=many)).verdict == claims.NOT_REPRODUCED


def test_out_of_sample_sign_needs_a_sign_test_and_stability_the_papers_length():
    def shifts(values):
        return pd.DataFrame(
            {"molecule": [f"m{k}" for k in range(len(values))], "n_atoms": range(10, 10 + len(values)),
             "mean_shift": values, "stable": True}
        )  # fmt: skip

    assert claims.fig3_sign(shifts([0.1, 0.2, 0.3, 0.4])).verdict == claims.UNDERPOWERED  # p = 1/16
    assert claims.fig3_sign(shifts([0.1, 0.2, 0.3, 0.4, 0.5])).verdict == claims.REPRODUCED  # p = 1/32
    assert claims.fig3_sign(shifts([0.1, -0.2, 0.3, -0.4])).verdict == claims.NOT_REPRODUCED
    stable = shifts([0.1, 0.2, 0.3, 0.4])
    assert claims.fig3_stable(stable, 1.0).verdict == claims.NOT_COMPARABLE
    assert claims.fig3_stable(stable, 1000.0).verdict == claims.REPRODUCED
    assert claims.fig3_stable(stable.assign(stable=[True, False, True, True]), 1.0).verdict == claims.NOT_REPRODUCED


def test_sparse_ae_error_is_judged_by_its_interval_against_the_papers_bound():
    # every trajectory of the sparsest model fails at once: post-failure frames carry 30 eV errors
    big = claims.fig2b_sparse(_sweep({(100, 300.0): 5}, failure_ps=0.0))
    assert big.verdict == claims.REPRODUCED and "n = 5" in big.value
    small = claims.fig2b_sparse(_sweep({}))
    assert small.verdict == claims.NOT_REPRODUCED


def test_a_hole_is_a_jump_of_the_error_after_a_stable_stretch_over_every_late_failure():
    late = _sweep({(100, 600.0): 3, (100, 1200.0): 2}, failure_ps=0.5)
    outcome = claims.fig2e_hole(late)
    assert outcome.verdict == claims.REPRODUCED and "n = 5" in outcome.value
    early = _sweep({(100, 600.0): 3, (100, 1200.0): 2}, failure_ps=0.1)  # fail before 25 % of the run
    assert claims.fig2e_hole(early).verdict == claims.UNDERPOWERED
    no_jump = _sweep({(100, 600.0): 3, (100, 1200.0): 2}, failure_ps=0.5)
    no_jump.frames["energy_error"] = 0.2
    assert claims.fig2e_hole(no_jump).verdict == claims.NOT_REPRODUCED


def test_cross_trajectory_needs_a_ratio_not_a_sign():
    table = pd.DataFrame(
        {
            "molecule": list("abcde"),
            "temperature": 1200.0,
            "own": [1.0, 1.2, 0.9, 1.1, 1.0],
            "exhaustive": [0.1, 0.12, 0.1, 0.09, 0.11],
        }
    )
    assert claims.cross_trajectory(table, 100).verdict == claims.REPRODUCED
    slightly = table.assign(own=table["exhaustive"] * 1.1)  # larger, but not by the factor
    assert claims.cross_trajectory(slightly, 100).verdict == claims.NOT_REPRODUCED


def test_reference_convergence_needs_enough_dft_frames_from_enough_trajectories():
    def frames(sizes, n, trajectories=3):
        return pd.DataFrame(
            {"train_size": np.repeat(sizes, n), "temperature": 1200.0, "converged": True,
             "system": np.tile(np.arange(n) % trajectories, len(sizes))}
        )  # fmt: skip

    assert claims.fig2d_exhaustive(frames([1000, 3200], 1), list(SIZES)).verdict == claims.UNDERPOWERED
    many = frames([1000, 3200], 30)
    assert claims.fig2d_exhaustive(many, list(SIZES)).verdict == claims.REPRODUCED
    one_trajectory = frames([1000, 3200], 30, trajectories=1)  # 30 frames of one run are one sample
    assert claims.fig2d_exhaustive(one_trajectory, list(SIZES)).verdict == claims.UNDERPOWERED
    many.loc[3, "converged"] = False
    assert claims.fig2d_exhaustive(many, list(SIZES)).verdict == claims.NOT_REPRODUCED
    half = frames([100], 30).assign(converged=[True, False] * 15)
    assert claims.fig2d_sparse(half, 100, 1200.0).verdict == claims.REPRODUCED
    assert claims.fig2d_sparse(half.assign(system=0), 100, 1200.0).verdict == claims.UNDERPOWERED


def test_pretraining_equal_mae_has_one_tolerance():
    close = pd.DataFrame({"model": ["scratch", "pretrained"], "forces_mae": [0.010, 0.011]})
    assert claims.pretraining_mae(close).verdict == claims.REPRODUCED
    apart = pd.DataFrame({"model": ["scratch", "pretrained"], "forces_mae": [0.010, 0.010 * 1.3]})
    assert claims.pretraining_mae(apart).verdict == claims.NOT_REPRODUCED
    nothing_failed = pd.DataFrame(
        {"model": ["scratch"] * 3 + ["pretrained"] * 3, "stable_time_ps": 1.0, "failed": False}
    )
    assert claims.pretraining_stability(nothing_failed, 1.0).verdict == claims.UNDERPOWERED


def test_every_claim_names_a_chapter_a_paper_value_and_a_rule():
    from pathlib import Path

    from gemrepro.book.build import chapters

    names = set(chapters(Path(__file__).resolve().parents[2]))
    assert len({c.id for c in claims.CLAIMS}) == len(claims.CLAIMS)
    for c in claims.CLAIMS:
        assert c.chapter in names and c.paper_value and c.source and c.rule
    with pytest.raises(ValueError, match="claim 'nope'"):
        claims.claim("nope")


def test_snapshots_round_trip_and_the_glance_table_marks_verdicts(tmp_path):
    root = tmp_path / "artifacts"
    table = pd.DataFrame(
        [
            {
                "id": "a",
                "source": "s",
                "claim": "c",
                "paper": "1",
                "rule": "r",
                "ours": "2",
                "verdict": claims.NOT_COMPARABLE,
                "chapter": "data",
            }
        ]
    )
    claims.save_snapshot(table, SCALES["tiny"], root)
    claims.save_snapshot(table.assign(verdict=claims.UNDERPOWERED), SCALES["small"], root)
    loaded = claims.load_snapshots(root)
    assert list(loaded) == ["tiny", "small"]
    glance = claims.at_a_glance(loaded)
    assert str(glance.loc[0, "ours (tiny)"]) == "2" and glance.loc[0, "verdict (tiny)"] == claims.NOT_COMPARABLE
    assert glance.loc[0, "verdict (small)"] == claims.UNDERPOWERED and glance.loc[0, "rule"] == "r"
    assert 'class="gemrepro-verdict gemrepro-verdict-underpowered"' in claims.verdict_badge(claims.UNDERPOWERED)
    with pytest.raises(ValueError, match="verdict"):
        claims.verdict_badge("maybe")
    with pytest.raises(ValueError, match="verdict"):
        claims.Outcome("1", "maybe")


# ----------------------------------------------------------------------------- Maheshwari et al., as issue #31 designs it
@pytest.mark.parametrize(
    "medians, verdict",
    [
        ({"scratch": [3.0, 3.5, 4.0], "pretrained": [9.0, 10.0, 12.0]}, claims.REPRODUCED),
        ({"scratch": [9.0, 10.0, 12.0], "pretrained": [3.0, 3.5, 4.0]}, claims.NOT_REPRODUCED),  # against the paper
        (
            {"scratch": [4.0, 4.0, 4.0], "pretrained": [4.0, 4.0, 4.0]},
            claims.NOT_REPRODUCED,
        ),  # no effect, well measured
        ({"scratch": [3.0, 3.5], "pretrained": [9.0, 10.0]}, claims.UNDERPOWERED),  # two seeds per arm
        ({"scratch": [1e4, 1e4, 1e4], "pretrained": [1e4, 1e4, 1e4]}, claims.UNDERPOWERED),  # nothing fails
    ],
)
def test_arms_stability_can_go_every_way(medians, verdict, arm_trajectories):
    table = arm_trajectories(medians, n_md=64 if verdict == claims.NOT_REPRODUCED else 16)
    assert claims.arms_stability(table, 20.0).verdict == verdict


def _arm_errors(scratch, tuned, matched=True):
    rows = [{"arm": "scratch", "training_seed": k, "forces_mae": v, "matched": True} for k, v in enumerate(scratch)]
    rows += [
        {"arm": "pretrained", "training_seed": k, "forces_mae": v, "matched": matched} for k, v in enumerate(tuned)
    ]
    return pd.DataFrame(rows)


def test_arms_matched_mae_rules():
    equal = _arm_errors([0.050, 0.052, 0.049], [0.051, 0.050, 0.053])
    assert claims.arms_matched_mae(equal).verdict == claims.REPRODUCED
    apart = _arm_errors([0.050, 0.052, 0.049], [0.080, 0.082, 0.079])
    assert claims.arms_matched_mae(apart).verdict == claims.NOT_REPRODUCED
    never = _arm_errors([0.050, 0.052, 0.049], [0.051, 0.050, 0.053], matched=False)
    outcome = claims.arms_matched_mae(never)
    assert outcome.verdict == claims.NOT_REPRODUCED and "never reached" in outcome.value
    assert claims.arms_matched_mae(_arm_errors([0.05, 0.05], [0.05, 0.05])).verdict == claims.UNDERPOWERED


def _same_mae_models(offset, pretrained_errors=(0.06, 0.04, 0.025)):
    rng = np.random.default_rng(1)
    rows = []
    for arm, errors_, factor in (("scratch", (0.08, 0.05, 0.03), 1.0), ("pretrained", pretrained_errors, offset)):
        for size, mae in zip((50, 150, 450), errors_):
            for seed in range(3):
                m = mae * float(np.exp(rng.normal(0, 0.05)))
                rows.append(
                    {
                        "arm": arm,
                        "train_size": size,
                        "training_seed": seed,
                        "forces_mae": m,
                        "median_stable_time_ps": factor * 0.5 * m**-1.5 * float(np.exp(rng.normal(0, 0.1))),
                    }
                )
    return pd.DataFrame(rows)


def test_arms_same_mae_rules():
    assert claims.arms_same_mae(_same_mae_models(3.0)).verdict == claims.REPRODUCED
    assert claims.arms_same_mae(_same_mae_models(0.3)).verdict == claims.NOT_REPRODUCED
    apart = claims.arms_same_mae(_same_mae_models(3.0, pretrained_errors=(0.01, 0.008, 0.006)))
    assert apart.verdict == claims.UNDERPOWERED and "do not overlap" in apart.value


def test_every_rule_revision_names_known_claims_and_a_commit():
    known = {c.id for c in claims.CLAIMS} | {"pretraining-same-mae"}  # the arms study adds it when it ships
    for revision in claims.RULE_REVISIONS:
        named = {part.strip() for part in revision.claims.replace("and a new ", "").split(",")}
        assert named <= known, named - known
        assert len(revision.commit) >= 7 and revision.before and revision.now


def test_the_example_is_the_judged_trajectory_that_stayed_stable_longest():
    trajectories = pd.DataFrame(
        {
            "train_size": [4, 4, 4, 4, 40, 40],
            "system": [0, 1, 2, 3, 0, 1],
            "molecule": ["m0", "m1", "m0", "m1", "m0", "m1"],
            "temperature": 600.0,
            "time_to_failure_ps": [0.05, 0.1, 0.02, 0.3, np.nan, 0.8],
        }
    )
    jumps = pd.DataFrame(
        {
            "train_size": [4, 40, 4],
            "system": [3, 1, 1],
            "failure_ps": [0.3, 0.8, 0.8],
            "jump": [50.0, 12.0, 30.0],
        }
    )
    example = claims.hole_example(trajectories, jumps)
    assert (example["train_size"], example["system"], example["jump"]) == (4, 1, 30.0)  # a tie on 0.8 ps: larger jump
    assert example["time_to_failure_ps"] == 0.1  # its row of the trajectories table, not the jumps'
    assert claims.hole_example(trajectories, jumps.iloc[:0]) is None
    with pytest.raises(ValueError, match="not in trajectories"):
        claims.hole_example(trajectories, jumps.assign(system=99))
