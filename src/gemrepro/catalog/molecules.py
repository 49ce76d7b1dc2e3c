"""Molecules as the rest of the package sees them: validated SMILES with name and formula.

Every SMILES that enters the pipeline goes through :func:`molecule_from_smiles`, so a typo, a
bromine atom or a charged species fails here with one clear line instead of deep inside a
conformer search or a reference calculation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

#: Elements of QM7-X (hydrogen included): the default chemistry of every molecule list.
QM7X_ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "S", "Cl")
#: The heavy elements a diverse QM7-X-like subset must all contain.
HEAVY_ELEMENTS: tuple[str, ...] = ("C", "N", "O", "S", "Cl")
CATALOGS: tuple[str, ...] = ("qm7x_like",)


@dataclass(frozen=True)
class Molecule:
    """A validated, neutral, closed-shell molecule.

    ``smiles`` is RDKit's canonical isomeric SMILES; ``composition`` lists (element, count)
    pairs with hydrogens, C and H first (Hill order), so two molecules with the same formula
    compare equal there.
    """

    name: str
    smiles: str
    formula: str
    n_heavy_atoms: int
    n_atoms: int
    composition: tuple[tuple[str, int], ...]

    @property
    def elements(self) -> frozenset[str]:
        """Element symbols present, hydrogen included."""
        return frozenset(symbol for symbol, _ in self.composition)

    def count(self, element: str) -> int:
        """Number of atoms of ``element`` (0 when absent)."""
        return dict(self.composition).get(element, 0)


_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


def molecule_from_smiles(
    smiles: str,
    name: str | None = None,
    allowed_elements: Iterable[str] = QM7X_ELEMENTS,
) -> Molecule:
    """Parse and validate ``smiles``; the name defaults to the canonical SMILES.

    Raises ValueError for unparsable SMILES, elements outside ``allowed_elements``, charged
    species and radicals (the reference methods here treat neutral singlets only).
    """
    if not isinstance(smiles, str) or not smiles.strip():
        raise ValueError(f"invalid SMILES {smiles!r}: expected a non-empty string")
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}: RDKit could not parse it")
    allowed = tuple(allowed_elements)
    formula = CalcMolFormula(mol)  # Hill order, hydrogens included
    composition = tuple((e, int(n) if n else 1) for e, n in _FORMULA_TOKEN.findall(formula))
    foreign = sorted({e for e, _ in composition} - set(allowed))
    if foreign:
        raise ValueError(
            f"SMILES {smiles!r} contains element(s) {', '.join(foreign)}; allowed elements are {', '.join(allowed)}"
        )
    charged = radicals = 0
    for atom in mol.GetAtoms():
        charged += atom.GetFormalCharge() != 0
        radicals += atom.GetNumRadicalElectrons()
    if charged:
        raise ValueError(
            f"SMILES {smiles!r} is charged ({charged} atom(s) with a formal charge); "
            "expected a neutral molecule without formal charges"
        )
    if radicals:
        raise ValueError(f"SMILES {smiles!r} has {radicals} unpaired electron(s); expected a closed-shell molecule")
    canonical = Chem.MolToSmiles(mol)
    return Molecule(
        name=name if name is not None else canonical,
        smiles=canonical,
        formula=formula,
        n_heavy_atoms=mol.GetNumHeavyAtoms(),
        n_atoms=sum(n for _, n in composition),
        composition=composition,
    )


def read_smiles_file(text: str) -> list[str]:
    """SMILES lines of a ``.smi`` text: comments (``#``) and blank lines skipped."""
    lines = (line.strip() for line in text.splitlines())
    return [line.split()[0] for line in lines if line and not line.startswith("#")]


@lru_cache(maxsize=None)
def _load_catalog(name: str) -> tuple[Molecule, ...]:
    text = resources.files("gemrepro.catalog").joinpath("data", f"{name}.smi").read_text()
    return tuple(
        molecule_from_smiles(smiles, name=f"{name}-{index:05d}") for index, smiles in enumerate(read_smiles_file(text))
    )


def load_catalog(name: str = "qm7x_like") -> list[Molecule]:
    """The shipped catalog ``name`` in file order; molecule names are ``<name>-<index>``.

    Parsed once per process (cached); a fresh list is returned each call.
    """
    if name not in CATALOGS:
        raise ValueError(f"unknown catalog {name!r}; expected one of {', '.join(CATALOGS)}")
    return list(_load_catalog(name))


def _stratum_sizes(sizes: Sequence[int], n: int) -> list[int]:
    """How many to draw per stratum: one each, the rest in proportion (largest remainder)."""
    take = [min(1, size) for size in sizes]
    remaining = n - sum(take)
    room = np.array([size - t for size, t in zip(sizes, take)], dtype=float)
    while remaining > 0:
        share = remaining * room / room.sum()
        extra = np.minimum(np.floor(share).astype(int), room.astype(int))
        if extra.sum() == 0:  # hand out single molecules by largest remainder
            order = np.argsort(-(share - np.floor(share)), kind="stable")
            extra = np.zeros(len(sizes), dtype=int)
            for index in order[:remaining]:
                if room[index] > 0:
                    extra[index] = 1
        for index, value in enumerate(extra):
            take[index] += int(value)
        room -= extra
        remaining -= int(extra.sum())
    return take


def catalog_subset(n: int, seed: int, molecules: Sequence[Molecule] | None = None) -> list[Molecule]:
    """A deterministic, diverse subset of ``n`` molecules (in catalog order).

    Stratified by heavy-atom count (every count present gets at least one molecule when
    ``n`` allows it, the rest in proportion to the catalog), and for ``n >= 5`` it contains
    every heavy element C, N, O, S, Cl. Used for the ``tiny`` (60) and ``small`` (450) scales.
    """
    pool = list(load_catalog() if molecules is None else molecules)
    if not isinstance(n, (int, np.integer)) or n < 1 or n > len(pool):
        raise ValueError(f"subset size n must be an integer in 1..{len(pool)}, got {n!r}")
    rng = np.random.default_rng(seed)
    strata: dict[int, list[int]] = {}
    for index, molecule in enumerate(pool):
        strata.setdefault(molecule.n_heavy_atoms, []).append(index)
    keys = sorted(strata)
    if n >= len(keys):
        quota = dict(zip(keys, _stratum_sizes([len(strata[k]) for k in keys], n)))
    else:  # too few for one per stratum: spread over the largest molecules
        quota = {k: 0 for k in keys}
        for k in sorted(keys, key=lambda k: -len(strata[k]))[:n]:
            quota[k] = 1

    chosen: set[int] = set()
    if n >= len(HEAVY_ELEMENTS):  # first one molecule per element, taken from the quotas
        for element in HEAVY_ELEMENTS:
            if any(pool[i].count(element) for i in chosen):
                continue
            candidates = [i for k in keys if quota[k] > 0 for i in strata[k] if pool[i].count(element)]
            if not candidates:
                continue  # the pool itself lacks this element
            pick = int(candidates[rng.integers(len(candidates))])
            chosen.add(pick)
            quota[pool[pick].n_heavy_atoms] -= 1
    for k in keys:
        free = [i for i in strata[k] if i not in chosen]
        picks = rng.permutation(len(free))[: quota[k]]
        chosen.update(free[int(p)] for p in picks)
    return [pool[i] for i in sorted(chosen)]


def catalog_stats(molecules: Iterable[Molecule]) -> pd.DataFrame:
    """One row per molecule: name, SMILES, formula, atom counts and per-element counts."""
    rows = []
    for molecule in molecules:
        row = {
            "name": molecule.name,
            "smiles": molecule.smiles,
            "formula": molecule.formula,
            "n_heavy_atoms": molecule.n_heavy_atoms,
            "n_atoms": molecule.n_atoms,
        }
        row.update({f"n_{element}": molecule.count(element) for element in QM7X_ELEMENTS})
        rows.append(row)
    columns = ["name", "smiles", "formula", "n_heavy_atoms", "n_atoms"] + [f"n_{e}" for e in QM7X_ELEMENTS]
    return pd.DataFrame(rows, columns=columns)
