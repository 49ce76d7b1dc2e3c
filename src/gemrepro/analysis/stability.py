"""When does a molecular-dynamics trajectory stop being physical?

One detector with explicit rules, each switched on by name in :class:`StabilityCriteria`:

``"nonfinite"``
    a position, the energy or a force is NaN or infinite.
``"force"``
    some atom's force norm exceeds ``max_force`` (eV/Å); a model that has left its training
    distribution often blows up this way before any bond breaks.
``"bond"``
    the rule of MDsim (Fu et al., "Forces are Not Enough"): the bonds of the *start* structure,
    taken from covalent radii, must keep their length within ``bond_tolerance`` (0.5 Å).
    A pair is bonded when its distance is below ``covalent_factor`` (1.2, a common tolerance for
    covalent-radius bond perception) times the sum of the two covalent radii
    (``ase.data.covalent_radii``).
``"hydrogen_loss"``
    a hydrogen farther than ``hydrogen_cutoff`` (2.5 Å) from every heavy atom of its molecule,
    as MLIP Audit defines it. Molecules without heavy atoms cannot lose a hydrogen.
``"temperature"``
    the kinetic temperature leaves ``temperature_bounds`` (K).
``"clash"``
    two atoms of the same molecule come closer than ``clash_factor`` (0.5) times the sum of their
    covalent radii, ``d_ij < clash_factor * (r_i + r_j)``, for any pair, bonded or not. Real
    bonds sit far above that ratio: the shortest bond, H–H at 0.74 Å, is 1.19 times
    2 x 0.31 Å, C–H (1.09 Å) and O–H (0.96 Å) are about 1.0, and even the tightest bonds
    relative to their radii, triple bonds such as N≡N (1.10 Å) or C≡C (1.20 Å), stay near 0.78,
    so vibrations never reach 0.5, while atoms collapsing onto each other pass straight through
    it (a "force" or "bond" rule may miss them: a model can pull two atoms together with modest
    forces, and a non-bonded pair has no reference length). ``clash_factor`` must be below
    ``covalent_factor``, so a clash always lies well inside bonding distance.

When several rules fire in the same frame, the first in :data:`PRIORITY` order is reported, so a
NaN is never reported as a broken bond, and two fused atoms are reported as a clash rather than as
the bond their collapse usually also breaks. Each failure names its offending atoms: the closest
pair for a clash, the atom pair of the most deviating bond, the hydrogen farthest from any heavy
atom, the atom with the largest force or the first non-finite atom; the temperature rule names
none.

The geometric helpers (:func:`bond_lengths`, :func:`bond_deviation`, :func:`distance_ratios`)
accept numpy arrays and torch tensors alike, so the batched MD engine uses the same definitions as
the analysis of trajectories on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from ase.data import covalent_radii

RULES: tuple[str, ...] = ("nonfinite", "force", "bond", "hydrogen_loss", "temperature", "clash")
"""All rules. The batched engine stores a failure as 1 + an index into this tuple
(:data:`gemrepro.md.failures.STOP_RULES`), so a new rule is appended and the codes of the others
stay as they were; the order says nothing about priority (see :data:`PRIORITY`)."""

PRIORITY: tuple[str, ...] = ("nonfinite", "force", "clash", "bond", "hydrogen_loss", "temperature")
"""The rule reported when several fire in the same frame: the first of them in this order."""

DEFAULT_RULES: tuple[str, ...] = ("nonfinite", "force", "clash", "bond", "hydrogen_loss")
"""Rules on by default; the temperature rule needs bounds chosen for the experiment."""

assert sorted(PRIORITY) == sorted(RULES), "every rule needs a place in PRIORITY"


@dataclass(frozen=True)
class StabilityCriteria:
    """Which rules are checked, and their thresholds (Å, eV/Å, K)."""

    rules: tuple[str, ...] = DEFAULT_RULES
    bond_tolerance: float = 0.5
    covalent_factor: float = 1.2
    hydrogen_cutoff: float = 2.5
    max_force: float = 1e3
    temperature_bounds: tuple[float, float] | None = None
    clash_factor: float = 0.5

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        unknown = [r for r in rules if r not in RULES]
        if unknown:
            raise ValueError(f"criteria.rules: unknown rule(s) {unknown}; expected names from {RULES}")
        for name in ("bond_tolerance", "covalent_factor", "hydrogen_cutoff", "max_force", "clash_factor"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"criteria.{name}: expected a positive finite number, got {value!r}")
        if not self.clash_factor < self.covalent_factor:
            raise ValueError(
                f"criteria.clash_factor: expected a value below covalent_factor ({self.covalent_factor!r}), "
                f"got {self.clash_factor!r}"
            )
        if "temperature" in rules:
            bounds = self.temperature_bounds
            if bounds is None or len(bounds) != 2 or not (0 <= bounds[0] < bounds[1]):
                raise ValueError(
                    "criteria.temperature_bounds: the 'temperature' rule needs (low, high) in K "
                    f"with 0 <= low < high, got {bounds!r}"
                )


@dataclass(frozen=True)
class FailureRecord:
    """The first failure of a trajectory: when, by which rule, and which atoms (0-based)."""

    step: int
    time_ps: float
    rule: str
    atoms: tuple[int, ...]


def _as_numbers_positions(numbers: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64)
    if numbers.ndim != 1:
        raise ValueError(f"numbers: expected a 1-d array of atomic numbers, got shape {numbers.shape}")
    if positions.shape != (len(numbers), 3):
        raise ValueError(f"positions: expected shape ({len(numbers)}, 3), got {positions.shape}")
    if numbers.min(initial=1) < 1 or numbers.max(initial=1) >= len(covalent_radii):
        raise ValueError("numbers: expected atomic numbers between 1 and 118")
    return numbers, positions


def reference_bonds(numbers: Any, positions: Any, covalent_factor: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """Bonds ``(B, 2)`` (i < j) of one structure and their lengths ``(B,)`` in Å.

    A pair is bonded when ``d_ij < covalent_factor * (r_i + r_j)`` with covalent radii ``r``.
    """
    numbers, positions = _as_numbers_positions(numbers, positions)
    radii = covalent_radii[numbers]
    i, j = np.triu_indices(len(numbers), k=1)
    lengths = np.linalg.norm(positions[i] - positions[j], axis=-1)
    bonded = lengths < covalent_factor * (radii[i] + radii[j])
    return np.stack([i[bonded], j[bonded]], axis=1).astype(np.int64), lengths[bonded]


def bond_lengths(positions: Any, bonds: Any) -> Any:
    """Lengths ``(..., B)`` of ``bonds`` in ``positions (..., N, 3)``; numpy or torch."""
    delta = positions[..., bonds[:, 0], :] - positions[..., bonds[:, 1], :]
    return ((delta * delta).sum(-1)) ** 0.5


def bond_deviation(positions: Any, bonds: Any, ref_lengths: Any) -> Any:
    """``|length - reference length|`` ``(..., B)`` of every reference bond; numpy or torch."""
    return abs(bond_lengths(positions, bonds) - ref_lengths)


def atom_pairs(numbers: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every atom pair ``(P, 2)`` (i < j, in ``np.triu_indices`` order) of one molecule and the
    sums of the two covalent radii ``(P,)`` in Å."""
    numbers = np.asarray(numbers, dtype=np.int64)
    i, j = np.triu_indices(len(numbers), k=1)
    radii = covalent_radii[numbers]
    return np.stack([i, j], axis=1).astype(np.int64), radii[i] + radii[j]


def distance_ratios(positions: Any, pairs: Any, radius_sums: Any) -> Any:
    """``d_ij / (r_i + r_j)`` ``(..., P)`` of ``pairs`` in ``positions (..., N, 3)``; numpy or torch."""
    return bond_lengths(positions, pairs) / radius_sums


def closest_pair(numbers: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the smallest ``d_ij / (r_i + r_j)`` over all atom pairs and that pair (i < j).

    ``positions`` is ``(N, 3)`` or ``(T, N, 3)``; returns the ratios ``(...)`` and the pairs
    ``(..., 2)``. Non-finite distances count as infinitely far; with fewer than two atoms the
    ratio is ``inf`` and the pair ``(-1, -1)``.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64)
    pairs, sums = atom_pairs(numbers)
    if len(pairs) == 0:
        shape = positions.shape[:-2]
        return np.full(shape, np.inf), np.full(shape + (2,), -1, dtype=np.int64)
    ratios = distance_ratios(positions, pairs, sums)
    ratios = np.where(np.isfinite(ratios), ratios, np.inf)
    first = np.argmin(ratios, axis=-1)
    return np.take_along_axis(ratios, first[..., None], axis=-1)[..., 0], pairs[first]


def hydrogen_heavy_pairs(numbers: Any) -> np.ndarray:
    """All (hydrogen, heavy atom) index pairs ``(P, 2)`` of one molecule."""
    numbers = np.asarray(numbers)
    hydrogens = np.flatnonzero(numbers == 1)
    heavy = np.flatnonzero(numbers > 1)
    h, x = np.meshgrid(hydrogens, heavy, indexing="ij")
    return np.stack([h.ravel(), x.ravel()], axis=1).astype(np.int64)


def hydrogen_heavy_distance(numbers: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the hydrogens and, per frame, each one's distance to its nearest heavy atom.

    ``positions`` is ``(N, 3)`` or ``(T, N, 3)``; the distances have shape ``(..., n_H)``.
    Without heavy atoms the index array is empty.
    """
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    hydrogens = np.flatnonzero(numbers == 1)
    heavy = np.flatnonzero(numbers > 1)
    if len(heavy) == 0 or len(hydrogens) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(positions.shape[:-2] + (0,))
    delta = positions[..., hydrogens, None, :] - positions[..., None, heavy, :]
    return hydrogens, np.linalg.norm(delta, axis=-1).min(axis=-1)


def detect_failure(
    positions: Any,
    numbers: Any,
    *,
    steps: Sequence[int] | None = None,
    times_ps: Sequence[float] | None = None,
    dt_fs: float = 0.5,
    reference_positions: Any = None,
    energies: Any = None,
    forces: Any = None,
    temperatures: Any = None,
    criteria: StabilityCriteria | None = None,
) -> FailureRecord | None:
    """First failing frame of one trajectory, or ``None`` when every frame passes.

    ``positions`` is ``(T, N, 3)`` in Å; ``energies (T,)``, ``forces (T, N, 3)`` and
    ``temperatures (T,)`` are needed exactly when their rule is on. Bonds come from
    ``reference_positions`` (default: the first frame). ``steps`` defaults to ``0..T-1`` and
    ``times_ps`` to ``steps * dt_fs / 1000``.
    """
    criteria = criteria or StabilityCriteria()
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions: expected shape (frames, atoms, 3), got {positions.shape}")
    n_frames, n_atoms = positions.shape[:2]
    if n_frames == 0:
        return None
    reference = positions[0] if reference_positions is None else reference_positions
    numbers, reference = _as_numbers_positions(numbers, reference)
    if len(numbers) != n_atoms:
        raise ValueError(f"numbers: expected {n_atoms} atomic numbers to match positions, got {len(numbers)}")
    steps_arr = np.arange(n_frames) if steps is None else np.asarray(steps, dtype=np.int64)
    if steps_arr.shape != (n_frames,):
        raise ValueError(f"steps: expected {n_frames} entries, got shape {steps_arr.shape}")
    times = steps_arr * dt_fs / 1000.0 if times_ps is None else np.asarray(times_ps, dtype=np.float64)

    def need(rule: str, value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if value is None:
            raise ValueError(f"{name}: the '{rule}' rule needs {name}; pass it or drop '{rule}' from criteria.rules")
        array = np.asarray(value, dtype=np.float64)
        if array.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")
        return array

    failed: dict[str, np.ndarray] = {}
    atoms_of: dict[str, Any] = {}
    if "nonfinite" in criteria.rules:
        bad_atom = ~np.isfinite(positions).all(axis=-1)
        bad_frame = bad_atom.any(axis=-1)
        if energies is not None:
            bad_frame |= ~np.isfinite(need("nonfinite", energies, "energies", (n_frames,)))
        if forces is not None:
            bad_atom |= ~np.isfinite(need("nonfinite", forces, "forces", positions.shape)).all(axis=-1)
        failed["nonfinite"] = bad_frame | bad_atom.any(axis=-1)
        atoms_of["nonfinite"] = lambda t: tuple(int(a) for a in np.flatnonzero(bad_atom[t])[:1])
    if "force" in criteria.rules:
        norms = np.linalg.norm(need("force", forces, "forces", positions.shape), axis=-1)
        norms = np.where(np.isfinite(norms), norms, -np.inf)
        failed["force"] = cast(np.ndarray, (norms > criteria.max_force).any(axis=-1))
        atoms_of["force"] = lambda t: (int(np.argmax(norms[t])),)
    if "bond" in criteria.rules:
        bonds, ref = reference_bonds(numbers, reference, criteria.covalent_factor)
        deviation = bond_deviation(positions, bonds, ref)
        deviation = np.where(np.isfinite(deviation), deviation, -np.inf)
        failed["bond"] = cast(np.ndarray, (deviation > criteria.bond_tolerance).any(axis=-1))
        atoms_of["bond"] = lambda t: tuple(int(a) for a in bonds[np.argmax(deviation[t])])
    if "clash" in criteria.rules:
        ratio, closest = closest_pair(numbers, positions)
        failed["clash"] = ratio < criteria.clash_factor
        atoms_of["clash"] = lambda t: tuple(int(a) for a in closest[t])
    if "hydrogen_loss" in criteria.rules:
        hydrogens, nearest = hydrogen_heavy_distance(numbers, positions)
        nearest = np.where(np.isfinite(nearest), nearest, -np.inf)
        failed["hydrogen_loss"] = cast(np.ndarray, (nearest > criteria.hydrogen_cutoff).any(axis=-1))
        atoms_of["hydrogen_loss"] = lambda t: (int(hydrogens[np.argmax(nearest[t])]),)
    if "temperature" in criteria.rules:
        temps = need("temperature", temperatures, "temperatures", (n_frames,))
        low, high = criteria.temperature_bounds  # type: ignore[misc]
        failed["temperature"] = (temps < low) | (temps > high)
        atoms_of["temperature"] = lambda t: ()

    any_failed = np.zeros(n_frames, dtype=bool)
    for flags in failed.values():
        any_failed |= flags
    if not any_failed.any():
        return None
    frame = int(np.argmax(any_failed))
    rule = next(r for r in PRIORITY if r in failed and failed[r][frame])
    return FailureRecord(
        step=int(steps_arr[frame]), time_ps=float(times[frame]), rule=rule, atoms=atoms_of[rule](frame)
    )
