"""One interface for every reference method (xTB, PBE0, ...).

A calculation that fails or does not converge is a *result* with ``converged=False`` and an
``error`` message, never an exception: the papers count unconverged DFT as an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReferenceResult:
    """Energy (eV), forces (eV/Å), whether the calculation converged, and its cost."""

    energy: float
    forces: np.ndarray
    converged: bool
    wall_time: float
    error: str | None = None
    info: dict = field(default_factory=dict)

    @classmethod
    def failed(cls, n_atoms: int, error: str, wall_time: float) -> "ReferenceResult":
        """A failed calculation: NaN energy and forces, the reason kept."""
        return cls(float("nan"), np.full((n_atoms, 3), np.nan), False, wall_time, error)
