"""GFN2-xTB through tblite: the default reference, milliseconds per small molecule on a CPU.

GFN2-xTB carries self-consistent D4 dispersion, so the long-range energy shift that the
out-of-sample chapter studies is present in its labels. ``dispersion=False`` runs the same
Hamiltonian with the D4 term removed from its parameter set, which is how that chapter
measures the share of dispersion in an atomization energy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from ase.units import Bohr, Hartree, kB

from gemrepro.reference.base import ReferenceResult
from gemrepro.reference.method import ReferenceMethod

#: tblite parametrises GFN2-xTB for H to Rn.
XTB_ELEMENTS = frozenset(range(1, 87))

#: Boltzmann constant in Hartree/K: tblite takes the electronic temperature in Hartree.
_KB_HARTREE = kB / Hartree


@dataclass(frozen=True)
class GFN2xTB(ReferenceMethod):
    """GFN2-xTB single points.

    ``accuracy`` scales tblite's SCC thresholds (smaller is tighter), ``max_iterations`` caps
    the SCC cycles and ``electronic_temperature`` (K) sets the Fermi smearing.
    ``dispersion=False`` drops the self-consistent D4 term (everything else unchanged).
    """

    name: ClassVar[str] = "gfn2-xtb"

    accuracy: float = 1.0
    max_iterations: int = 250
    electronic_temperature: float = 300.0
    dispersion: bool = True

    def __post_init__(self) -> None:
        if not self.accuracy > 0:
            raise ValueError(f"accuracy must be > 0, got {self.accuracy!r}")
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be a positive integer, got {self.max_iterations!r}")
        if not self.electronic_temperature >= 0:
            raise ValueError(f"electronic_temperature must be >= 0 K, got {self.electronic_temperature!r}")
        if not isinstance(self.dispersion, bool):
            raise ValueError(f"dispersion must be True or False, got {self.dispersion!r}")

    @property
    def supported_elements(self) -> frozenset[int]:
        return XTB_ELEMENTS

    def options(self) -> dict:
        """Settings in cache keys; the default ``dispersion=True`` is left out so keys of
        calculations made before the option existed stay valid."""
        options = super().options()
        if self.dispersion:
            del options["dispersion"]
        return options

    def _calculate(self, numbers: np.ndarray, positions: np.ndarray, charge: int, multiplicity: int) -> ReferenceResult:
        # Imported here: tblite loads its native library on import, and the engine stays out of the pickled method.
        from tblite.interface import Calculator

        method: str | dict = "GFN2-xTB" if self.dispersion else gfn2_parameters(dispersion=False)
        calculator = Calculator(
            method,
            numbers,
            positions / Bohr,
            charge=float(charge),
            uhf=multiplicity - 1,
            color=False,
            logger=_silent,
        )
        calculator.set("verbosity", 0)
        calculator.set("accuracy", float(self.accuracy))
        calculator.set("max-iter", int(self.max_iterations))
        calculator.set("temperature", float(self.electronic_temperature) * _KB_HARTREE)
        try:
            results = calculator.singlepoint()
        except RuntimeError as error:  # tblite raises when the SCC does not converge
            return ReferenceResult.failed(len(numbers), f"tblite: {error}".splitlines()[0], 0.0)
        energy = float(results.get("energy")) * Hartree
        forces = -np.asarray(results.get("gradient"), dtype=np.float64) * (Hartree / Bohr)
        return ReferenceResult(energy, forces, True, 0.0)


@lru_cache(maxsize=1)
def _gfn2_table() -> dict[str, Any]:
    # Imported here: tblite loads its native library on import; only labelling needs it.
    from tblite import library

    param, table = library.new_param(), library.new_table()
    library.export_gfn2_param(param)
    library.dump_param(param, table)
    return library.table_to_dict(table)


def gfn2_parameters(dispersion: bool = True) -> dict[str, Any]:
    """tblite's GFN2-xTB parameter set as a mapping; without its ``dispersion`` section when asked.

    The D4 damping parameters of GFN2-xTB live in ``["dispersion"]["d4"]`` (s6, s8, a1, a2, s9).
    """
    params = copy.deepcopy(_gfn2_table())
    if not dispersion:
        del params["dispersion"]
    return params


def _silent(message: str) -> None:
    """tblite logger that drops its messages (workers must not flood the console)."""
