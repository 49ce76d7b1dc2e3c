"""Energy and force errors of a model on a dataset, as sums that ranks can add up.

Errors are accumulated as float64 sums (|ΔE|, |ΔF| components, ΔF², per-atom ‖ΔF‖, molecules,
atoms) and turned into means only at the end, so a data-parallel validation sums the ranks'
shards with one ``all_reduce`` and gets the one-process numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch

from gemrepro.data.torch_dataset import GraphSet
from gemrepro.train.losses import EnergyForceLoss

__all__ = ["collate", "error_sums", "evaluate", "metrics_from_sums", "model_device", "model_dtype", "prepare_batch"]


def prepare_batch(batch: Batch, device: torch.device, dtype: torch.dtype) -> Batch:
    """The batch on ``device`` with positions and targets in the model's precision."""
    batch = batch.to(device)
    for key in ("pos", "energy", "forces"):
        batch[key] = batch[key].to(dtype)
    return batch


def collate(dataset: GraphSet, indices: Sequence[int]) -> Batch:
    return Batch.from_data_list([dataset[i] for i in indices])


def model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module,
    dataset: GraphSet,
    batch_size: int = 32,
    loss: EnergyForceLoss | None = None,
) -> dict[str, float]:
    """Energy and force errors of ``model`` on ``dataset`` (eV, eV/Å).

    ``energy_mae`` is per molecule; ``forces_mae`` and ``forces_rmse`` are over Cartesian
    components, as the papers report them. ``force_norm_error`` (mean per-atom ‖ΔF‖₂) and
    ``loss`` (the training loss on this set) are included for early stopping.
    """
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one structure to evaluate")
    return metrics_from_sums(error_sums(model, dataset, range(len(dataset)), batch_size), loss or EnergyForceLoss())


def error_sums(model: nn.Module, dataset: GraphSet, indices: Sequence[int], batch_size: int) -> list[float]:
    """Summed errors over ``indices``: |ΔE|, |ΔF| components, ΔF², per-atom ‖ΔF‖, molecules, atoms."""
    device, dtype = model_device(model), model_dtype(model)
    indices = list(indices)
    was_training = model.training
    model.eval()
    energy_abs = force_abs = force_sq = force_norm = 0.0
    n_molecules = n_atoms = 0
    try:
        for start in range(0, len(indices), batch_size):
            batch = prepare_batch(collate(dataset, indices[start : start + batch_size]), device, dtype)
            with torch.enable_grad():  # forces are −∂E/∂R, which needs autograd
                out = model(batch)
            energy_error = (out["energy"].detach().reshape(-1) - batch.energy.reshape(-1)).double()
            force_error = (out["forces"].detach() - batch.forces).double()
            energy_abs += float(energy_error.abs().sum())
            force_abs += float(force_error.abs().sum())
            force_sq += float((force_error**2).sum())
            force_norm += float(torch.linalg.vector_norm(force_error, dim=-1).sum())
            n_molecules += energy_error.numel()
            n_atoms += force_error.shape[0]
    finally:
        model.train(was_training)
    return [energy_abs, force_abs, force_sq, force_norm, n_molecules, n_atoms]


def metrics_from_sums(sums: Sequence[float], loss: EnergyForceLoss) -> dict[str, float]:
    """The means of :func:`error_sums`, and the training loss they imply."""
    energy_abs, force_abs, force_sq, force_norm, n_molecules, n_atoms = sums
    n_molecules, n_atoms = int(round(n_molecules)), int(round(n_atoms))
    metrics = {
        "energy_mae": energy_abs / n_molecules,
        "forces_mae": force_abs / (3 * n_atoms),
        "forces_rmse": math.sqrt(force_sq / (3 * n_atoms)),
        "force_norm_error": force_norm / n_atoms,
        "n": n_molecules,
    }
    metrics["loss"] = loss.force_weight * metrics["force_norm_error"] + loss.energy_weight * metrics["energy_mae"]
    return metrics
