"""ASE calculator for any model of the project: a bare GemNet (T or Q) or a trained one with its references.

It runs one molecule at a time through the model's own forward pass (not the batched engine), so
it doubles as an independent check of :class:`~gemrepro.md.GemNetPotential`. Per-element reference
energies of a trained model are added in float64, as the batched engine does, so a float32 network
still gives energies resolved well below a meV.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from torch import nn
from torch_geometric.data import Data

from gemrepro.analysis.geometry import check_geometry
from gemrepro.integrations.potential import known_elements, model_dtype, refuse_unseen_elements
from gemrepro.model import EnergyShift, GemNet, as_energy_shift, load_model, resolve_device


class GemNetCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) of a gemrepro model for ASE (MD, optimisation, vibrations).

    ``model_or_checkpoint`` is a ``GemNetT``/``GemNetQ``, an ``EnergyShift`` around one (a trained
    model), or the path of a model file (``save_model``'s, e.g. the trainer's ``best_model.pt``). Structures with overlapping atoms or non-finite coordinates,
    and (for a trained model) elements it never saw, raise a one-line ``ValueError`` instead of
    returning NaN or an untrained guess; ``allow_unknown_elements`` lifts the latter.
    Periodic boundary conditions are not supported (the model is for molecules).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        model_or_checkpoint: nn.Module | str | os.PathLike,
        device: str | torch.device = "auto",
        allow_unknown_elements: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(model_or_checkpoint, (GemNet, EnergyShift)):
            model = as_energy_shift(model_or_checkpoint).to(resolve_device(device))
        elif isinstance(model_or_checkpoint, (str, os.PathLike)):
            model = load_model(model_or_checkpoint, device=device)
        else:
            raise ValueError(
                "model_or_checkpoint: expected a GemNetT, GemNetQ, a trained (EnergyShift) model or "
                f"a model file path, got {type(model_or_checkpoint).__name__}"
            )
        self.model = model.eval()
        self.network = model.model
        self.references = model.element_energies.detach().double().cpu()
        self.elements = known_elements(model)
        self.allow_unknown_elements = bool(allow_unknown_elements)
        self.dtype = model_dtype(self.network)
        self.device = next(self.network.parameters()).device

    def calculate(self, atoms: Atoms | None = None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        if self.atoms.pbc.any():
            raise ValueError("atoms: GemNetCalculator supports only non-periodic molecules (atoms.pbc all False)")
        numbers, positions = self.atoms.get_atomic_numbers(), self.atoms.get_positions()
        check_geometry(numbers, positions, f"atoms ({self.atoms.get_chemical_formula()})")
        if not self.allow_unknown_elements:
            refuse_unseen_elements(numbers, self.elements, f"atoms ({self.atoms.get_chemical_formula()})")
        data = Data(
            z=torch.as_tensor(numbers, dtype=torch.long, device=self.device),
            pos=torch.as_tensor(positions, dtype=self.dtype, device=self.device),
        )
        result = self.network(data)
        energy = float(result["energy"][0]) + float(self.references[torch.as_tensor(numbers, dtype=torch.long)].sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": result["forces"].detach().cpu().numpy().astype(np.float64),
        }
