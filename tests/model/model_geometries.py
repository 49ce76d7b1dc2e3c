"""Small test molecules and helpers shared by the GemNet model tests (T, Q and both)."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

WATER = ([8, 1, 1], [[0.0, 0.0, 0.0], [0.957, 0.0, 0.0], [-0.240, 0.927, 0.0]])
METHANE = (
    [6, 1, 1, 1, 1],
    [[0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]],
)
ETHANOL = (
    [6, 6, 8, 1, 1, 1, 1, 1, 1],
    [
        [0.0, 0.0, 0.0],
        [1.52, 0.0, 0.0],
        [2.0, 1.35, 0.0],
        [-0.4, 1.0, 0.1],
        [-0.4, -0.5, 0.9],
        [-0.4, -0.5, -0.9],
        [1.9, -0.5, 0.9],
        [1.9, -0.5, -0.9],
        [2.95, 1.3, 0.0],
    ],
)
# Bromochlorofluoromethane, the textbook chiral molecule (C with four different substituents).
CHFCLBR = (
    [6, 1, 9, 17, 35],
    [[0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.78, -0.78, 0.78], [-1.02, 1.02, -1.02], [1.12, -1.12, -1.12]],
)


def jittered_molecule(spec, jitter: float = 0.05, seed: int = 0) -> Data:
    """The molecule with its atoms displaced a little (random, fixed by ``seed``), away from planarity."""
    numbers, positions = spec
    pos = torch.tensor(positions, dtype=torch.float64)
    pos = pos + jitter * torch.randn(pos.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Data(z=torch.tensor(numbers), pos=pos)


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """A uniformly random proper rotation matrix (det +1), float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
