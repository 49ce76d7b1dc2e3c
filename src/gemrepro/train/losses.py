"""The papers' training loss: forces dominate, energies anchor.

GemNet's reference training (and Stocker et al.: "AE weight 0.1 %, forces 99.9 %") weighs
a force term of 0.999 against an energy term of 0.001. The force term is the mean over atoms
of the Euclidean norm of the per-atom force error, ‖F_pred − F_ref‖₂ (not the mean over
components, which is what the papers *report* as force MAE); the energy term is the mean
absolute error per molecule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EnergyForceLoss", "energy_mae", "force_norm_error"]


def force_norm_error(predicted: Tensor, reference: Tensor) -> Tensor:
    """Mean over atoms of ‖F_pred − F_ref‖₂ (eV/Å); forces have shape (n_atoms, 3)."""
    if predicted.shape != reference.shape or predicted.shape[-1:] != (3,):
        raise ValueError(
            f"forces: expected matching (n_atoms, 3) shapes, got {tuple(predicted.shape)} and {tuple(reference.shape)}"
        )
    return torch.linalg.vector_norm(predicted - reference, dim=-1).mean()


def energy_mae(predicted: Tensor, reference: Tensor) -> Tensor:
    """Mean absolute energy error per molecule (eV)."""
    predicted, reference = predicted.reshape(-1), reference.reshape(-1)
    if predicted.shape != reference.shape:
        raise ValueError(
            f"energy: expected one value per molecule, got {predicted.numel()} predictions "
            f"for {reference.numel()} references"
        )
    return (predicted - reference).abs().mean()


@dataclass(frozen=True)
class EnergyForceLoss:
    """``force_weight · force_norm_error + energy_weight · energy_mae``."""

    energy_weight: float = 0.001
    force_weight: float = 0.999

    def __post_init__(self) -> None:
        if self.energy_weight < 0 or self.force_weight < 0:
            raise ValueError(
                f"loss weights: expected non-negative values, got energy {self.energy_weight}, "
                f"forces {self.force_weight}"
            )

    def __call__(self, prediction: dict[str, Tensor], batch) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss and its two terms (detached floats, for logging)."""
        force_term = force_norm_error(prediction["forces"], batch.forces)
        energy_term = energy_mae(prediction["energy"], batch.energy)
        loss = self.force_weight * force_term + self.energy_weight * energy_term
        return loss, {"force_term": float(force_term.detach()), "energy_term": float(energy_term.detach())}
