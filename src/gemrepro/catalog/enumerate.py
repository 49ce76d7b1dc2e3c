"""Enumerate a QM7-X-like catalog: small neutral closed-shell molecules from C, N, O, S, Cl.

QM7-X draws its ~7k molecules from GDB-13 (at most 7 heavy atoms). GDB itself cannot be
downloaded here, so we rebuild a catalog of the same kind: every molecular graph with up to
``max_heavy`` heavy atoms that passes a short list of GDB-like chemistry rules, hydrogens
filling the free valences.

Growth. Molecules grow one step at a time: a new atom joins an existing atom with free valence
by a single, double or triple bond, or a ring closes with a new bond between two existing
atoms. Visited graphs are remembered by the Kekulé canonical SMILES of their hydrogen-free
skeleton (so every Kekulé structure is a separate search node and none is lost); the output
is RDKit's aromatic canonical SMILES.

Rules, in two kinds.

*Hereditary* rules hold for every connected sub-graph of a molecule that obeys them (removing
atoms or bonds cannot break them), so they prune the search without losing any molecule:

- valences C 4, N 3, O 2, S 2 (divalent sulfur, thiophene included), Cl 1; no charges, no
  radicals;
- no bond between two heteroatoms (N, O, S, Cl) of any order — GDB's strictest rule, which
  also drops peroxides, hydrazines, N-oxides and azoles with N–N/N–O bonds;
- Cl only as a terminal substituent on carbon (follows from valence 1 and the rule above);
- sulfur only single-bonded (thioethers, thiols, thiophenes; no thiocarbonyls);
- no heteroatom on a triple-bonded carbon (ynols, ynamines, cyanates, cyanamides,
  chloroalkynes);
- no cumulated double bonds (allenes, ketenes, cumulenes): an atom carries at most one
  multiple bond;
- no triple bond inside a ring (an sp atom needs 180°, impossible in rings of ≤ 7);
- no sp2 atom (double bond, endo- or exocyclic) in a 3-membered ring, no endocyclic double
  bond in a 4-membered ring;
- Bredt-like: an atom shared by two or more rings carries no multiple bond;
- no atom shared by more than two rings (drops strained cages: tetrahedrane, prismane,
  [1.1.1]propellane).

*Final* rules can be repaired by further growth (an enol O–H becomes a vinyl ether), so they
only decide what is written out:

- no enols, thioenols or enamines with N–H (tautomers of carbonyls/imines): a heteroatom
  bearing H on a non-aromatic C=C carbon;
- no acetal-type carbon: an sp3 carbon with two or more N/O/S neighbours (acetals, aminals,
  hemiacetals, orthoesters — hydrolytically labile in GDB's reasoning), nor one with Cl and
  an N/O/S neighbour (alpha-chloro ethers, amines, thioethers);
- no N-H imines (C=NH; they hydrolyse and tautomerise);
- at least ``min_atoms`` atoms including hydrogens (QM7-X's smallest molecule has 4; this
  drops water and H2S).

With 7 heavy atoms this gives 23,719 molecules, about 3.4 times QM7-X's 6,950: GDB-13 applies
further stability and synthesis filters that are not reproduced here. Every heavy-atom count
1-7 and every element is present, and molecules have 4-23 atoms, as in QM7-X. Run
``python -m gemrepro.catalog.enumerate --max-heavy 7 --out PATH`` (about 2 minutes, <1 GB) to
regenerate the shipped ``data/qm7x_like.smi``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from rdkit import Chem

from gemrepro.catalog.molecules import HEAVY_ELEMENTS, catalog_stats, molecule_from_smiles

VALENCE: dict[str, int] = {"C": 4, "N": 3, "O": 2, "S": 2, "Cl": 1}
HETEROATOMS = frozenset({"N", "O", "S", "Cl"})
QM7X_MIN_ATOMS = 4  # smallest QM7-X molecule (atoms with H)

# A graph: element symbols, and bonds (i, j, order) with i < j, sorted.
Graph = tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]

_KEKULE_SANITIZE = Chem.SanitizeFlags.SANITIZE_ALL ^ Chem.SanitizeFlags.SANITIZE_SETAROMATICITY
_BOND_TYPE = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


def _bond_order_sums(graph: Graph) -> list[int]:
    atoms, bonds = graph
    used = [0] * len(atoms)
    for i, j, order in bonds:
        used[i] += order
        used[j] += order
    return used


def _to_mol(graph: Graph) -> Chem.Mol:
    """Build the Kekulé molecule (explicit H counts from our valences, no aromaticity)."""
    atoms, bonds = graph
    used = _bond_order_sums(graph)
    rw = Chem.RWMol()
    for symbol, valence_used in zip(atoms, used):
        atom = Chem.Atom(symbol)
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(VALENCE[symbol] - valence_used)
        rw.AddAtom(atom)
    for i, j, order in bonds:
        rw.AddBond(i, j, _BOND_TYPE[order])
    mol = rw.GetMol()
    Chem.SanitizeMol(mol, _KEKULE_SANITIZE)
    return mol


def _skeleton(parent: Chem.RWMol, new_atom: str | None, i: int, j: int, order: int) -> Chem.RWMol:
    """The parent's hydrogen-free graph plus one atom and/or bond: enough for keys and rings.

    Hydrogens follow from the valences, so the heavy-atom graph with bond orders identifies a
    molecule; skipping sanitization here makes each search step several times cheaper.
    """
    skeleton = Chem.RWMol(parent)
    if new_atom is not None:
        atom = Chem.Atom(new_atom)
        atom.SetNoImplicit(True)
        skeleton.AddAtom(atom)
    skeleton.AddBond(i, j, _BOND_TYPE[order])
    return skeleton


def _passes_hereditary_rings(graph: Graph, skeleton: Chem.RWMol) -> bool:
    """Ring rules (the local rules are checked while the bond is added)."""
    atoms, bonds = graph
    if len(bonds) < len(atoms):  # a tree
        return True
    rings = [tuple(ring) for ring in Chem.GetSymmSSSR(skeleton)]
    n_rings_of = [0] * len(atoms)
    for ring in rings:
        for index in ring:
            n_rings_of[index] += 1
    if max(n_rings_of) > 2:
        return False
    for i, j, order in bonds:
        if order == 1:
            continue
        if n_rings_of[i] >= 2 or n_rings_of[j] >= 2:  # Bredt-like
            return False
        for ring in rings:
            if len(ring) == 3 and (i in ring or j in ring):  # sp2/sp atom in a 3-ring
                return False
            if i in ring and j in ring:
                position = ring.index(i)
                if j in (ring[position - 1], ring[(position + 1) % len(ring)]):  # ring bond
                    if order == 3 or len(ring) == 4:
                        return False
    return True


def _final_candidates(graph: Graph, min_atoms: int) -> list[int] | None:
    """Functional-group rules that further growth could still repair.

    Returns None when the graph fails, else the carbons whose enol test needs aromaticity
    (a heteroatom with H on a C=C carbon is an enol only outside an aromatic ring).
    """
    atoms, bonds = graph
    used = _bond_order_sums(graph)
    n_hydrogens = sum(VALENCE[s] - u for s, u in zip(atoms, used))
    if len(atoms) + n_hydrogens < min_atoms:
        return None
    neighbours: list[list[tuple[int, int]]] = [[] for _ in atoms]
    for i, j, order in bonds:
        neighbours[i].append((j, order))
        neighbours[j].append((i, order))
    enol_carbons = []
    for index, symbol in enumerate(atoms):
        nbrs = neighbours[index]
        if symbol == "N" and used[index] < VALENCE["N"] and any(o == 2 for _, o in nbrs):
            return None  # N-H imine
        if symbol != "C":
            continue
        saturated = all(order == 1 for _, order in nbrs)
        hetero = [k for k, _ in nbrs if atoms[k] in ("N", "O", "S")]
        if saturated and len(hetero) >= 2:  # acetal-type carbon
            return None
        if saturated and hetero and any(atoms[k] == "Cl" for k, _ in nbrs):
            return None  # alpha-chloro ether, amine or thioether
        has_cc_double = any(order == 2 and atoms[k] == "C" for k, order in nbrs)
        if has_cc_double and any(VALENCE[atoms[k]] > used[k] for k in hetero):
            enol_carbons.append(index)  # enol, thioenol or N-H enamine unless aromatic
    return enol_carbons


Step = tuple[str | None, int, int, int]  # new atom (or None for a ring closure), i, j, order


def _children(
    graph: Graph, skeleton: Chem.RWMol, elements: Sequence[str], max_heavy: int
) -> Iterable[tuple[Graph, Step]]:
    """All graphs one growth step away that obey the local hereditary rules, with the step.

    A new atom is attached to one atom per symmetry class only (symmetric atoms give the same
    child); ring closures try every pair, since equal classes do not make equal pairs.
    """
    atoms, bonds = graph
    used = _bond_order_sums(graph)
    free = [VALENCE[s] - u for s, u in zip(atoms, used)]
    has_multiple = [False] * len(atoms)
    has_triple = [False] * len(atoms)
    hetero_neighbour = [False] * len(atoms)
    bonded = set()
    for i, j, order in bonds:
        bonded.add((i, j))
        if order > 1:
            has_multiple[i] = has_multiple[j] = True
        if order == 3:
            has_triple[i] = has_triple[j] = True
        hetero_neighbour[i] |= atoms[j] in HETEROATOMS
        hetero_neighbour[j] |= atoms[i] in HETEROATOMS

    def allowed(a: int | None, symbol_a: str, b: int, order: int) -> bool:
        if symbol_a in HETEROATOMS and atoms[b] in HETEROATOMS:
            return False
        if order > 1 and (has_multiple[b] or (a is not None and has_multiple[a])):
            return False  # cumulated multiple bonds
        if order > 1 and "S" in (symbol_a, atoms[b]):
            return False  # sulfur only single-bonded: no thiocarbonyls
        if order == 3 and (hetero_neighbour[b] or (a is not None and hetero_neighbour[a])):
            return False  # no ynols, ynamines, cyanates, cyanamides, chloroalkynes
        if symbol_a in HETEROATOMS and has_triple[b]:
            return False
        if a is not None and atoms[b] in HETEROATOMS and has_triple[a]:
            return False
        return True

    if len(atoms) < max_heavy:
        ranks = Chem.CanonicalRankAtoms(skeleton, breakTies=False)
        representatives = sorted({rank: index for index, rank in enumerate(ranks)}.values())
        for b in representatives:
            for symbol in elements:
                for order in range(1, min(free[b], VALENCE[symbol], 3) + 1):
                    if allowed(None, symbol, b, order):
                        new_bonds = tuple(sorted(bonds + ((b, len(atoms), order),)))
                        yield (atoms + (symbol,), new_bonds), (symbol, b, len(atoms), order)
    for a in range(len(atoms)):
        for b in range(a + 1, len(atoms)):
            if (a, b) in bonded:
                continue
            for order in range(1, min(free[a], free[b], 3) + 1):
                if allowed(a, atoms[a], b, order):
                    yield (atoms, tuple(sorted(bonds + ((a, b, order),)))), (None, a, b, order)


def enumerate_molecules(
    max_heavy: int = 7,
    elements: Sequence[str] = HEAVY_ELEMENTS,
    min_atoms: int = QM7X_MIN_ATOMS,
) -> list[str]:
    """Canonical SMILES of every molecule allowed by the module's rules, sorted.

    Sorted by heavy-atom count, then by SMILES string, so the output is deterministic.
    """
    if max_heavy < 1:
        raise ValueError(f"max_heavy must be a positive integer, got {max_heavy}")
    unknown = [e for e in elements if e not in VALENCE]
    if unknown:
        raise ValueError(f"elements {unknown} not supported; expected a subset of {list(VALENCE)}")

    seen: set[str] = set()  # Kekulé canonical SMILES of hydrogen-free graphs visited
    frontier: list[tuple[Graph, Chem.RWMol]] = []
    for symbol in elements:
        if symbol == "Cl":
            continue  # Cl only as a substituent on carbon; HCl is no molecule of this catalog
        skeleton = Chem.RWMol()
        atom = Chem.Atom(symbol)
        atom.SetNoImplicit(True)
        skeleton.AddAtom(atom)
        seen.add(Chem.MolToSmiles(skeleton, kekuleSmiles=True))
        frontier.append((((symbol,), ()), skeleton))

    output: set[str] = set()
    while frontier:
        next_frontier: list[tuple[Graph, Chem.RWMol]] = []
        for graph, skeleton in frontier:
            enol_carbons = _final_candidates(graph, min_atoms)
            if enol_carbons is not None:
                aromatic = _to_mol(graph)
                Chem.SetAromaticity(aromatic)
                if all(aromatic.GetAtomWithIdx(c).GetIsAromatic() for c in enol_carbons):
                    output.add(Chem.MolToSmiles(aromatic))
            for child, step in _children(graph, skeleton, elements, max_heavy):
                child_skeleton = _skeleton(skeleton, *step)
                key = Chem.MolToSmiles(child_skeleton, kekuleSmiles=True)
                if key in seen:
                    continue
                seen.add(key)
                if _passes_hereditary_rings(child, child_skeleton):
                    next_frontier.append((child, child_skeleton))
        frontier = next_frontier
    return sorted(output, key=lambda s: (Chem.MolFromSmiles(s).GetNumAtoms(), s))


def write_catalog(smiles: Sequence[str], path: str | Path, max_heavy: int) -> Path:
    """Write one SMILES per line under a header comment that says how it was made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [
        "# QM7-X-like molecule catalog (gemrepro): canonical RDKit SMILES, one per line.",
        f"# Generated by `python -m gemrepro.catalog.enumerate --max-heavy {max_heavy}`"
        f" with RDKit {Chem.rdBase.rdkitVersion}.",
        f"# {len(smiles)} molecules with 1-{max_heavy} heavy atoms from C, N, O, S, Cl; GDB-like"
        " rules in gemrepro/catalog/enumerate.py.",
        "# Sorted by heavy-atom count, then SMILES.",
    ]
    path.write_text("\n".join(header + list(smiles)) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gemrepro.catalog.enumerate",
        description="Enumerate the QM7-X-like molecule catalog (C, N, O, S, Cl; GDB-like rules).",
    )
    parser.add_argument("--max-heavy", type=int, default=7, help="most heavy atoms (default 7)")
    parser.add_argument("--out", type=Path, required=True, help="output .smi file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        smiles = enumerate_molecules(args.max_heavy)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_catalog(smiles, args.out, args.max_heavy)
    print(f"{len(smiles)} molecules written to {args.out} in {time.perf_counter() - start:.1f} s")
    print(summarize(smiles))
    return 0


def summarize(smiles: Sequence[str]) -> str:
    """Counts per heavy-atom count and per element, and the range of atoms per molecule."""
    table = catalog_stats(molecule_from_smiles(s) for s in smiles)
    per_size = table["n_heavy_atoms"].value_counts().sort_index()
    lines = ["heavy atoms: " + ", ".join(f"{k}: {v}" for k, v in per_size.items())]
    lines.append(
        "molecules containing: " + ", ".join(f"{e}: {int((table[f'n_{e}'] > 0).sum())}" for e in HEAVY_ELEMENTS)
    )
    lines.append(f"atoms per molecule (with H): {table['n_atoms'].min()}-{table['n_atoms'].max()}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
