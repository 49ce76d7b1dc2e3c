"""The stability rules on hand-made trajectories of ethanol."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from gemrepro.analysis.stability import (
    PRIORITY,
    RULES,
    StabilityCriteria,
    bond_deviation,
    closest_pair,
    detect_failure,
    hydrogen_heavy_distance,
    reference_bonds,
)
from gemrepro.md.failures import STOP_RULES, FailureDetector, failure_records
from gemrepro.md.state import build_state


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
    # ASE's ethanol is C0 (methyl) C1 O2 H3 (hydroxyl), H4 H5 on C1, H6 H7 H8 on C0; textbook lengths
    known = {
        (0, 1): 1.51,
        (1, 2): 1.43,
        (2, 3): 0.97,
        (1, 4): 1.10,
        (1, 5): 1.10,
        (0, 6): 1.09,
        (0, 7): 1.09,
        (0, 8): 1.09,
    }
    found = {tuple(sorted(map(int, pair))): float(length) for pair, length in zip(bonds, lengths)}
    assert set(found) == set(known)
    assert [found[pair] for pair in known] == pytest.approx(list(known.values()), abs=0.01)
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


# ----------------------------------------------------------------------------- the clash rule
CLASH = StabilityCriteria(rules=("clash",))


def moved_next_to(positions, atom, target, distance=0.10):
    """``positions`` with ``atom`` put ``distance`` Å from ``target``, on the side it came from."""
    out = positions.copy()
    direction = positions[atom] - positions[target]
    out[atom] = positions[target] + distance * direction / np.linalg.norm(direction)
    return out


def test_rule_codes_stay_and_clash_is_reported_before_the_bond():
    assert RULES[:5] == ("nonfinite", "force", "bond", "hydrogen_loss", "temperature")  # codes on record
    assert RULES[-1] == "clash" and STOP_RULES == (*RULES, "uncertainty")
    assert PRIORITY == ("nonfinite", "force", "clash", "bond", "hydrogen_loss", "temperature")
    assert "clash" in StabilityCriteria().rules and StabilityCriteria().clash_factor == 0.5


@pytest.mark.parametrize("name", ["H2O", "CH3CH2OH", "CH4", "C2H2", "N2", "H2"])
def test_equilibrium_molecules_are_far_from_a_clash(name):
    atoms = molecule(name)
    ratio, pair = closest_pair(atoms.numbers, atoms.positions)
    assert 0.75 < ratio < 1.25 and pair[0] < pair[1]  # triple bonds ~0.8, H-H 1.19: far above 0.5
    frames = np.stack([atoms.positions] * 3)
    assert detect_failure(frames, atoms.numbers, forces=np.zeros_like(frames)) is None


def test_two_atoms_a_tenth_of_an_angstrom_apart_are_a_clash():
    numbers, positions = ethanol()
    carbon, hydrogen = terminal_hydrogen_bond(numbers, positions)
    oxygen = int(np.flatnonzero(numbers == 8)[0])
    fused = moved_next_to(positions, hydrogen, oxygen)
    frames = np.stack([positions, positions, fused, fused])
    ratio, pair = closest_pair(numbers, frames)
    assert ratio[2] == pytest.approx(0.10 / (0.31 + 0.66)) and tuple(pair[2]) == tuple(sorted((hydrogen, oxygen)))
    record = detect_failure(frames, numbers, steps=[0, 5, 10, 15], criteria=CLASH)
    assert (record.rule, record.step, set(record.atoms)) == ("clash", 10, {hydrogen, oxygen})
    assert record.atoms[0] < record.atoms[1]
    # the hydrogen also left its carbon: with every default rule on, the clash is reported first
    forces = np.zeros_like(frames)
    both = detect_failure(frames, numbers, steps=[0, 5, 10, 15], forces=forces)
    assert (both.rule, both.step, set(both.atoms)) == ("clash", 10, {hydrogen, oxygen})
    bond_only = detect_failure(frames, numbers, steps=[0, 5, 10, 15], criteria=StabilityCriteria(rules=("bond",)))
    assert (bond_only.rule, bond_only.step, set(bond_only.atoms)) == ("bond", 10, {carbon, hydrogen})
    # 0.6 of the radii apart is no clash at the default factor, but is at 0.7
    near = moved_next_to(positions, hydrogen, oxygen, 0.6 * (0.31 + 0.66))
    assert detect_failure(np.stack([positions, near]), numbers, criteria=CLASH) is None
    tighter = StabilityCriteria(rules=("clash",), clash_factor=0.7)
    assert detect_failure(np.stack([positions, near]), numbers, criteria=tighter).rule == "clash"


def test_batched_detector_finds_the_same_clash_as_the_trajectory_analysis():
    systems = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4")]
    steps = [0, 10, 20, 30]
    # only the water clashes, from step 20 on: its second hydrogen falls onto the first
    water = systems[1].positions
    clashing = moved_next_to(water, 2, 1)
    trajectories = [np.stack([a.positions] * 4) for a in systems]
    trajectories[1] = np.stack([water, water, clashing, clashing])
    for criteria in (CLASH, StabilityCriteria()):
        state = build_state(
            [a.positions for a in systems],
            [a.numbers for a in systems],
            [a.get_masses() for a in systems],
            [300.0] * 3,
            [0.01] * 3,
            [1, 2, 3],
            remove_com_dof=False,
        )
        detector = FailureDetector(state, criteria)
        for t, step in enumerate(steps):
            positions = torch.as_tensor(np.concatenate([traj[t] for traj in trajectories]))
            state = detector(state.replace(positions=positions, step=step))
        online = failure_records(state, dt_fs=0.5)
        offline = [
            detect_failure(traj, a.numbers, steps=steps, forces=np.zeros_like(traj), criteria=criteria)
            for traj, a in zip(trajectories, systems)
        ]
        assert online == offline
        assert online[0] is None and online[2] is None
        assert (online[1].rule, online[1].step, online[1].atoms) == ("clash", 20, (1, 2))
        assert state.alive.tolist() == [True, False, True]


def test_batched_detector_reports_a_clash_before_the_bond_it_breaks():
    numbers, positions = ethanol()
    carbon, hydrogen = terminal_hydrogen_bond(numbers, positions)
    oxygen = int(np.flatnonzero(numbers == 8)[0])
    state = build_state(
        [positions, positions],
        [numbers, numbers],
        [np.ones(len(numbers))] * 2,
        [300.0] * 2,
        [0.01] * 2,
        [1, 2],
        remove_com_dof=False,
    )
    detector = FailureDetector(state, StabilityCriteria())
    moved = torch.as_tensor(np.concatenate([positions, moved_next_to(positions, hydrogen, oxygen)]))
    records = failure_records(detector(state.replace(positions=moved, step=7)), dt_fs=0.5)
    assert records[0] is None
    assert (records[1].rule, records[1].step, set(records[1].atoms)) == ("clash", 7, {hydrogen, oxygen})
    bond_only = FailureDetector(state, StabilityCriteria(rules=("bond",)))
    records = failure_records(bond_only(state.replace(positions=moved, step=7)), dt_fs=0.5)
    assert (records[1].rule, set(records[1].atoms)) == ("bond", {carbon, hydrogen})


@pytest.mark.parametrize("factor", [0.0, -0.5, float("nan"), float("inf"), 1.2, 1.5])
def test_clash_factor_must_be_positive_and_below_the_covalent_factor(factor):
    with pytest.raises(ValueError, match="clash_factor") as error:
        StabilityCriteria(clash_factor=factor)
    assert "\n" not in str(error.value)
    assert StabilityCriteria(clash_factor=0.9, covalent_factor=1.0).clash_factor == 0.9
