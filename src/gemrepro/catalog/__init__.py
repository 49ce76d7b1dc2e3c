"""Molecule catalog: the QM7-X-like SMILES catalog and the papers' hand-picked molecules.

- :func:`load_catalog` — the shipped ``qm7x_like`` catalog (enumerated by
  :mod:`gemrepro.catalog.enumerate`: up to 7 heavy atoms of C, N, O, S, Cl, GDB-like rules);
- :func:`catalog_subset` — a deterministic, diverse subset for the ``tiny``/``small`` scales;
- :func:`dataset_molecules` — a scale's dataset molecules: the MD molecules plus such a subset;
- :data:`MD_MOLECULES`, :data:`OUT_OF_SAMPLE`, :data:`MD17` — named SMILES of the MD tests,
  the out-of-sample molecules of Fig. 3 and MD17;
- :func:`molecule_from_smiles` — the validation every SMILES passes before use.
"""

from gemrepro.catalog.curated import (
    MD17,
    MD_MOLECULES,
    MD_MOLECULES_COVER_ALL_ELEMENTS,
    OUT_OF_SAMPLE,
    dataset_molecules,
    md17,
    md_molecules,
    out_of_sample,
)
from gemrepro.catalog.molecules import (
    CATALOGS,
    HEAVY_ELEMENTS,
    QM7X_ELEMENTS,
    Molecule,
    catalog_stats,
    catalog_subset,
    load_catalog,
    molecule_from_smiles,
)

__all__ = [
    "CATALOGS",
    "HEAVY_ELEMENTS",
    "MD17",
    "MD_MOLECULES",
    "MD_MOLECULES_COVER_ALL_ELEMENTS",
    "OUT_OF_SAMPLE",
    "QM7X_ELEMENTS",
    "Molecule",
    "catalog_stats",
    "catalog_subset",
    "dataset_molecules",
    "load_catalog",
    "md17",
    "md_molecules",
    "molecule_from_smiles",
    "out_of_sample",
]
