"""ASE calculator backed by a GemNet model (T or Q) (energies in eV, forces in eV/Å)."""

from __future__ import annotations

import os

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from torch_geometric.data import Data

from gemrepro.model.checkpoint import load_model
from gemrepro.model.gemnet import GemNet, resolve_device


class GemNetCalculator(Calculator):
    """Energy and forces of a GemNet model for ASE (MD, optimisation, vibrations).

    ``model_or_checkpoint`` is a ``GemNetT``/``GemNetQ`` or the path of a checkpoint from ``save_model``.
    Periodic boundary conditions are not supported (the model is for molecules).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self, model_or_checkpoint: GemNet | str | os.PathLike, device: str | torch.device = "auto", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(model_or_checkpoint, GemNet):
            self.model = model_or_checkpoint.to(resolve_device(device)).eval()
        elif isinstance(model_or_checkpoint, (str, os.PathLike)):
            self.model = load_model(model_or_checkpoint, device=device)
        else:
            raise ValueError(
                f"model_or_checkpoint must be a GemNetQ, GemNetT or a checkpoint path, got {type(model_or_checkpoint).__name__}"
            )

    def calculate(self, atoms: Atoms | None = None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        if self.atoms.pbc.any():
            raise ValueError("GemNetCalculator supports only non-periodic molecules (atoms.pbc all False)")
        data = Data(
            z=torch.as_tensor(self.atoms.get_atomic_numbers(), dtype=torch.long),
            pos=torch.as_tensor(self.atoms.get_positions(), dtype=self.model.dtype),
        )
        result = self.model(data)
        energy = float(result["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": result["forces"].cpu().numpy().astype(np.float64),
        }
