"""QM7-X-style sampling and the per-molecule build on a tiny molecule (GFN2-xTB)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

from gemrepro.data.build import MoleculeTask, _formula_ids, label_molecules, sample_and_label
from gemrepro.data.sampling import displace, embed_conformers, hessian, normal_modes, relax
from gemrepro.reference import get_method


@pytest.fixture(scope="module")
def water_modes():
    xtb = get_method("gfn2-xtb")
    relaxed = relax(embed_conformers("O", 1, seed=0)[0], xtb)
    return relaxed, normal_modes(relaxed, hessian(relaxed, xtb))


def _mode_amplitudes(structures, relaxed, modes):
    """Amplitude of each (non-orthogonal, unit-length) Cartesian mode in each displacement."""
    basis = modes.directions.reshape(len(modes.directions), -1).T
    delta = np.stack([s.positions - relaxed.positions for s in structures]).reshape(len(structures), -1)
    return np.linalg.lstsq(basis, delta.T, rcond=None)[0].T


def test_water_has_three_vibrations_with_sensible_wavenumbers(water_modes):
    _, modes = water_modes
    assert modes.directions.shape == (3, 3, 3)
    # GFN2-xTB water: bend ~1500-1650, stretches ~3500-3800 cm^-1
    bend, *stretches = np.sort(modes.wavenumbers)
    assert 1400 < bend < 1750
    assert all(3300 < w < 3900 for w in stretches)
    assert np.all(modes.force_constants > 0)


def test_displacements_follow_the_thermal_energy(water_modes):
    relaxed, modes = water_modes
    structures = displace(relaxed, modes, 400, np.random.default_rng(1), temperature=1500.0, max_amplitude=10.0)
    # harmonic energy of each structure: sum_i K_i a_i^2 / 2 = 3 N kT / 2 exactly (c_i sum to one)
    amplitudes = _mode_amplitudes(structures, relaxed, modes)
    harmonic = 0.5 * (modes.force_constants * amplitudes**2).sum(axis=1)
    assert np.allclose(harmonic, 1.5 * len(relaxed) * units.kB * 1500.0, rtol=0.05)


def test_amplitude_cap_limits_every_mode(water_modes):
    relaxed, modes = water_modes
    structures = displace(relaxed, modes, 50, np.random.default_rng(2), temperature=50_000.0, max_amplitude=0.1)
    amplitudes = np.abs(_mode_amplitudes(structures, relaxed, modes))
    assert amplitudes.max() <= 0.1 + 1e-9


def test_sample_and_label_is_deterministic_and_keeps_failures_as_outcomes(tmp_path):
    task = MoleculeTask("CO", n_conformers=1, n_displaced=4, seed=0, reference="gfn2-xtb")
    first, second = sample_and_label(task), sample_and_label(task)
    assert first["error"] == ""
    assert [r["label"] for r in first["rows"]] == ["opt", "d1", "d2", "d3", "d4"]
    assert all(r["converged"] for r in first["rows"])
    for a, b in zip(first["rows"], second["rows"]):
        assert np.array_equal(a["positions"], b["positions"])
    # displaced structures lie above the relaxed one
    energies = [r["energy"] for r in first["rows"]]
    assert min(energies[1:]) > energies[0]
    # a labeller that cannot converge is recorded, not raised
    hopeless = MoleculeTask("CO", 1, 2, 0, "gfn2-xtb", (("max_iterations", 1),))
    rows = sample_and_label(hopeless)["rows"]
    assert rows and not any(r["converged"] for r in rows)
    assert all("not converged" in r["error"] for r in rows)


def test_per_molecule_artifacts_are_reused(tmp_path):
    task = MoleculeTask("C", n_conformers=1, n_displaced=2, seed=0, reference="gfn2-xtb")
    (first,) = label_molecules([task], n_workers=1, progress=False, root=tmp_path)
    (again,) = label_molecules([task], n_workers=1, progress=False, root=tmp_path)
    assert first.path == again.path and first.manifest["created"] == again.manifest["created"]
    data = np.load(first.file("labels.npz"))
    assert data["positions"].shape == (3, 5, 3)


def test_qm7x_numbering_counts_formulas_then_isomers():
    ids = _formula_ids(["CCO", "COC", "CC"])
    assert ids["CC"][1] == 1
    assert {ids["CCO"], ids["COC"]} == {(ids["CCO"][0], 1), (ids["CCO"][0], 2)}
    assert ids["CCO"][0] != ids["CC"][0]
