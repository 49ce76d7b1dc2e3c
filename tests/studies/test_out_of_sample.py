"""Out-of-sample chapter pieces: GFN2-xTB without D4, D4 pair energies, shift statistics, study glue."""

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from ase.build import molecule

from gemrepro.analysis.shift import dispersion_share, molecule_errors, r_squared
from gemrepro.cache.artifacts import Artifact
from gemrepro.config.scales import SCALES
from gemrepro.reference import GFN2xTB, get_method
from gemrepro.reference.dispersion import d4_energy, d4_pair_energies, dispersion_beyond, gfn2_d4_damping
from gemrepro.studies.out_of_sample import (
    force_component_errors,
    model_ranges,
    out_of_sample,
    out_of_sample_protocol,
)

matplotlib.use("Agg")


def _two_methanes(separation: float):
    """Two methane molecules ``separation`` Å apart along x (a pure dispersion dimer)."""
    a, b = molecule("CH4"), molecule("CH4")
    b.translate([separation, 0.0, 0.0])
    dimer = a + b
    return dimer.numbers, dimer.positions


# ----------------------------------------------------------------------------- GFN2-xTB without D4
def test_xtb_default_cache_options_unchanged_and_switch_recorded():
    assert "dispersion" not in GFN2xTB().options()  # keys of existing labels stay valid
    assert GFN2xTB().options() == {"accuracy": 1.0, "max_iterations": 250, "electronic_temperature": 300.0}
    assert get_method("gfn2-xtb", dispersion=False).options()["dispersion"] is False
    with pytest.raises(ValueError, match="dispersion must be True or False"):
        GFN2xTB(dispersion="no")


def test_xtb_without_d4_lifts_the_energy_by_about_the_d4_energy():
    ethanol = molecule("CH3CH2OH")
    with_d4 = GFN2xTB().compute(ethanol.numbers, ethanol.positions)
    without = GFN2xTB(dispersion=False).compute(ethanol.numbers, ethanol.positions)
    assert with_d4.converged and without.converged
    removed = with_d4.energy - without.energy
    # self-consistent D4 inside xTB vs dftd4 with EEQ charges: same sign, within 10 %
    assert removed < 0
    assert removed == pytest.approx(d4_energy(ethanol.numbers, ethanol.positions), rel=0.1)
    assert not np.allclose(with_d4.forces, without.forces)


def test_xtb_free_atom_has_no_dispersion():
    # a lone atom has no dispersion partner: atomization energies with and without D4 share free atoms
    for z, multiplicity in ((1, 2), (6, 3), (8, 3)):
        full = GFN2xTB().compute(np.array([z]), np.zeros((1, 3)), multiplicity=multiplicity)
        bare = GFN2xTB(dispersion=False).compute(np.array([z]), np.zeros((1, 3)), multiplicity=multiplicity)
        assert full.energy == pytest.approx(bare.energy, abs=1e-8)


# ----------------------------------------------------------------------------- D4 pairs
def test_gfn2_damping_parameters_are_the_published_ones():
    assert gfn2_d4_damping() == {"s6": 1.0, "s8": 2.7, "a1": 0.52, "a2": 5.0, "s9": 5.0}


def test_pair_energies_are_symmetric_and_sum_to_the_d4_energy():
    numbers, positions = _two_methanes(4.0)
    pairs = d4_pair_energies(numbers, positions)
    assert pairs.shape == (10, 10)
    np.testing.assert_allclose(pairs, pairs.T, atol=1e-12)
    assert pairs.sum() == pytest.approx(d4_energy(numbers, positions), rel=1e-10)
    assert d4_energy(numbers, positions) < 0


def test_dispersion_beyond_a_distance_splits_the_dimer():
    numbers, positions = _two_methanes(6.0)
    total = d4_energy(numbers, positions)
    short, intra, none = dispersion_beyond(numbers, positions, [0.1, 3.0, 100.0])
    assert short == pytest.approx(total, rel=1e-12) and none == 0.0
    # beyond 3 Å only intermolecular pairs remain: the monomers' own energies are subtracted exactly
    methane = molecule("CH4")
    monomers = 2 * d4_energy(methane.numbers, methane.positions)
    assert intra == pytest.approx(total - monomers, rel=0.05)


def test_intermolecular_dispersion_decays_like_r_minus_six():
    # the pairs beyond 3 Å are the intermolecular ones
    near, far = (dispersion_beyond(*_two_methanes(r), [3.0])[0] for r in (12.0, 24.0))
    assert near < far < 0
    # C6/R^6 dominates far away; the C8/R^8 term adds a few per cent at 12 Å
    assert 0.98 * 2.0**6 < near / far < 1.1 * 2.0**6


def test_d4_bad_input_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="positions: expected finite coordinates of shape"):
        d4_energy(np.array([1, 1]), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="distances: expected positive distances"):
        dispersion_beyond(np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 0.74]]), [-1.0])


# ----------------------------------------------------------------------------- shift statistics
def test_r_squared_ignores_a_constant_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=50)
    assert r_squared(reference + 0.47, reference) == pytest.approx(1.0)
    noisy = reference + 0.47 + 0.5 * rng.normal(size=50)
    expected = np.corrcoef(noisy, reference)[0, 1] ** 2
    assert r_squared(noisy, reference) == pytest.approx(expected) and 0.5 < expected < 0.9
    assert np.isnan(r_squared(np.ones(5), reference[:5]))
    with pytest.raises(ValueError, match="energies: expected two 1-d arrays"):
        r_squared(np.ones(3), np.ones(4))


def _frames() -> pd.DataFrame:
    reference = np.array([-50.0, -50.5, -49.5, -120.0, -121.0, -119.0, -119.5])
    error = np.array([0.1, 0.2, 0.3, 0.5, 0.4, 0.6, np.nan])
    return pd.DataFrame(
        {
            "molecule": ["small"] * 3 + ["large"] * 4,
            "n_atoms": [12] * 3 + [50] * 4,
            "reference_atomization_energy": reference,
            "model_energy": reference + error,
            "energy_error": error,
            "forces_mae": [0.01, 0.02, 0.03, 0.05, 0.05, 0.08, np.nan],
            "converged": [True] * 6 + [False],
            "dispersion_energy": [-0.3, -0.3, -0.3, -1.2, -1.0, -1.1, np.nan],
            "d4_beyond_cutoff": [-0.05, -0.05, -0.05, -0.35, -0.25, -0.30, np.nan],
            "d4_beyond_receptive_field": [0.0, 0.0, 0.0, -0.02, -0.01, -0.03, np.nan],
        }
    )


def test_molecule_errors_reports_fig3_numbers_per_molecule():
    trajectories = pd.DataFrame({"molecule": ["small", "large"], "failed": [False, True]})
    table = molecule_errors(_frames(), trajectories).set_index("molecule")
    assert list(table.index) == ["small", "large"]  # by size
    assert table.loc["small", "mean_shift"] == pytest.approx(0.2)
    assert table.loc["small", "shift_std"] == pytest.approx(0.1)
    assert table.loc["large", "n_frames"] == 3  # the unconverged frame is left out
    assert table.loc["large", "forces_mae"] == pytest.approx(0.06)
    assert table.loc["small", "r2"] == pytest.approx(np.corrcoef([-49.9, -50.3, -49.2], [-50, -50.5, -49.5])[0, 1] ** 2)
    assert table["stable"].tolist() == [True, False]


def test_dispersion_share_signs_and_ratios():
    shares = dispersion_share(_frames()).set_index("molecule")
    assert shares.loc["large", "mean_shift"] == pytest.approx(0.5)
    assert shares.loc["large", "missing_total"] == pytest.approx(1.1)
    assert shares.loc["large", "share_beyond_cutoff"] == pytest.approx(0.3 / 0.5)
    assert shares.loc["small", "share_beyond_cutoff"] == pytest.approx(0.05 / 0.2)
    assert shares.loc["small", "missing_beyond_receptive_field"] == 0.0
    with pytest.raises(ValueError, match=r"frames: missing column\(s\) \['d4_beyond_cutoff'\]"):
        dispersion_share(_frames().drop(columns="d4_beyond_cutoff"))


# ----------------------------------------------------------------------------- study glue
def test_protocol_is_the_scales_at_1200_k():
    protocol = out_of_sample_protocol(SCALES["tiny"])
    assert protocol.temperatures == (1200.0,)
    assert protocol.n_steps == 2000 and protocol.n_sampled_frames == 72


def test_model_ranges_from_the_manifest():
    config = {"cutoff": 4.0, "num_blocks": 2, "int_cutoff": 10.0, "variant": "T"}
    art = Artifact(__import__("pathlib").Path("/nonexistent/models/abc"), {"params": {"model": config}})
    assert model_ranges(art) == (4.0, 8.0)
    art_q = Artifact(art.path, {"params": {"model": {**config, "variant": "Q"}}})
    assert model_ranges(art_q) == (4.0, 20.0)


def test_force_component_errors_follow_the_frames(tmp_path):
    frames = pd.DataFrame({"molecule": ["a", "b", "b"], "converged": [True, True, False], "error": ["", "", "scf"]})
    frames.to_csv(tmp_path / "frames.csv", index=False)
    model = np.arange(18, dtype=float).reshape(6, 3)
    reference = model - np.array([[0.1, 0.0, 0.0]] * 6)
    np.savez(tmp_path / "forces.npz", model=model, reference=reference, atom_offset=np.array([0, 2, 4, 6]))
    (tmp_path / "manifest.json").write_text(json.dumps({}))
    errors = force_component_errors(Artifact(tmp_path, {}))
    assert len(errors) == 12  # two frames of two atoms, x/y/z; the unconverged frame dropped
    assert errors.groupby("molecule").size().to_dict() == {"a": 6, "b": 6}
    assert errors["error"].sum() == pytest.approx(0.4)


def test_out_of_sample_rejects_an_unknown_reference():
    with pytest.raises(ValueError, match="reference: expected one of gfn2-xtb, pbe0"):
        out_of_sample(SCALES["tiny"], reference="mp2")


def test_plots_return_figures_with_their_series():
    from gemrepro.plots.oos import error_kdes, shift_vs_size

    frames = _frames()
    fig = shift_vs_size(dispersion_share(frames), paper_shift=(52, 0.47))
    assert len(fig.axes[0].lines) == 4 + 1 + 1  # four series, the paper star, the zero line
    forces = pd.DataFrame(
        {"molecule": ["small"] * 30 + ["large"] * 30, "error": np.random.default_rng(1).normal(scale=0.02, size=60)}
    )
    fig = error_kdes(frames, forces, paper_shift=0.47)
    assert len(fig.axes) == 2
