"""Per-element reference energies added to a model's output.

A molecule's (atomization or total) energy is mostly a sum of per-element constants; fitting
those once by least squares (``gemrepro.data.torch_dataset.fit_element_references``) leaves
the network only the residual. ``EnergyShift`` wraps any model with the forward contract
``model(batch) -> {"energy": (n_graphs,), "forces": (n_atoms, 3)}`` and adds
``Σ_i e_{Z_i}`` to each molecule's energy. The shift does not depend on positions, so forces
are untouched. The references live in the buffer ``element_energies`` (indexed by atomic
number), hence in ``state_dict()``: they are saved with every checkpoint and trained model,
and applied whenever the wrapped model is used for inference (MD, evaluation). It is the one
per-element energy mechanism of the project: networks themselves hold none.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

__all__ = ["EnergyShift", "MAX_ATOMIC_NUMBER", "as_energy_shift", "nonzero_references"]

MAX_ATOMIC_NUMBER = 118


class EnergyShift(nn.Module):
    """``energy = model(batch)["energy"] + Σ_atoms element_energies[z]`` (eV)."""

    def __init__(self, model: nn.Module, element_energies: dict[int, float] | None = None):
        super().__init__()
        self.model = model
        self.register_buffer("element_energies", torch.zeros(MAX_ATOMIC_NUMBER + 1, dtype=torch.float64))
        if element_energies:
            self.set_element_energies(element_energies)

    def _apply(self, fn, recurse=True):
        # ``.to(float32)`` would round references of heavy elements (S: ~1e4 eV) to ~1 meV;
        # keep them float64 and follow only device moves.
        references = self.element_energies
        super()._apply(fn, recurse)
        self.element_energies = references.to(device=self.element_energies.device)
        return self

    @property
    def config(self):
        """The wrapped model's configuration (if it has one)."""
        return getattr(self.model, "config", None)

    @torch.no_grad()
    def set_element_energies(self, element_energies: dict[int, float]) -> None:
        self.element_energies.zero_()
        for z, energy in element_energies.items():
            if not 1 <= int(z) <= MAX_ATOMIC_NUMBER:
                raise ValueError(f"element_energies: expected atomic numbers 1..{MAX_ATOMIC_NUMBER}, got {z}")
            self.element_energies[int(z)] = float(energy)

    def reference_energies(self) -> dict[int, float]:
        """The non-zero per-element references, ``{Z: eV}``."""
        return nonzero_references(self.element_energies.detach().cpu())

    def forward(self, data) -> dict[str, torch.Tensor]:
        out = dict(self.model(data))
        energy = out["energy"]
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros_like(data.z)
        shift = scatter(self.element_energies[data.z], batch, dim=0, dim_size=energy.shape[0], reduce="sum")
        out["energy"] = energy + shift.to(energy.dtype)
        return out


def nonzero_references(table: torch.Tensor) -> dict[int, float]:
    """``{Z: eV}`` of a reference table indexed by atomic number, where it is not zero."""
    return {int(z): float(table[z]) for z in torch.nonzero(table).flatten()}


def as_energy_shift(model: nn.Module) -> EnergyShift:
    """``model`` itself when it is an ``EnergyShift``, else an ``EnergyShift`` around it without references."""
    return model if isinstance(model, EnergyShift) else EnergyShift(model)
