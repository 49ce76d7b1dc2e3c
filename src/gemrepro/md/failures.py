"""The stability rules of :mod:`gemrepro.analysis.stability`, evaluated on a whole batch at once.

Bond, hydrogen-pair and atom-pair (clash) lists are built once from each system's start
structure with the same functions the trajectory analysis uses; every check is then a handful of
tensor operations with no host synchronisation, so it can run at every step, also on a GPU.
"""

from __future__ import annotations

import torch

from gemrepro.analysis.stability import (
    PRIORITY,
    RULES,
    FailureRecord,
    StabilityCriteria,
    atom_pairs,
    bond_deviation,
    distance_ratios,
    hydrogen_heavy_pairs,
    reference_bonds,
)
from gemrepro.md.state import MDState, kinetic_temperature

STOP_RULES: tuple[str, ...] = (*RULES, "uncertainty")
"""Every reason the engine can stop a system: the geometric rules, then a committee's stop on its
own disagreement (:class:`gemrepro.md.committee.UncertaintyStop`). ``state.failure_rule`` holds
1 + an index into this tuple, so the codes of :data:`RULES` are their own; "uncertainty" comes last
and its code moves when a rule is added (7 since "clash"). Codes never leave a run unconverted:
trajectory files store rule names, and a checkpoint's fingerprint holds the criteria's ``repr``."""


def _segment_max(values: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Per-segment maximum (``-inf`` for empty segments)."""
    return values.new_full((n_segments,), -torch.inf).scatter_reduce(0, segment, values, "amax")


def _segment_argmax(values: torch.Tensor, segment: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
    """Index of the first element reaching its segment's ``maximum`` (``len(values)`` when none)."""
    positions = torch.arange(len(values), device=values.device)
    candidates = torch.where(values == maximum[segment], positions, len(values))
    first = torch.full(maximum.shape, len(values), dtype=torch.long, device=values.device)
    return first.scatter_reduce(0, segment, candidates, "amin")


def _finite_or_minus_inf(values: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(values), values, torch.full_like(values, -torch.inf))


class FailureDetector:
    """Marks systems dead at the first step that breaks one of ``criteria``'s rules."""

    def __init__(self, state: MDState, criteria: StabilityCriteria) -> None:
        self.criteria = criteria
        device = state.positions.device
        offsets = state.atom_offsets().cpu()
        numbers = state.numbers.cpu().numpy()
        reference = state.reference_positions.detach().cpu().double().numpy()
        bonds, lengths, bond_system, pairs = [], [], [], []
        clash_pairs, radius_sums, clash_system = [], [], []
        for s in range(state.n_systems):
            start, stop = int(offsets[s]), int(offsets[s + 1])
            b, r = reference_bonds(numbers[start:stop], reference[start:stop], criteria.covalent_factor)
            bonds.append(torch.as_tensor(b) + start)
            lengths.append(torch.as_tensor(r))
            bond_system.append(torch.full((len(b),), s, dtype=torch.long))
            pairs.append(torch.as_tensor(hydrogen_heavy_pairs(numbers[start:stop])) + start)
            if "clash" in criteria.rules:  # every intra-system pair i < j; molecules are small
                p, r = atom_pairs(numbers[start:stop])
                clash_pairs.append(torch.as_tensor(p) + start)
                radius_sums.append(torch.as_tensor(r))
                clash_system.append(torch.full((len(p),), s, dtype=torch.long))
        self.offsets = offsets.to(device)
        self.bonds = torch.cat(bonds).reshape(-1, 2).to(device)
        self.ref_lengths = torch.cat(lengths).to(device=device, dtype=state.positions.dtype)
        self.bond_system = torch.cat(bond_system).to(device)
        self.h_pairs = torch.cat(pairs).reshape(-1, 2).to(device)
        self.is_hydrogen = torch.zeros(len(numbers), dtype=torch.bool, device=device)
        self.is_hydrogen[self.h_pairs[:, 0]] = True  # hydrogens that have a heavy atom to lose
        self.clash_pairs = torch.cat(clash_pairs or [torch.zeros(0, 2, dtype=torch.long)]).reshape(-1, 2).to(device)
        self.radius_sums = torch.cat(radius_sums or [torch.zeros(0)]).to(device=device, dtype=state.positions.dtype)
        self.clash_system = torch.cat(clash_system or [torch.zeros(0, dtype=torch.long)]).to(device)

    def __call__(self, state: MDState) -> MDState:
        """The state with newly failed systems marked dead at ``state.step``.

        The per-system worst values are cheap; the offending atoms are only located when some
        system has just failed (one host synchronisation per check).
        """
        n, rules, criteria = state.n_systems, self.criteria.rules, self.criteria
        system_index = state.system_index
        # rule code -> (flags (S,), per-element values or None, their segment, maximum per system)
        checks: dict[int, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]] = {}
        if "nonfinite" in rules:
            bad_atom = ~(torch.isfinite(state.positions).all(-1) & torch.isfinite(state.forces).all(-1))
            values = bad_atom.to(state.positions.dtype)
            worst = _segment_max(values, system_index, n)
            checks[RULES.index("nonfinite") + 1] = (
                (worst > 0) | ~torch.isfinite(state.energy),
                values,
                system_index,
                worst,
            )
        if "force" in rules:
            values = _finite_or_minus_inf(torch.linalg.vector_norm(state.forces, dim=-1))
            worst = _segment_max(values, system_index, n)
            checks[RULES.index("force") + 1] = (worst > criteria.max_force, values, system_index, worst)
        if "bond" in rules and len(self.bonds):
            values = _finite_or_minus_inf(bond_deviation(state.positions, self.bonds, self.ref_lengths))
            worst = _segment_max(values, self.bond_system, n)
            checks[RULES.index("bond") + 1] = (worst > criteria.bond_tolerance, values, self.bond_system, worst)
        if "clash" in rules and len(self.clash_pairs):
            # clash_factor - d_ij / (r_i + r_j): positive when clashing, largest for the closest pair
            ratio = distance_ratios(state.positions, self.clash_pairs, self.radius_sums)
            values = _finite_or_minus_inf(criteria.clash_factor - ratio)
            worst = _segment_max(values, self.clash_system, n)
            checks[RULES.index("clash") + 1] = (worst > 0, values, self.clash_system, worst)
        if "hydrogen_loss" in rules and len(self.h_pairs):
            h, heavy = self.h_pairs[:, 0], self.h_pairs[:, 1]
            distance = torch.linalg.vector_norm(state.positions[h] - state.positions[heavy], dim=-1)
            distance = torch.where(torch.isnan(distance), torch.inf, distance)
            nearest = torch.full_like(state.masses, torch.inf).scatter_reduce(0, h, distance, "amin")
            values = _finite_or_minus_inf(torch.where(self.is_hydrogen, nearest, -torch.inf))
            worst = _segment_max(values, system_index, n)
            checks[RULES.index("hydrogen_loss") + 1] = (worst > criteria.hydrogen_cutoff, values, system_index, worst)
        if "temperature" in rules:
            low, high = criteria.temperature_bounds  # type: ignore[misc]
            temperature = kinetic_temperature(state)
            checks[RULES.index("temperature") + 1] = ((temperature < low) | (temperature > high), None, None, None)

        rule = torch.zeros(n, dtype=torch.long, device=system_index.device)
        # highest priority (first in PRIORITY, whatever its code) written last
        for code in sorted(checks, key=lambda c: PRIORITY.index(RULES[c - 1]), reverse=True):
            rule = torch.where(checks[code][0], code, rule)
        # a system fails once: one that failed before and is still integrated (run_md's
        # after_failure="continue") keeps its first record; in a frozen run failure_rule == 0 iff alive
        newly = state.alive & (state.failure_rule == 0) & (rule > 0)
        if not bool(newly.any()):
            return state
        atoms = torch.full((n, 2), -1, dtype=torch.long, device=system_index.device)
        start = self.offsets[:-1]
        for code, (flags, element_values, segment, maximum) in checks.items():
            if element_values is None:
                continue
            assert segment is not None and maximum is not None  # a check has all three or none (temperature)
            first = _segment_argmax(element_values, segment, maximum)
            found = (rule == code) & (first < len(element_values))
            first = first.clamp_max(len(element_values) - 1)
            if code == RULES.index("bond") + 1:
                pair = self.bonds[first] - start[:, None]
            elif code == RULES.index("clash") + 1:
                pair = self.clash_pairs[first] - start[:, None]
            else:
                pair = torch.stack([first - start, torch.full_like(first, -1)], dim=1)
            atoms = torch.where(found[:, None], pair, atoms)
        return state.replace(
            alive=state.alive & ~newly,
            failure_step=torch.where(newly, state.step, state.failure_step),
            failure_rule=torch.where(newly, rule, state.failure_rule),
            failure_atoms=torch.where(newly[:, None], atoms, state.failure_atoms),
        )


def mark_failed(state: MDState, failed: torch.Tensor, rule: str, atoms: torch.Tensor | None = None) -> MDState:
    """The state with the still-alive systems flagged in ``failed`` (S,) marked dead by ``rule`` now.

    A system that has failed before keeps its first record (it can still be alive when
    :func:`~gemrepro.md.runner.run_md` continues failed systems).

    ``atoms`` (S, 2), indices within each system (-1 padded), names the offending atoms if known.
    """
    if rule not in STOP_RULES:
        raise ValueError(f"rule: expected one of {STOP_RULES}, got {rule!r}")
    newly = state.alive & (state.failure_rule == 0) & failed.to(torch.bool)  # never overwrites a first failure
    if atoms is None:
        atoms = torch.full_like(state.failure_atoms, -1)
    code = STOP_RULES.index(rule) + 1
    return state.replace(
        alive=state.alive & ~newly,
        failure_step=torch.where(newly, state.step, state.failure_step),
        failure_rule=torch.where(newly, code, state.failure_rule),
        failure_atoms=torch.where(newly[:, None], atoms, state.failure_atoms),
    )


def failure_records(state: MDState, dt_fs: float) -> list[FailureRecord | None]:
    """Per system, its :class:`FailureRecord` or ``None`` while it is alive."""
    records: list[FailureRecord | None] = []
    for step, rule, atoms in zip(
        state.failure_step.tolist(), state.failure_rule.tolist(), state.failure_atoms.tolist(), strict=True
    ):
        if rule == 0:
            records.append(None)
            continue
        records.append(
            FailureRecord(
                step=step,
                time_ps=step * dt_fs / 1000.0,
                rule=STOP_RULES[rule - 1],
                atoms=tuple(a for a in atoms if a >= 0),
            )
        )
    return records
