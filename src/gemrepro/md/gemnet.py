"""GemNet as the batched MD engine's potential.

:class:`GemNetPotential` turns a GemNet model (bare, or wrapped in
:class:`~gemrepro.train.EnergyShift` with per-element reference energies) into the callable
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

import torch
from torch import nn

from gemrepro.md.state import per_system_sum
from gemrepro.model import resolve_device
from gemrepro.model.checkpoint import model_from_payload, read_checkpoint
from gemrepro.train import EnergyShift, load_trained_model
from gemrepro.train.checkpoint import TRAINED_MODEL_FORMAT


@dataclass
class AtomsBatch:
    """The three fields a GemNet forward pass reads (a torch_geometric ``Batch`` without the copying)."""

    z: torch.Tensor  # (N,) atomic numbers
    pos: torch.Tensor  # (N, 3) Å
    batch: torch.Tensor  # (N,) system of each atom, sorted


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
    reference_energy: torch.Tensor | None  # (S,) float64 sum of element references, on the caller's device


class GemNetPotential:
    """Batched energies (eV) and forces (eV/Å) of a GemNet model, for :func:`gemrepro.md.run_md`.

    ``model`` is a GemNet (``forward(data) -> {"energy", "forces"}``) or an ``EnergyShift`` around
    one. It is moved to ``device`` (``"auto"``: CUDA when available), cast to ``dtype`` when given,
    and put in eval mode (the model returns detached results then, so no autograd graph outlives
    a step).
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "auto", dtype: torch.dtype | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module (GemNet or EnergyShift), got {type(model).__name__}")
        self.device = resolve_device(device)
        model = model.to(self.device)
        if dtype is not None:
            if not dtype.is_floating_point:
                raise ValueError(f"dtype: expected a floating torch dtype, got {dtype}")
            model = model.to(dtype)
        self.model = model.eval()
        # The network proper; the element references of an EnergyShift are added by ``__call__``.
        if isinstance(model, EnergyShift):
            self.network: nn.Module = model.model
            self.element_energies: torch.Tensor | None = model.element_energies.detach().double()
        else:
            self.network, self.element_energies = model, None
        self.dtype = model_dtype(self.network)
        self._topology: _Topology | None = None

    def _topology_of(self, numbers: torch.Tensor, system_index: torch.Tensor) -> _Topology:
        """What depends only on which atoms form which system, computed once per run.

        The engine passes the same ``numbers`` and ``system_index`` tensors at every step, so the
        copies to the model's device, the system count (a host synchronisation) and the reference
        energy of each system are reused until other tensors arrive.
        """
        cached = self._topology
        if cached is not None and cached.numbers is numbers and cached.system_index is system_index:
            return cached
        z = numbers.to(device=self.device, dtype=torch.long)
        batch = system_index.to(device=self.device, dtype=torch.long)
        n_systems = int(system_index[-1]) + 1 if len(system_index) else 0
        reference = None
        if self.element_energies is not None:
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
        data = AtomsBatch(z=topology.z, pos=positions.detach().to(device=self.device, dtype=self.dtype),
                          batch=topology.batch)
        result = self.network(data)
        out = dict(device=positions.device, dtype=positions.dtype)
        energy, forces = result["energy"].detach().to(**out), result["forces"].detach().to(**out)
        if topology.reference_energy is not None:
            energy = energy + topology.reference_energy.to(**out)
        return energy, forces


def load_potential_model(path: str | os.PathLike, device: str | torch.device = "auto") -> nn.Module:
    """A model file of either kind, in eval mode on ``device``.

    Trained models (``gemrepro.train.save_trained_model``) come back wrapped in their
    ``EnergyShift``; bare model files (``gemrepro.model.save_model``) as they are.
    """
    payload = read_checkpoint(path)
    if isinstance(payload, dict) and payload.get("format") == TRAINED_MODEL_FORMAT:
        return load_trained_model(path).to(resolve_device(device)).eval()
    return model_from_payload(payload, path, device)


def potential_from_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "auto", dtype: torch.dtype | None = None
) -> GemNetPotential:
    """The batched MD potential of a trained-model or bare model file (see :func:`load_potential_model`)."""
    return GemNetPotential(load_potential_model(path, device), device=device, dtype=dtype)
