"""Hand-picked molecule lists of the two papers: MD test set, out-of-sample set, MD17.

Names map to SMILES; :func:`md_molecules`, :func:`out_of_sample` and :func:`md17` return
validated :class:`~gemrepro.catalog.molecules.Molecule` objects.
"""

from __future__ import annotations

from gemrepro.catalog.molecules import Molecule, catalog_subset, load_catalog, molecule_from_smiles

#: 20 representative QM7-X-like molecules for the MD tests (Stocker et al., Fig. 2a: "care was
#: taken to include all atom types"). All are in the shipped ``qm7x_like`` catalog. Ordered so
#: that the first two already hold every heavy element (C, N, O, S, Cl) and the rest alternate
#: chains, rings, aromatics and functional groups, so any prefix is a varied MD test set.
MD_MOLECULES: dict[str, str] = {
    "2-chlorothiophene": "Clc1cccs1",
    "glycine": "NCC(=O)O",
    "toluene": "Cc1ccccc1",
    "ethanol": "CCO",
    "thiazole": "c1cscn1",
    "1,2-dichloroethane": "ClCCCl",
    "acetic acid": "CC(=O)O",
    "pyridine": "c1ccncc1",
    "cyclohexane": "C1CCCCC1",
    "acetonitrile": "CC#N",
    "tetrahydrothiophene": "C1CCSC1",
    "heptane": "CCCCCCC",
    "furan": "c1ccoc1",
    "pyrrole": "c1cc[nH]c1",
    "acrolein": "C=CC=O",
    "2-pyrrolidinone": "O=C1CCCN1",
    "urea": "NC(N)=O",
    "oxirane": "C1CO1",
    "phenol": "Oc1ccccc1",
    "chlorobenzene": "Clc1ccccc1",
}

#: Smallest prefix of :data:`MD_MOLECULES` that contains every heavy element.
MD_MOLECULES_COVER_ALL_ELEMENTS = 2

#: The out-of-sample molecules of Stocker et al., Fig. 3 (9-29 heavy atoms; L amino acids).
OUT_OF_SAMPLE: dict[str, str] = {
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "4H-furo[2,3-c]pyrrol-6-amine": "NC1=NCc2ccoc21",
    "histidine": "N[C@@H](Cc1c[nH]cn1)C(=O)O",
    "Ser-Trp-Leu": "OC[C@H](N)C(=O)N[C@@H](Cc1c[nH]c2ccccc12)C(=O)N[C@@H](CC(C)C)C(=O)O",
}

#: The eight molecules of MD17 (Chmiela et al.), used by the second paper and MDsim.
MD17: dict[str, str] = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "benzene": "c1ccccc1",
    "ethanol": "CCO",
    "malonaldehyde": "O=CCC=O",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic acid": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "uracil": "O=c1cc[nH]c(=O)[nH]1",
}


def _molecules(table: dict[str, str]) -> list[Molecule]:
    return [molecule_from_smiles(smiles, name=name) for name, smiles in table.items()]


def md_molecules(n: int = len(MD_MOLECULES)) -> list[Molecule]:
    """The first ``n`` MD test molecules; every heavy element is present for ``n >= 2``."""
    if not isinstance(n, int) or not 1 <= n <= len(MD_MOLECULES):
        raise ValueError(f"number of MD molecules must be an integer in 1..{len(MD_MOLECULES)}, got {n!r}")
    return _molecules(dict(list(MD_MOLECULES.items())[:n]))


def dataset_molecules(n: int, n_md: int, seed: int) -> list[Molecule]:
    """The ``n`` molecules of a scale's dataset: the first ``n_md`` MD molecules, then a diverse subset.

    QM7-X's MD molecules were QM7-X molecules (Stocker et al.): a trajectory tests a model inside
    the chemical space it was trained on, not its extrapolation. The rest is drawn by
    :func:`~gemrepro.catalog.molecules.catalog_subset` from the catalog without the MD molecules.
    """
    if not isinstance(n, int) or not isinstance(n_md, int) or not 0 <= n_md <= n:
        raise ValueError(f"dataset molecules: expected integers 0 <= n_md <= n, got n={n!r}, n_md={n_md!r}")
    md = md_molecules(n_md) if n_md else []
    taken = {m.smiles for m in md}
    pool = [m for m in load_catalog() if m.smiles not in taken]
    return md + (catalog_subset(n - n_md, seed, molecules=pool) if n > n_md else [])


def out_of_sample() -> list[Molecule]:
    """Paracetamol, 4H-furo[2,3-c]pyrrol-6-amine, histidine and Ser-Trp-Leu (Fig. 3)."""
    return _molecules(OUT_OF_SAMPLE)


def md17() -> list[Molecule]:
    """The eight MD17 molecules."""
    return _molecules(MD17)


__all__ = [
    "MD17",
    "MD_MOLECULES",
    "MD_MOLECULES_COVER_ALL_ELEMENTS",
    "OUT_OF_SAMPLE",
    "dataset_molecules",
    "md17",
    "md_molecules",
    "out_of_sample",
]
