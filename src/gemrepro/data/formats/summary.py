"""What a dataset file holds, in numbers (for ``gemrepro data info FILE`` and the data chapter)."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from .reader import detect_format, read
from .units import implausible_in_ev


def summarize(path: str | os.PathLike, format: str | None = None, **read_options) -> dict:
    """Counts, elements, sizes and label ranges (eV, eV/Å) of the configurations in ``path``, and why
    these labels cannot be eV (``implausible_in_ev``; None when they can).

    Molecules are counted only where the file says which configuration belongs to which (see
    :func:`count_molecules`); otherwise ``n_molecules`` is ``None`` and only the distinct chemical
    formulas are counted. ``read_options`` go to :func:`read` (units, duplicate handling).
    """
    resolved = format or detect_format(path)
    frames = read(path, resolved, **read_options)
    return summarize_frames(frames, format=resolved, path=str(path))


def summarize_frames(frames: list[Atoms], *, format: str, path: str) -> dict:
    """The summary of already-read configurations (see :func:`summarize`)."""
    sizes = np.array([len(atoms) for atoms in frames])
    formulas = Counter(atoms.get_chemical_formula(mode="hill") for atoms in frames)
    n_molecules, molecules_from = count_molecules(frames, format)
    element_counts: Counter[int] = Counter()
    for atoms in frames:
        element_counts.update(atoms.numbers.tolist())
    elements = {chemical_symbols[z]: int(count) for z, count in sorted(element_counts.items())}

    energies = [atoms.calc.results["energy"] for atoms in frames if atoms.calc and "energy" in atoms.calc.results]
    atomization = [atoms.info["atomization_energy"] for atoms in frames if "atomization_energy" in atoms.info]
    forces = [atoms.calc.results["forces"] for atoms in frames if atoms.calc and "forces" in atoms.calc.results]
    methods = sorted({str(atoms.info["reference_method"]) for atoms in frames if "reference_method" in atoms.info})

    summary = {
        "path": path,
        "format": format,
        "n_configurations": len(frames),
        "n_molecules": n_molecules,
        "molecules_from": molecules_from,
        "n_formulas": len(formulas),
        "elements": elements,
        "atoms_per_configuration": {"min": int(sizes.min()), "mean": float(sizes.mean()), "max": int(sizes.max())},
        "n_with_energy": len(energies),
        "energy_range": _range(energies),
        "atomization_energy_range": _range(atomization),
        "n_with_forces": len(forces),
        "force_component_range": _range([f.ravel() for f in forces]),
        "max_force_norm": float(max(np.linalg.norm(f, axis=1).max() for f in forces)) if forces else None,
        "reference_method": ", ".join(methods) if methods else None,
        "implausible_in_ev": implausible_in_ev(frames),
    }
    return summary


def count_molecules(frames: list[Atoms], format: str) -> tuple[int | None, str | None]:
    """Distinct molecules and what told them apart, or ``(None, None)`` where the file does not say.

    QM7-X numbers a molecule by formula (``mol_id``) *and* isomer within it, so a molecule is a
    distinct ``(mol_id, isomer)`` pair; an MD17/rMD17 archive holds one molecule. Formulas alone
    are not molecules: isomers share one.
    """
    ids = [(atoms.info.get("mol_id"), atoms.info.get("isomer")) for atoms in frames]
    if all(mol_id is not None and isomer is not None for mol_id, isomer in ids):
        return len(set(ids)), "QM7-X mol_id and isomer"
    if format in ("md17", "rmd17"):
        return 1, f"one molecule per {format} archive"
    return None, None


def _range(values: list) -> tuple[float, float] | None:
    if not values:
        return None
    flat = np.concatenate([np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in values])
    return float(flat.min()), float(flat.max())


def format_summary(summary: dict) -> str:
    """A readable multi-line rendering of :func:`summarize`'s dictionary."""
    sizes = summary["atoms_per_configuration"]
    elements = ", ".join(
        f"{symbol} {count}"
        for symbol, count in sorted(summary["elements"].items(), key=lambda kv: atomic_numbers[kv[0]])
    )
    lines = [
        f"file:               {summary['path']}",
        f"format:             {summary['format']}",
        f"configurations:     {summary['n_configurations']}",
        (
            f"molecules:          {summary['n_molecules']} ({summary['n_formulas']} distinct formulas)"
            if summary["n_molecules"] is not None
            else f"formulas:           {summary['n_formulas']} distinct (the file does not say which frames are one molecule)"
        ),
        f"atoms per config:   min {sizes['min']}, mean {sizes['mean']:.2f}, max {sizes['max']}",
        f"elements (atoms):   {elements}",
        f"reference method:   {summary['reference_method'] or 'unknown'}",
    ]
    if summary["energy_range"] is not None:
        low, high = summary["energy_range"]
        lines.append(f"energy [eV]:        {low:.6f} … {high:.6f} ({summary['n_with_energy']} configurations)")
    else:
        lines.append("energy:             none")
    if summary["atomization_energy_range"] is not None:
        low, high = summary["atomization_energy_range"]
        lines.append(f"atomization [eV]:   {low:.6f} … {high:.6f}")
    if summary["force_component_range"] is not None:
        low, high = summary["force_component_range"]
        lines.append(
            f"forces [eV/Å]:      components {low:.4f} … {high:.4f}, max |F| {summary['max_force_norm']:.4f} "
            f"({summary['n_with_forces']} configurations)"
        )
    else:
        lines.append("forces:             none")
    return "\n".join(lines)
