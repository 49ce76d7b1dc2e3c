"""TorchSim model interface for any model of the project, so TorchSim's integrators can drive it.

TorchSim (``torch-sim-atomistic``, pinned to 0.3.0, the newest that installs on Python 3.11) runs
batched MD on a ``SimState``: positions, atomic numbers and ``system_idx`` of many systems at once,
the same layout as gemrepro's own engine. The adapter therefore hands TorchSim's tensors straight
to :class:`~gemrepro.md.GemNetPotential`, the engine's potential, so both see the same energies
and forces (element references added in float64) and the same refusal of unseen elements; any
difference between the two MD codes is then in the integrator and the bookkeeping around it.
TorchSim works in metal units (Å, eV, amu), which are gemrepro's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn
from torch_sim.io import atoms_to_state
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState

from gemrepro.analysis.geometry import check_geometry
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.model import load_model

#: The version the adapter is tested against; TorchSim's interface changed between 0.2 and 0.4.
TORCHSIM_VERSION = "0.3.0"


class TorchSimGemNet(ModelInterface):
    """A trained gemrepro model (GemNet-T or -Q, with or without references) as a TorchSim model.

    ``model`` is a model, a model file (what :func:`gemrepro.model.load_model` reads) or
    an existing :class:`GemNetPotential`. ``dtype`` is the dtype of TorchSim's state (positions,
    momenta); the network keeps its own, as in gemrepro's engine, where float64 positions drive a
    float32 GemNet. Molecules only: periodic states are refused.
    """

    def __init__(
        self,
        model: nn.Module | GemNetPotential | str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float64,
        allow_unknown_elements: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(model, (str, os.PathLike)):
            model = load_model(model, device=device)
        if isinstance(model, GemNetPotential):
            self.potential = model
        else:
            self.potential = GemNetPotential(model, device=device, allow_unknown_elements=allow_unknown_elements)
        self.network = self.potential.model  # registered, so TorchSim's module utilities see the weights
        self._device = self.potential.device
        self._dtype = dtype
        self._compute_forces = True
        self._compute_stress = False
        self._memory_scales_with = "n_atoms_x_density"

    def forward(self, state: SimState | dict, **kwargs) -> dict[str, torch.Tensor]:
        """Energies (eV, one per system) and forces (eV/Å, one row per atom) of ``state``."""
        get: Callable[[str], Any] = state.get if isinstance(state, dict) else lambda name: getattr(state, name)
        pbc = get("pbc")
        if pbc is not None and bool(torch.as_tensor(pbc).any()):
            raise ValueError("state: TorchSimGemNet supports only non-periodic molecules (pbc all False)")
        energy, forces = self.potential(get("positions"), get("atomic_numbers"), get("system_idx"))
        return {"energy": energy, "forces": forces}


def molecules_to_state(
    systems: list[Atoms], *, device: str | torch.device, dtype: torch.dtype = torch.float64
) -> SimState:
    """A TorchSim state of non-periodic molecules, each checked as gemrepro's engine checks its input.

    ASE gives an isolated molecule a zero cell; TorchSim needs a cell per system, so each gets a
    cubic box 10 Å wider than the molecule (never used: pbc stays False).
    """
    boxed = []
    for index, atoms in enumerate(systems):
        check_geometry(atoms.numbers, atoms.positions, f"systems[{index}]")
        atoms = atoms.copy()
        atoms.pbc = False
        atoms.cell = np.eye(3) * (float(np.ptp(atoms.positions, axis=0).max()) + 10.0)
        boxed.append(atoms)
    return atoms_to_state(boxed, device=torch.device(device), dtype=dtype)
