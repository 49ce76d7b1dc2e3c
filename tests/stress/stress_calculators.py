"""Calculators for the stress-audit tests, in a module that imports only numpy and ASE.

The audit's worker process imports a factory by name; keeping them here (not in the test module,
which imports torch) lets a worker start, and restart after a timeout, in well under a second.
"""

from __future__ import annotations

import time

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones


def weak_lennard_jones() -> Calculator:
    """Far too weak to hold a molecule together at any of the audit's temperatures."""
    return LennardJones(sigma=1.0, epsilon=0.01, rc=10.0)


def dimer_lennard_jones() -> Calculator:
    """Deep enough (1 eV) that an N2-like dimer at its minimum stays bound for a short run."""
    return LennardJones(sigma=1.1 / 2 ** (1 / 6), epsilon=1.0, rc=10.0)


def gfn2_xtb() -> Calculator:
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0)


class SabotagedCalculator(Calculator):
    """Deep LJ, except: raises for 3-atom molecules, NaN forces for 5-atom ones, and hangs for
    4-atom ones after ``hang_after`` calls."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, hang_after: int = 3) -> None:
        super().__init__()
        self.inner, self.hang_after, self.calls = dimer_lennard_jones(), hang_after, 0

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        n = len(self.atoms)
        if n == 3:
            raise RuntimeError("SCF exploded")
        if n == 4 and self.calls > self.hang_after:
            time.sleep(600)
        self.inner.calculate(self.atoms, ["energy", "forces"], all_changes)
        self.results = dict(self.inner.results)
        if n == 5:
            self.results["forces"] = np.full((n, 3), np.nan)


def sabotaged() -> Calculator:
    return SabotagedCalculator()


class CellRequiringCalculator(Calculator):
    """Like a potential trained on materials: needs a full periodic cell, and without one fails as
    such potentials do on a bare molecule (a singular cell matrix). ``seen`` holds every cell it got."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner: Calculator) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.seen.append((self.atoms.cell.array.copy(), self.atoms.pbc.copy()))
        if not self.atoms.pbc.all():
            raise np.linalg.LinAlgError("Singular matrix")
        np.linalg.inv(self.atoms.cell.array)  # a zero cell would raise here too
        self.inner.calculate(self.atoms, ["energy", "forces"], all_changes)
        self.results = dict(self.inner.results)


def cell_requiring_emt() -> Calculator:
    """EMT (metals) that refuses structures without a periodic cell."""
    from ase.calculators.emt import EMT

    return CellRequiringCalculator(EMT())


def cell_requiring_dimer() -> Calculator:
    """The deep dimer Lennard-Jones that refuses structures without a periodic cell."""
    return CellRequiringCalculator(dimer_lennard_jones())
