"""Energy and force units a file may be stored in, as factors to eV and eV/Å.

Everything inside gemrepro is eV, eV/Å; files in other units are converted here, at the edge.
"""

from __future__ import annotations

from ase import units

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
