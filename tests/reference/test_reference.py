"""Reference methods: energies and forces are right, failures are results, bad input raises."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from ase.build import molecule
from ase.units import Hartree

from gemrepro.cache.artifacts import artifact_key
from gemrepro.reference import (
    METHODS,
    PBE0,
    FreeAtomError,
    GFN2xTB,
    atomization_energy,
    free_atom_energies,
    get_method,
)


def distorted(name: str, seed: int = 0, amplitude: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """An ASE G2 molecule with its atoms shaken, so forces are far from zero."""
    atoms = molecule(name)
    rng = np.random.default_rng(seed)
    return atoms.numbers.copy(), atoms.positions + amplitude * rng.standard_normal(atoms.positions.shape)


def finite_difference_force(method, numbers, positions, atom: int, axis: int, h: float) -> float:
    """−dE/dx of one coordinate by central differences (eV/Å)."""
    plus, minus = positions.copy(), positions.copy()
    plus[atom, axis] += h
    minus[atom, axis] -= h
    e_plus = method.compute(numbers, plus).energy
    e_minus = method.compute(numbers, minus).energy
    return -(e_plus - e_minus) / (2 * h)


# ----------------------------------------------------------------------------- GFN2-xTB


def test_xtb_water_energy_is_gfn2_value():
    numbers, positions = distorted("H2O", amplitude=0.0)
    result = GFN2xTB().compute(numbers, positions)
    assert result.converged and result.error is None
    # GFN2-xTB total energy of water near equilibrium is about -5.07 Hartree.
    assert -5.10 * Hartree < result.energy < -5.04 * Hartree
    assert result.forces.shape == (3, 3)
    assert result.info["multiplicity"] == 1 and result.wall_time > 0


def test_xtb_forces_match_finite_differences():
    numbers, positions = distorted("CH3CH2OH", seed=1)
    method = GFN2xTB(accuracy=0.01)
    forces = method.compute(numbers, positions).forces
    assert np.abs(forces).max() > 0.5  # a distorted molecule: the check is not 0 == 0
    numeric = np.array(
        [
            [finite_difference_force(method, numbers, positions, i, k, 1e-3) for k in range(3)]
            for i in range(len(numbers))
        ]
    )
    np.testing.assert_allclose(forces, numeric, atol=3e-4)


def test_xtb_forces_sum_to_zero_and_are_invariant():
    numbers, positions = distorted("CH4", seed=2)
    method = GFN2xTB()
    reference = method.compute(numbers, positions)
    np.testing.assert_allclose(reference.forces.sum(axis=0), 0.0, atol=1e-8)

    shifted = method.compute(numbers, positions + np.array([3.1, -7.2, 0.4]))
    assert shifted.energy == pytest.approx(reference.energy, abs=1e-7)
    np.testing.assert_allclose(shifted.forces, reference.forces, atol=1e-6)

    angle = 0.7  # forces rotate with the molecule
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rotated = method.compute(numbers, positions @ rotation.T)
    assert rotated.energy == pytest.approx(reference.energy, abs=1e-7)
    np.testing.assert_allclose(rotated.forces, reference.forces @ rotation.T, atol=1e-6)


def test_xtb_open_shell_defaults_to_doublet():
    numbers = np.array([8, 1])
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]])
    result = GFN2xTB().compute(numbers, positions)
    assert result.converged and result.info["multiplicity"] == 2
    cation = GFN2xTB().compute(numbers, positions, charge=1)
    assert cation.info["multiplicity"] == 1 and cation.energy > result.energy + 5.0  # ionisation costs eV


def test_xtb_scc_failure_is_a_recorded_result():
    numbers, positions = distorted("H2O")
    result = GFN2xTB(max_iterations=1).compute(numbers, positions)
    assert result.converged is False
    assert np.isnan(result.energy) and np.isnan(result.forces).all() and result.forces.shape == (3, 3)
    assert "not converged" in result.error


def test_engine_error_is_a_recorded_result():
    """Two atoms on top of each other make tblite refuse the structure: still no exception."""
    result = GFN2xTB().compute(np.array([1, 1]), np.zeros((2, 3)))
    assert result.converged is False and np.isnan(result.energy)
    assert "close" in result.error.lower()


# ----------------------------------------------------------------------------- bad input

WATER_Z, WATER_R = distorted("H2O", amplitude=0.0)


@pytest.mark.parametrize(
    ("method", "numbers", "positions", "kwargs", "message"),
    [
        (GFN2xTB(), [92, 1], np.zeros((2, 3)), {}, "U (Z=92)"),
        (PBE0(), [0, 1], np.zeros((2, 3)), {}, "Z=0"),
        (PBE0(), [58], np.zeros((1, 3)), {}, "Ce (Z=58)"),
        (GFN2xTB(), WATER_Z, np.where(np.eye(3, dtype=bool), np.nan, WATER_R), {}, "NaN"),
        (GFN2xTB(), WATER_Z, WATER_R[:2], {}, "shape (3, 3)"),
        (GFN2xTB(), WATER_Z, WATER_R.ravel(), {}, "shape (3, 3)"),
        (GFN2xTB(), [8.5, 1, 1], WATER_R, {}, "integers"),
        (GFN2xTB(), WATER_Z, WATER_R, {"multiplicity": 2}, "multiplicity 2 is impossible"),
        (GFN2xTB(), WATER_Z, WATER_R, {"charge": 11}, "negative number of electrons"),
    ],
)
def test_bad_input_raises_one_line_value_error(method, numbers, positions, kwargs, message):
    with pytest.raises(ValueError) as error:
        method.compute(np.asarray(numbers), positions, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_registry_names_options_and_pickling():
    assert METHODS == ("gfn2-xtb", "pbe0")
    with pytest.raises(ValueError, match=r"^unknown reference method 'foo': expected one of gfn2-xtb, pbe0$"):
        get_method("foo")
    with pytest.raises(ValueError, match="unknown option"):
        get_method("pbe0", basiss="def2-tzvp")
    with pytest.raises(ValueError, match="dispersion"):
        get_method("pbe0", dispersion="mbd")
    method = get_method("pbe0", max_cycle=30, threads=2)
    assert isinstance(method, PBE0) and method.name == "pbe0" and method.max_cycle == 30
    assert pickle.loads(pickle.dumps(method)) == method
    # threads and device do not change the numbers, so they stay out of cache keys
    assert method.options() == get_method("pbe0", max_cycle=30).options()
    assert "threads" not in method.options() and method.options()["basis"] == "def2-svp"
    assert {1, 6, 7, 8, 16, 17} <= method.supported_elements and 58 not in method.supported_elements
    assert get_method("gfn2-xtb").supported_elements == frozenset(range(1, 87))


# ----------------------------------------------------------------------------- PBE0


@pytest.fixture(scope="module")
def pbe0_water():
    numbers, positions = distorted("H2O", seed=3)
    return numbers, positions, PBE0(device="cpu").compute(numbers, positions)


def test_pbe0_water_converges_to_a_plausible_energy(pbe0_water):
    _, _, result = pbe0_water
    assert result.converged and result.error is None
    # PBE0/def2-SVP water is about -76.28 Hartree.
    assert -76.35 * Hartree < result.energy < -76.20 * Hartree
    assert result.info["device"] == "cpu" and 3 <= result.info["scf_cycles"] < 30


def test_pbe0_force_matches_finite_difference(pbe0_water):
    numbers, positions, result = pbe0_water
    atom, axis = np.unravel_index(np.argmax(np.abs(result.forces)), result.forces.shape)
    assert abs(result.forces[atom, axis]) > 0.3
    numeric = finite_difference_force(PBE0(), numbers, positions, int(atom), int(axis), 2e-3)
    assert result.forces[atom, axis] == pytest.approx(numeric, abs=1e-3)


def test_pbe0_d3bj_lowers_the_energy_a_little(pbe0_water):
    numbers, positions, with_d3 = pbe0_water
    without = PBE0(dispersion=None).compute(numbers, positions)
    shift = with_d3.energy - without.energy
    assert -0.05 < shift < -1e-3  # D3(BJ) on water: a few meV of attraction


def test_pbe0_unconverged_scf_is_a_recorded_result():
    numbers, positions = distorted("H2O", seed=3)
    result = PBE0(max_cycle=1).compute(numbers, positions)
    assert result.converged is False and "not converged" in result.error
    assert np.isfinite(result.energy) and np.isnan(result.forces).all()


# ----------------------------------------------------------------------------- free atoms


def test_free_atoms_are_cached_per_element(tmp_path, monkeypatch):
    calls: list[int] = []
    original = GFN2xTB.compute

    def counting(self, numbers, positions, charge=0, multiplicity=None):
        calls.append(int(numbers[0]))
        return original(self, numbers, positions, charge, multiplicity)

    monkeypatch.setattr(GFN2xTB, "compute", counting)
    method = GFN2xTB()
    first = free_atom_energies(method, [8, 1, 1], root=tmp_path)
    assert sorted(first) == [1, 8] and sorted(calls) == [1, 8]
    again = free_atom_energies(method, [1, 6, 8], root=tmp_path)
    assert calls[2:] == [6]  # only the new element is computed
    assert again[1] == first[1] and again[8] == first[8]

    params = {"method": "gfn2-xtb", "options": method.options(), "element": 8, "multiplicity": 3}
    manifest = json.loads((tmp_path / "free-atoms" / artifact_key(params) / "manifest.json").read_text())
    assert manifest["energy_eV"] == first[8] and manifest["params"]["element"] == 8

    other = free_atom_energies(GFN2xTB(accuracy=0.1), [1], root=tmp_path)  # other settings, other key
    assert calls[3:] == [1] and other[1] == pytest.approx(first[1], abs=1e-3)


def test_xtb_water_atomization_energy(tmp_path):
    method = GFN2xTB()
    numbers, positions = distorted("H2O", amplitude=0.0)
    atoms = free_atom_energies(method, numbers, root=tmp_path)
    total = method.compute(numbers, positions).energy
    e_at = atomization_energy(total, numbers, atoms)
    assert e_at == pytest.approx(total - atoms[8] - 2 * atoms[1])
    # GFN2-xTB overbinds atomization (its atoms are not fitted references): about -14 eV vs ~-10 eV.
    assert -16.0 < e_at < -8.0
    with pytest.raises(ValueError, match=r"C \(Z=6\)"):
        atomization_energy(total, [6, 1, 1, 1, 1], atoms)


def test_pbe0_water_atomization_energy(tmp_path, pbe0_water):
    """Open-shell free atoms (UKS): a slightly shaken water binds by about PBE0's D_e."""
    numbers, _, result = pbe0_water
    atoms = free_atom_energies(PBE0(), numbers, root=tmp_path)
    e_at = atomization_energy(result.energy, numbers, atoms)
    assert -10.5 < e_at < -8.5  # PBE0/def2-SVP D_e of water ~9.6 eV (experiment 10.1 eV)


def test_unconverged_free_atom_raises_and_caches_nothing(tmp_path):
    with pytest.raises(FreeAtomError, match="O \\(Z=8\\) atom"):
        free_atom_energies(GFN2xTB(max_iterations=1), [8], root=tmp_path)
    assert not any((tmp_path / "free-atoms").iterdir())
    with pytest.raises(ValueError, match="no ground-state multiplicity"):
        free_atom_energies(GFN2xTB(), [26], root=tmp_path)
