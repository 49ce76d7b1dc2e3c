"""The molecule catalog: shipped QM7-X-like SMILES, curated lists, validation, subsets."""

from collections import Counter

import pytest
from rdkit import Chem

from gemrepro.catalog import (
    HEAVY_ELEMENTS,
    MD17,
    MD_MOLECULES,
    MD_MOLECULES_COVER_ALL_ELEMENTS,
    OUT_OF_SAMPLE,
    catalog_stats,
    catalog_subset,
    load_catalog,
    md17,
    md_molecules,
    molecule_from_smiles,
    out_of_sample,
)
from gemrepro.catalog import enumerate as enumerator


def _heavy_elements(molecules):
    return set().union(*(m.elements for m in molecules)) - {"H"}


# --- the shipped catalog ------------------------------------------------------------------


def test_catalog_is_unique_and_in_qm7x_chemistry():
    catalog = load_catalog()
    assert len(catalog) >= 2000
    smiles = [m.smiles for m in catalog]
    assert len(set(smiles)) == len(smiles)
    for molecule in catalog:
        assert 1 <= molecule.n_heavy_atoms <= 7
        assert molecule.elements <= {"H", "C", "N", "O", "S", "Cl"}
        assert 4 <= molecule.n_atoms <= 23  # QM7-X's range of atoms per molecule
    assert _heavy_elements(catalog) == set(HEAVY_ELEMENTS)
    assert {m.n_heavy_atoms for m in catalog} == set(range(1, 8))


def test_catalog_file_is_canonical_and_sorted():
    from importlib import resources

    from gemrepro.catalog.molecules import read_smiles_file

    text = resources.files("gemrepro.catalog").joinpath("data", "qm7x_like.smi").read_text()
    assert text.startswith("# QM7-X-like molecule catalog")
    lines = read_smiles_file(text)
    assert lines == [m.smiles for m in load_catalog()]  # each line is its own canonical SMILES
    keys = [(m.n_heavy_atoms, m.smiles) for m in load_catalog()]
    assert keys == sorted(keys)


def test_enumerator_reproduces_the_shipped_catalog_up_to_five_heavy_atoms():
    shipped = [m.smiles for m in load_catalog() if m.n_heavy_atoms <= 5]
    assert enumerator.enumerate_molecules(max_heavy=5) == shipped


def test_enumerator_rules_on_small_molecules():
    small = set(enumerator.enumerate_molecules(max_heavy=4))
    for kept in [
        "C",
        "N",
        "CC(=O)O",
        "C1CC1",
        "CN=C",
        "CC#N",
        "ClC(Cl)Cl",
        "CSC",
        "C=CC=O",
        "NC(N)=O",
        "C1CO1",
        "COC=O",
        "C1CSC1",
    ]:
        assert Chem.MolToSmiles(Chem.MolFromSmiles(kept)) in small, kept
    for dropped in [
        "O",
        "S",  # fewer than 4 atoms
        "OO",
        "NN",
        "CON",
        "ClN",  # heteroatom-heteroatom bonds
        "C=C=C",
        "C=C=O",  # cumulated double bonds
        "C1=CC1",
        "C=C1CC1",
        "C1=CCC1",  # sp2 in 3-ring, endocyclic double bond in 4-ring
        "C=N",
        "OC=C",
        "C#CO",
        "N#CN",  # NH imine, enol, ynol, cyanamide
        "C=S",
        "OCO",
        "OCCl",  # thiocarbonyl, hemiacetal-type, alpha-chloro alcohol
        "Cl",  # HCl: Cl only on carbon
    ]:
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(dropped))
        assert canonical not in small, dropped


def test_enumerate_cli_writes_header_and_sorted_smiles(tmp_path):
    out = tmp_path / "two.smi"
    assert enumerator.main(["--max-heavy", "2", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("#") and "--max-heavy 2" in lines[1]
    smiles = [line for line in lines if not line.startswith("#")]
    assert smiles == enumerator.enumerate_molecules(max_heavy=2)
    assert smiles[:1] == ["C"] and "CCl" in smiles and "C#C" in smiles


def test_enumerator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_heavy"):
        enumerator.enumerate_molecules(max_heavy=0)
    with pytest.raises(ValueError, match="Br"):
        enumerator.enumerate_molecules(max_heavy=2, elements=("C", "Br"))


# --- curated lists --------------------------------------------------------------------------


def test_md_molecules_cover_all_elements_and_are_in_the_catalog():
    catalog_smiles = {m.smiles for m in load_catalog()}
    molecules = md_molecules()
    assert len(molecules) == len(MD_MOLECULES) == 20
    assert len({m.smiles for m in molecules}) == 20
    for molecule in molecules:
        assert molecule.smiles in catalog_smiles, molecule.name
    k = MD_MOLECULES_COVER_ALL_ELEMENTS
    assert _heavy_elements(md_molecules(k)) == set(HEAVY_ELEMENTS)
    assert _heavy_elements(md_molecules(k - 1)) != set(HEAVY_ELEMENTS)
    assert [m.name for m in md_molecules(3)] == list(MD_MOLECULES)[:3]
    with pytest.raises(ValueError, match="1..20"):
        md_molecules(0)
    with pytest.raises(ValueError, match="1..20"):
        md_molecules(21)


def test_out_of_sample_molecules_match_the_paper():
    found = {m.name: (m.n_heavy_atoms, m.formula) for m in out_of_sample()}
    assert found == {
        "paracetamol": (11, "C8H9NO2"),
        "4H-furo[2,3-c]pyrrol-6-amine": (9, "C6H6N2O"),
        "histidine": (11, "C6H9N3O2"),
        "Ser-Trp-Leu": (29, "C20H28N4O5"),
    }
    assert list(found) == list(OUT_OF_SAMPLE)


def test_amino_acids_are_the_l_enantiomers():
    from rdkit.Chem import rdCIPLabeler

    for name, n_centres in [("histidine", 1), ("Ser-Trp-Leu", 3)]:
        mol = Chem.MolFromSmiles(OUT_OF_SAMPLE[name])
        rdCIPLabeler.AssignCIPLabels(mol)
        labels = [a.GetProp("_CIPCode") for a in mol.GetAtoms() if a.HasProp("_CIPCode")]
        assert labels == ["S"] * n_centres, name  # L-His, L-Ser, L-Trp, L-Leu are all S


def test_md17_formulas():
    found = {m.name: m.formula for m in md17()}
    assert found == {
        "aspirin": "C9H8O4",
        "benzene": "C6H6",
        "ethanol": "C2H6O",
        "malonaldehyde": "C3H4O2",
        "naphthalene": "C10H8",
        "salicylic acid": "C7H6O3",
        "toluene": "C7H8",
        "uracil": "C4H4N2O2",
    }
    assert list(found) == list(MD17)


# --- validation -----------------------------------------------------------------------------


def test_molecule_from_smiles_fields():
    molecule = molecule_from_smiles("OCC", name="ethanol")
    assert molecule.name == "ethanol"
    assert molecule.smiles == "CCO"
    assert molecule.formula == "C2H6O"
    assert (molecule.n_heavy_atoms, molecule.n_atoms) == (3, 9)
    assert molecule.composition == (("C", 2), ("H", 6), ("O", 1))
    assert molecule.count("N") == 0
    assert molecule_from_smiles("ClCCl").name == "ClCCl"


def test_molecule_from_smiles_rejects_bad_input():
    with pytest.raises(ValueError, match=r"^invalid SMILES 'xyz': RDKit could not parse it$"):
        molecule_from_smiles("xyz")
    with pytest.raises(ValueError, match="Br.*allowed elements are H, C, N, O, S, Cl"):
        molecule_from_smiles("CBr")
    with pytest.raises(ValueError, match="charged"):
        molecule_from_smiles("[NH4+]")
    with pytest.raises(ValueError, match="charged"):
        molecule_from_smiles("C[N+](C)(C)CC(=O)[O-]")  # zwitterion: net neutral, still charged
    with pytest.raises(ValueError, match="unpaired electron"):
        molecule_from_smiles("[CH3]")
    with pytest.raises(ValueError, match="non-empty"):
        molecule_from_smiles("")
    assert molecule_from_smiles("CBr", allowed_elements=("H", "C", "Br")).formula == "CH3Br"


def test_load_catalog_rejects_unknown_names_and_returns_fresh_lists():
    with pytest.raises(ValueError, match="unknown catalog 'qm9'"):
        load_catalog("qm9")
    first = load_catalog()
    first.pop()
    assert len(load_catalog()) == len(first) + 1


# --- subsets and statistics -----------------------------------------------------------------


def test_catalog_subset_is_deterministic_stratified_and_covers_elements():
    subset = catalog_subset(60, seed=0)
    assert len(subset) == 60 and len({m.smiles for m in subset}) == 60
    assert [m.smiles for m in catalog_subset(60, seed=0)] == [m.smiles for m in subset]
    assert {m.smiles for m in catalog_subset(60, seed=1)} != {m.smiles for m in subset}
    assert _heavy_elements(subset) == set(HEAVY_ELEMENTS)
    assert {m.n_heavy_atoms for m in subset} == set(range(1, 8))
    # proportional beyond one per stratum: most molecules of the catalog have 7 heavy atoms
    sizes = Counter(m.n_heavy_atoms for m in subset)
    assert sizes[7] == max(sizes.values())
    for seed in range(5):
        assert _heavy_elements(catalog_subset(5, seed=seed)) == set(HEAVY_ELEMENTS)
    assert len(catalog_subset(450, seed=3)) == 450


def test_catalog_subset_rejects_bad_sizes():
    n_catalog = len(load_catalog())
    with pytest.raises(ValueError, match=f"1..{n_catalog}"):
        catalog_subset(0, seed=0)
    with pytest.raises(ValueError, match=f"1..{n_catalog}"):
        catalog_subset(n_catalog + 1, seed=0)


def test_catalog_stats_counts_atoms():
    table = catalog_stats(md_molecules(5))
    assert list(table["name"]) == list(MD_MOLECULES)[:5]
    toluene = table.set_index("name").loc["toluene"]
    counts = toluene[["n_atoms", "n_heavy_atoms", "n_C", "n_H"]].tolist()
    assert counts == [15, 7, 7, 8]
    assert table[["n_S", "n_Cl", "n_N", "n_O"]].sum().min() >= 1
