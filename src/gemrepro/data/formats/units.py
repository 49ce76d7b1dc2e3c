"""Energy and force units a file may be stored in, as factors to eV and eV/Å, and a check that
labels read as eV are plausible in eV.

Everything inside gemrepro is eV, eV/Å; files in other units are converted here, at the edge. A file
carries no unit (rMD17 exported to extended XYZ is kcal/mol), so labels in another unit read as eV
would train silently: :func:`implausible_in_ev` catches the values no eV file can hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms, units

# eV per one unit of energy.
ENERGY_UNITS: dict[str, float] = {
    "ev": 1.0,
    "mev": 1e-3,
    "kcal/mol": units.kcal / units.mol,
    "kj/mol": units.kJ / units.mol,
    "hartree": units.Hartree,
    "ha": units.Hartree,
    "ry": units.Rydberg,
    "rydberg": units.Rydberg,
}

# Å per one unit of length, for the denominator of a force unit.
LENGTH_UNITS: dict[str, float] = {
    "å": 1.0,
    "a": 1.0,
    "ang": 1.0,
    "angstrom": 1.0,
    "bohr": units.Bohr,
}


def energy_factor(unit: str) -> float:
    """Factor that turns an energy in ``unit`` into eV."""
    key = unit.strip().lower()
    if key not in ENERGY_UNITS:
        raise ValueError(f"unknown energy unit {unit!r}; expected one of {sorted(set(ENERGY_UNITS))}")
    return ENERGY_UNITS[key]


def force_factor(unit: str) -> float:
    """Factor that turns a force in ``unit`` into eV/Å.

    ``unit`` is an energy unit, optionally per length (``"kcal/mol"`` and ``"kcal/mol/Å"`` are
    the same; ``"hartree/bohr"`` divides by the Bohr radius).
    """
    key = unit.strip().lower()
    if key in ENERGY_UNITS:
        return ENERGY_UNITS[key]
    energy, _, length = key.rpartition("/")
    if energy in ENERGY_UNITS and length in LENGTH_UNITS:
        return ENERGY_UNITS[energy] / LENGTH_UNITS[length]
    raise ValueError(
        f"unknown force unit {unit!r}; expected an energy unit {sorted(set(ENERGY_UNITS))}, "
        f"optionally per length ('/Å' or '/bohr')"
    )


# Thomas–Fermi energy of a neutral atom, −0.7687 Z^(7/3) hartree: it overbinds every atom (the true
# all-electron energy is higher, by Scott's correction and more), so Σ over a structure's atoms bounds
# the magnitude of any total energy those atoms can have, bonds (a few eV each) included.
THOMAS_FERMI_HARTREE = 0.7687
# Atomization energies per atom stay below ~6 eV in molecules (CO: 5.6 eV) and 8.9 eV in solids (tungsten).
MAX_ATOMIZATION_PER_ATOM = 15.0  # eV
# No labelled geometry a training set samples pulls an atom with 100 eV/Å (2300 kcal/mol/Å).
MAX_FORCE = 100.0  # eV/Å


def thomas_fermi_energy(numbers) -> float:
    """|Thomas–Fermi energy| (eV) of the free atoms ``numbers``: above any all-electron energy they can have."""
    z = np.asarray(numbers, dtype=np.float64)
    return float(THOMAS_FERMI_HARTREE * units.Hartree * np.sum(z ** (7.0 / 3.0)))


def implausible_in_ev(frames: Sequence[Atoms]) -> str | None:
    """Why the labels of ``frames``, taken as eV and eV/Å, cannot be (a phrase), or None when they can.

    A file in kcal/mol read as eV carries values 23 times too large; the rule flags, in this order,

    * a total energy (calculator ``energy``) larger in magnitude than the Thomas–Fermi energy of its
      atoms (:func:`thomas_fermi_energy`), which bounds every all-electron energy;
    * an ``atomization_energy`` beyond 15 eV per atom;
    * a force beyond 100 eV/Å.

    Relative or pseudopotential energies in kcal/mol can pass the energy rules; their forces are the check then.
    """
    worst_force, worst_frame = 0.0, -1
    for index, atoms in enumerate(frames):
        results = atoms.calc.results if atoms.calc is not None else {}
        if "energy" in results and abs(float(results["energy"])) > (bound := thomas_fermi_energy(atoms.numbers)):
            formula = atoms.get_chemical_formula()
            return (
                f"frame {index} has energy {float(results['energy']):.0f} eV, more in magnitude than the "
                f"{bound:.0f} eV any all-electron {formula} can have"
            )
        atomization = atoms.info.get("atomization_energy")
        if atomization is not None and abs(float(atomization)) > MAX_ATOMIZATION_PER_ATOM * len(atoms):
            return (
                f"frame {index} has atomization energy {float(atomization) / len(atoms):.1f} eV per atom, "
                f"beyond ±{MAX_ATOMIZATION_PER_ATOM:.0f} eV per atom"
            )
        if "forces" in results and len(atoms):
            largest = float(np.linalg.norm(np.asarray(results["forces"]), axis=1).max())
            if largest > worst_force:
                worst_force, worst_frame = largest, index
    if worst_force > MAX_FORCE:
        return f"frame {worst_frame} has max |F| {worst_force:.0f} eV/Å, beyond {MAX_FORCE:.0f} eV/Å"
    return None
