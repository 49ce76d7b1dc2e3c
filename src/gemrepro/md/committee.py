"""A committee of potentials: the mean drives the dynamics, the spread warns of a hole.

Models trained alike but from different random initialisations agree where training data were
dense and disagree where they were not, so their spread is an estimate of the error that needs
no reference calculation. :class:`CommitteePotential` is a batched potential for
:func:`gemrepro.md.run_md`: it evaluates every member, returns the mean energy and forces, and
keeps the disagreement of the last call per system. :class:`UncertaintyStop` turns that into a
stop rule ("uncertainty"); :func:`disagreement` computes the same measures in batch on stored
frames after a run.

Measures (the DeePMD-kit "model deviation"): the force disagreement of atom ``i`` is
``sqrt(mean_m |F_i^m - <F_i>|^2)`` (eV/Å), and a system's value is the maximum over its atoms,
because a hole opens at one bond; the energy spread is the standard deviation of the members'
total energies (eV).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gemrepro.md.failures import mark_failed
from gemrepro.md.state import MDState, Potential

__all__ = ["CommitteePotential", "UncertaintyStop", "disagreement"]


def _segment_max(values: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    return values.new_full((n_segments,), -torch.inf).scatter_reduce(0, segment, values, "amax")


def disagreement(
    energies: torch.Tensor, forces: torch.Tensor, system_index: torch.Tensor, n_systems: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per system: max per-atom force disagreement (eV/Å) and energy spread (eV) of a committee.

    ``energies`` (M, S) and ``forces`` (M, N, 3) hold the ``M`` members' predictions. A
    non-finite prediction makes the system's disagreement infinite: a member has left the map.
    """
    if energies.dim() != 2 or forces.dim() != 3 or energies.shape[0] != forces.shape[0] or energies.shape[0] < 2:
        raise ValueError(
            f"energies/forces: expected shapes (M, S) and (M, N, 3) with M >= 2 members, "
            f"got {tuple(energies.shape)} and {tuple(forces.shape)}"
        )
    per_atom = torch.sqrt(((forces - forces.mean(0)) ** 2).sum(-1).mean(0))
    per_atom = torch.where(torch.isfinite(per_atom), per_atom, torch.full_like(per_atom, torch.inf))
    force_disagreement = _segment_max(per_atom, system_index, n_systems)
    spread = energies.std(0, unbiased=False)
    spread = torch.where(torch.isfinite(spread), spread, torch.full_like(spread, torch.inf))
    return force_disagreement, spread


class CommitteePotential:
    """The mean energy (eV) and forces (eV/Å) of several batched potentials, with their disagreement.

    After each call :attr:`force_disagreement` (S,) and :attr:`energy_spread` (S,) describe the
    positions of that call, in the caller's dtype and device.
    """

    def __init__(self, members: Sequence[Potential]) -> None:
        members = list(members)
        if len(members) < 2 or not all(callable(m) for m in members):
            raise ValueError(f"members: expected at least two batched potentials, got {len(members)}")
        variants = [getattr(m, "variant", None) for m in members]
        if len({v for v in variants if v is not None}) > 1:
            kinds = ", ".join(f"{k}: GemNet-{v}" for k, v in enumerate(variants) if v is not None)
            raise ValueError(f"members: a committee is of one kind of model, got {kinds}")
        self.members = members
        self.force_disagreement: torch.Tensor | None = None
        self.energy_spread: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        """The first member's device (where :func:`run_md` should keep the state)."""
        return getattr(self.members[0], "device", torch.device("cpu"))

    def predictions(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's energies (M, S) and forces (M, N, 3)."""
        results = [member(positions, numbers, system_index) for member in self.members]
        return torch.stack([e for e, _ in results]), torch.stack([f for _, f in results])

    def __call__(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        energies, forces = self.predictions(positions, numbers, system_index)
        n_systems = energies.shape[1]
        self.force_disagreement, self.energy_spread = disagreement(energies, forces, system_index, n_systems)
        return energies.mean(0), forces.mean(0)


class UncertaintyStop:
    """Marks a system dead (rule "uncertainty") once its committee force disagreement exceeds ``threshold``.

    Pass it as ``run_md(..., stop=UncertaintyStop(committee, threshold))`` with ``committee`` the
    run's potential; it reads the disagreement the committee kept from its last evaluation, which
    is at the state's current positions.
    """

    def __init__(self, committee: CommitteePotential, threshold: float) -> None:
        if not isinstance(committee, CommitteePotential):
            raise ValueError(f"committee: expected a CommitteePotential, got {type(committee).__name__}")
        if not (isinstance(threshold, (int, float)) and threshold > 0 and threshold != float("inf")):
            raise ValueError(f"threshold: expected a positive force disagreement in eV/Å, got {threshold!r}")
        self.committee, self.threshold = committee, float(threshold)

    def __repr__(self) -> str:
        return f"UncertaintyStop(members={len(self.committee.members)}, threshold={self.threshold!r})"

    def __call__(self, state: MDState) -> MDState:
        value = self.committee.force_disagreement
        if value is None:
            raise ValueError("committee: it has not been evaluated yet; use it as the run's potential")
        return mark_failed(state, value.to(state.alive.device) > self.threshold, "uncertainty")
