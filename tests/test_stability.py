"""The stability rules on hand-made trajectories of ethanol."""

import numpy as np
import pytest
from ase.build import molecule

from gemrepro.analysis.stability import (
    StabilityCriteria,
    bond_deviation,
    detect_failure,
    hydrogen_heavy_distance,
    reference_bonds,
)


def ethanol():
    atoms = molecule("CH3CH2OH")
    return atoms.numbers, atoms.positions.copy()


def terminal_hydrogen_bond(numbers, positions):
    """A C-H bond (carbon, hydrogen) whose hydrogen has no other bond."""
    bonds, _ = reference_bonds(numbers, positions)
    for i, j in bonds:
        if numbers[j] == 1 and numbers[i] == 6 and (bonds == j).sum() == 1:
            return int(i), int(j)
    raise AssertionError("ethanol has terminal C-H bonds")


def stretched(positions, heavy, hydrogen, amount):
    out = positions.copy()
    direction = out[hydrogen] - out[heavy]
    out[hydrogen] += amount * direction / np.linalg.norm(direction)
    return out


def test_reference_bonds_of_ethanol_are_its_eight_covalent_bonds():
    numbers, positions = ethanol()
    bonds, lengths = reference_bonds(numbers, positions)
    assert len(bonds) == 8  # C-C, C-O, O-H, 5 C-H
    assert np.all((lengths > 0.9) & (lengths < 1.6))
    np.testing.assert_allclose(bond_deviation(positions, bonds, lengths), 0.0, atol=1e-12)


@pytest.mark.parametrize("amount, fails", [(0.6, True), (0.4, False), (-0.6, True)])
def test_bond_rule_fires_beyond_half_an_angstrom_and_names_the_bond(amount, fails):
    numbers, positions = ethanol()
    carbon, hydrogen = terminal_hydrogen_bond(numbers, positions)
    frames = np.stack([positions, positions, stretched(positions, carbon, hydrogen, amount)])
    record = detect_failure(frames, numbers, steps=[0, 10, 20], dt_fs=0.5, criteria=StabilityCriteria(rules=("bond",)))
    if not fails:
        assert record is None
        return
    assert record.rule == "bond"
    assert record.step == 20
    assert record.time_ps == pytest.approx(0.01)
    assert set(record.atoms) == {carbon, hydrogen}


def test_hydrogen_far_from_every_heavy_atom_is_hydrogen_loss():
    numbers, positions = ethanol()
    carbon, hydrogen = terminal_hydrogen_bond(numbers, positions)
    far = positions.copy()
    far[hydrogen] = positions[numbers > 1].max(axis=0) + np.array([0.0, 0.0, 3.0]) + 0.1
    assert hydrogen_heavy_distance(numbers, far)[1].max() > 3.0
    frames = np.stack([positions, far])
    rules = StabilityCriteria(rules=("hydrogen_loss",))
    assert detect_failure(frames, numbers, criteria=rules) == detect_failure(frames, numbers, criteria=rules)
    record = detect_failure(frames, numbers, criteria=rules)
    assert (record.rule, record.step, record.atoms) == ("hydrogen_loss", 1, (hydrogen,))
    # with every default rule on, the broken bond has priority over the lost hydrogen
    forces = np.zeros_like(frames)
    assert detect_failure(frames, numbers, forces=forces).rule == "bond"
    # a hydrogen only 2 Å away from its carbon is not lost
    near = stretched(positions, carbon, hydrogen, 2.0 - np.linalg.norm(positions[hydrogen] - positions[carbon]))
    assert detect_failure(np.stack([positions, near]), numbers, reference_positions=positions, criteria=rules) is None


def test_nonfinite_force_and_temperature_rules():
    numbers, positions = ethanol()
    frames = np.stack([positions] * 4)
    forces = np.zeros_like(frames)
    forces[2, 3] = [2e3, 0.0, 0.0]
    energies = np.array([0.0, 0.0, 0.0, np.nan])
    record = detect_failure(frames, numbers, forces=forces, energies=energies)
    assert (record.rule, record.step, record.atoms) == ("force", 2, (3,))
    forces[2, 3] = 0.0
    forces[3, 5, 1] = np.inf
    record = detect_failure(frames, numbers, forces=forces, energies=energies)
    assert (record.rule, record.step, record.atoms) == ("nonfinite", 3, (5,))
    hot = StabilityCriteria(rules=("temperature",), temperature_bounds=(10.0, 1000.0))
    record = detect_failure(frames, numbers, temperatures=[300.0, 900.0, 1200.0, 5.0], criteria=hot)
    assert (record.rule, record.step, record.atoms) == ("temperature", 2, ())


def test_bad_input_gives_one_line_errors():
    numbers, positions = ethanol()
    frames = positions[None]
    with pytest.raises(ValueError, match="forces"):
        detect_failure(frames, numbers)  # the default 'force' rule needs forces
    with pytest.raises(ValueError, match="unknown rule"):
        StabilityCriteria(rules=("bond", "vibes"))
    with pytest.raises(ValueError, match="temperature_bounds"):
        StabilityCriteria(rules=("temperature",))
    with pytest.raises(ValueError, match="positions"):
        detect_failure(positions, numbers, criteria=StabilityCriteria(rules=("bond",)))
