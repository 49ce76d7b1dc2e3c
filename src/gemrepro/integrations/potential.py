"""GemNet as the batched MD engine's potential.

:class:`GemNetPotential` turns a GemNet model (a network, or an :class:`~gemrepro.model.EnergyShift`
around one with per-element reference energies, as :func:`gemrepro.model.load_model` returns) into the callable
``potential(positions, numbers, system_index) -> (energy (S,), forces (N, 3))`` that
:func:`gemrepro.md.run_md` advances. All systems go through the network as one graph batch per
step; forces come from autograd inside the model. The MD state may live in another dtype or on
another device than the model: inputs are converted on the way in, results on the way out.

The per-element reference energies of an ``EnergyShift`` (sulfur's is ~1e4 eV) are added here in
the state's dtype, not the model's, so a float32 network still yields energies resolved to
float64 precision, which the energy-conservation diagnostics of long NVE runs need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gemrepro.analysis.geometry import element_list
from gemrepro.md.state import per_system_sum
from gemrepro.model import EnergyShift, as_energy_shift, load_model, resolve_device


@dataclass
class AtomsBatch:
    """The three fields a GemNet forward pass reads (a torch_geometric ``Batch`` without the copying)."""

    z: torch.Tensor  # (N,) atomic numbers
    pos: torch.Tensor  # (N, 3) Å
    batch: torch.Tensor  # (N,) system of each atom, sorted


def known_elements(model: nn.Module) -> frozenset[int] | None:
    """Atomic numbers a trained model has per-element reference energies for: its training data's.

    ``None`` when the model keeps no such record (a bare GemNet, or an ``EnergyShift`` without
    references): then nothing can be said about which elements it has seen.
    """
    if isinstance(model, EnergyShift):
        return frozenset(model.reference_energies()) or None
    return None


def unseen_elements(numbers, elements: frozenset[int] | None) -> list[int]:
    """Atomic numbers in ``numbers`` outside ``elements`` (none when the model keeps no record)."""
    if elements is None:
        return []
    values = numbers.tolist() if isinstance(numbers, torch.Tensor) else list(numbers)
    return sorted({int(z) for z in values} - elements)


def refuse_unseen_elements(numbers, elements: frozenset[int] | None, source: str) -> None:
    """A one-line ``ValueError`` naming ``source`` when it holds elements outside ``elements``."""
    unknown = unseen_elements(numbers, elements)
    if unknown:
        raise ValueError(
            f"{source}: holds {element_list(unknown)}, which the model was not trained on "
            f"(it knows {element_list(elements)})"
        )


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of a model's weights (float32 for a model without any)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@dataclass
class _Topology:
    numbers: torch.Tensor  # as passed by the engine (identity is the cache key)
    system_index: torch.Tensor
    z: torch.Tensor  # on the model's device
    batch: torch.Tensor
    n_systems: int
    reference_energy: torch.Tensor  # (S,) float64 sum of element references, on the caller's device


class GemNetPotential:
    """Batched energies (eV) and forces (eV/Å) of a GemNet model, for :func:`gemrepro.md.run_md`.

    ``model`` is a GemNet (``forward(data) -> {"energy", "forces"}``) or an ``EnergyShift`` around
    one. It is moved to ``device`` (``"auto"``: CUDA when available), cast to ``dtype`` when given,
    and put in eval mode (the model returns detached results then, so no autograd graph outlives
    a step).

    A trained model knows which elements it saw (:func:`known_elements`); systems holding any
    other are refused with a ``ValueError`` (an unseen element would get a zero reference energy
    and an untrained embedding, and the run would look fine). ``allow_unknown_elements`` lifts the
    refusal for a user who wants to see what happens; :meth:`unknown_elements` says what is unseen.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        dtype: torch.dtype | None = None,
        allow_unknown_elements: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module (GemNet or EnergyShift), got {type(model).__name__}")
        self.device = resolve_device(device)
        model = as_energy_shift(model).to(self.device)
        if dtype is not None:
            if not dtype.is_floating_point:
                raise ValueError(f"dtype: expected a floating torch dtype, got {dtype}")
            model = model.to(dtype)
        self.model = model.eval()
        # The network proper; the element references are added by ``__call__``, in float64.
        self.network: nn.Module = model.model
        self.element_energies = model.element_energies.detach().double()
        self.dtype = model_dtype(self.network)
        self.elements = known_elements(model)
        self.allow_unknown_elements = bool(allow_unknown_elements)
        self._topology: _Topology | None = None

    @property
    def variant(self) -> str | None:
        """``"T"`` or ``"Q"`` for a GemNet, None for a network without a GemNet config."""
        return getattr(getattr(self.network, "config", None), "variant", None)

    def unknown_elements(self, numbers) -> list[int]:
        """Atomic numbers in ``numbers`` the model was not trained on (empty when it keeps no record)."""
        return unseen_elements(numbers, self.elements)

    def check_elements(self, numbers, source: str) -> None:
        """A one-line ``ValueError`` naming ``source`` when it holds elements the model never saw."""
        if not self.allow_unknown_elements:
            refuse_unseen_elements(numbers, self.elements, source)

    def _topology_of(self, numbers: torch.Tensor, system_index: torch.Tensor) -> _Topology:
        """What depends only on which atoms form which system, computed once per run.

        The engine passes the same ``numbers`` and ``system_index`` tensors at every step, so the
        copies to the model's device, the system count (a host synchronisation) and the reference
        energy of each system are reused until other tensors arrive.
        """
        cached = self._topology
        if cached is not None and cached.numbers is numbers and cached.system_index is system_index:
            return cached
        self.check_elements(numbers, "numbers")
        z = numbers.to(device=self.device, dtype=torch.long)
        batch = system_index.to(device=self.device, dtype=torch.long)
        n_systems = int(system_index[-1]) + 1 if len(system_index) else 0
        per_atom = self.element_energies.to(numbers.device)[numbers.long()]
        reference = per_system_sum(per_atom, system_index, n_systems)
        self._topology = _Topology(numbers, system_index, z, batch, n_systems, reference)
        return self._topology

    def __call__(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() != 2 or positions.shape[1] != 3 or numbers.shape != positions.shape[:1]:
            raise ValueError(
                f"positions/numbers: expected shapes (N, 3) and (N,), got {tuple(positions.shape)} and {tuple(numbers.shape)}"
            )
        topology = self._topology_of(numbers, system_index)
        data = AtomsBatch(
            z=topology.z, pos=positions.detach().to(device=self.device, dtype=self.dtype), batch=topology.batch
        )
        result = self.network(data)
        out: dict[str, Any] = dict(device=positions.device, dtype=positions.dtype)
        energy, forces = result["energy"].detach().to(**out), result["forces"].detach().to(**out)
        return energy + topology.reference_energy.to(**out), forces


def potential_from_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    allow_unknown_elements: bool = False,
) -> GemNetPotential:
    """The batched MD potential of a model file (see :func:`gemrepro.model.load_model`)."""
    return GemNetPotential(
        load_model(path, device), device=device, dtype=dtype, allow_unknown_elements=allow_unknown_elements
    )
