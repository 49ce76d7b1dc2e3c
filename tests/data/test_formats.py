"""Dataset readers on tiny files written in each real layout, and on the real files in shared/data."""

from __future__ import annotations

import re
from pathlib import Path

import ase.build
import ase.io
import h5py
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from gemrepro.cache.paths import shared_data_dir
from gemrepro.data.formats import (
    QM7XRecord,
    detect_format,
    format_summary,
    implausible_in_ev,
    read,
    summarize,
    write_qm7x,
)

KCAL_PER_MOL_IN_EV = units.kcal / units.mol

METHANE = (
    np.array([6, 1, 1, 1, 1]),
    np.array([[0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]),
)
WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]]))


# ---------------------------------------------------------------- helpers writing the real layouts


def _geometry_values(mol_id: int, isomer: int, conformer: int, label: str):
    """Distinct, reproducible numbers for each geometry so a mix-up cannot go unnoticed."""
    numbers, base = METHANE if mol_id == 1 else WATER
    step = 0 if label == "opt" else int(label[1:])
    seed = mol_id * 10_000 + isomer * 1000 + conformer * 100 + step
    rng = np.random.default_rng(seed)
    positions = base + 0.01 * rng.standard_normal(base.shape)
    energy = -1000.0 * mol_id - 0.1 * conformer - 0.001 * step
    atomization = -10.0 * mol_id - 0.01 * step
    forces = rng.standard_normal(base.shape)
    return numbers, positions, energy, atomization, forces


QM7X_GEOMETRIES = {
    1: [
        "Geom-m1-i1-c1-opt",
        "Geom-m1-i1-c1-d1",
        "Geom-m1-i1-c1-d2",
        "Geom-m1-i1-c10-opt",
        "Geom-m1-i1-c2-opt",
        "Geom-m1-i1-c2-d1",
    ],
    2: ["Geom-m2-i1-c1-d10", "Geom-m2-i1-c1-opt", "Geom-m2-i1-c1-d2", "Geom-m2-i1-c1-d1"],
}


def _parse(name: str):
    mol, iso, conf, label = re.match(r"Geom-m(\d+)-i(\d+)-c(\d+)-(\w+)", name).groups()
    return int(mol), int(iso), int(conf), label


def write_real_qm7x(path: Path, geometries=QM7X_GEOMETRIES, energy_keys=("ePBE0+MBD",)) -> Path:
    """A QM7-X file as Hoja et al. ship it (plus two properties the reader must ignore)."""
    with h5py.File(path, "w") as handle:
        for mol_id, names in geometries.items():
            molecule = handle.create_group(str(mol_id))
            for name in names:
                numbers, positions, energy, atomization, forces = _geometry_values(*_parse(name))
                group = molecule.create_group(name)
                group.create_dataset("atNUM", data=numbers)
                group.create_dataset("atXYZ", data=positions)
                for offset, key in enumerate(energy_keys):
                    group.create_dataset(key, data=[energy + 5.0 * offset])
                group.create_dataset("eAT", data=[atomization])
                group.create_dataset("totFOR", data=forces)
                group.create_dataset("eMBD", data=[-0.3])
                group.create_dataset("hCHG", data=np.zeros(len(numbers)))
    return path


def write_md17(path: Path, n_frames: int = 4, energy_shape: str = "column") -> dict:
    rng = np.random.default_rng(0)
    numbers, base = WATER
    arrays = {
        "R": base + 0.02 * rng.standard_normal((n_frames, 3, 3)),
        "z": numbers,
        "E": -47000.0 + rng.standard_normal((n_frames, 1) if energy_shape == "column" else n_frames),
        "F": 30.0 * rng.standard_normal((n_frames, 3, 3)),
        "name": np.array("water"),
        "theory": np.array("CCSD(T)"),
    }
    np.savez(path, **arrays)
    return arrays


def write_rmd17(path: Path, n_frames: int = 3) -> dict:
    rng = np.random.default_rng(1)
    numbers, base = METHANE
    arrays = {
        "nuclear_charges": numbers,
        "coords": base + 0.02 * rng.standard_normal((n_frames, 5, 3)),
        "energies": -25000.0 + rng.standard_normal(n_frames),
        "forces": 20.0 * rng.standard_normal((n_frames, 5, 3)),
        "old_indices": np.array([17, 3, 99][:n_frames]),
        "old_energies": -25000.0 + rng.standard_normal(n_frames),
        "old_forces": rng.standard_normal((n_frames, 5, 3)),
    }
    np.savez(path, **arrays)
    return arrays


# ---------------------------------------------------------------- QM7-X


def test_qm7x_real_layout_reads_every_geometry_in_order(tmp_path):
    path = write_real_qm7x(tmp_path / "1000.hdf5")
    frames = read(path)
    ids = [atoms.info["id"] for atoms in frames]
    assert ids == [
        "Geom-m1-i1-c1-opt",
        "Geom-m1-i1-c1-d1",
        "Geom-m1-i1-c1-d2",
        "Geom-m1-i1-c2-opt",
        "Geom-m1-i1-c2-d1",
        "Geom-m1-i1-c10-opt",
        "Geom-m2-i1-c1-opt",
        "Geom-m2-i1-c1-d1",
        "Geom-m2-i1-c1-d2",
        "Geom-m2-i1-c1-d10",
    ]
    for atoms in frames:
        mol_id, isomer, conformer, label = _parse(atoms.info["id"])
        numbers, positions, energy, atomization, forces = _geometry_values(mol_id, isomer, conformer, label)
        assert atoms.info["mol_id"] == mol_id and atoms.info["conformer"] == conformer
        assert atoms.info["geometry"] == label
        np.testing.assert_array_equal(atoms.numbers, numbers)
        np.testing.assert_array_equal(atoms.positions, positions)
        assert atoms.get_potential_energy() == energy
        np.testing.assert_array_equal(atoms.get_forces(), forces)
        assert atoms.info["atomization_energy"] == atomization
        assert atoms.info["reference_method"] == "PBE0+MBD"
        assert atoms.info["source"] == str(path)
    assert frames[0].get_chemical_formula() == "CH4" and frames[-1].get_chemical_formula() == "H2O"


@pytest.mark.parametrize("listed", ["Geom-m1-i1-c1-opt", "Geom-m1-i1-c1"])
def test_qm7x_dupmols_beside_file_drops_the_conformer_and_its_displacements(tmp_path, listed):
    path = write_real_qm7x(tmp_path / "1000.hdf5")
    (tmp_path / "DupMols.dat").write_text(f"{listed}\nGeom-m2-i1-c1-opt\n\n")
    kept = [atoms.info["id"] for atoms in read(path)]
    # c10 shares the prefix "Geom-m1-i1-c1" but is another conformer: it must stay.
    assert kept == ["Geom-m1-i1-c2-opt", "Geom-m1-i1-c2-d1", "Geom-m1-i1-c10-opt"]
    assert len(read(path, drop_duplicates=False)) == 10


def test_qm7x_duplicates_from_explicit_path(tmp_path):
    path = write_real_qm7x(tmp_path / "data.h5")
    listing = tmp_path / "elsewhere" / "dups.txt"
    listing.parent.mkdir()
    listing.write_text("Geom-m1-i1-c2-opt\n")
    kept = {atoms.info["id"] for atoms in read(path, duplicates=listing)}
    assert len(kept) == 8 and not any(name.startswith("Geom-m1-i1-c2-") for name in kept)


def test_qm7x_prefers_pbe0_mbd_over_etot(tmp_path):
    both = write_real_qm7x(tmp_path / "both.hdf5", {2: ["Geom-m2-i1-c1-opt"]}, energy_keys=("ePBE0+MBD", "eTOT"))
    only_tot = write_real_qm7x(tmp_path / "tot.hdf5", {2: ["Geom-m2-i1-c1-opt"]}, energy_keys=("eTOT",))
    expected = _geometry_values(2, 1, 1, "opt")[2]
    (from_both,) = read(both)
    (from_tot,) = read(only_tot)
    assert from_both.get_potential_energy() == expected  # eTOT holds expected + 5 eV
    assert from_both.info["reference_method"] == "PBE0+MBD"
    assert from_tot.get_potential_energy() == expected
    assert "reference_method" not in from_tot.info


def test_write_qm7x_round_trip(tmp_path):
    records = []
    for mol_id, names in QM7X_GEOMETRIES.items():
        for name in names:
            _, isomer, conformer, label = _parse(name)
            numbers, positions, energy, atomization, forces = _geometry_values(mol_id, isomer, conformer, label)
            fields = dict(
                mol_id=mol_id,
                isomer=isomer,
                conformer=conformer,
                label=label,
                numbers=numbers,
                positions=positions,
                energy=energy,
                atomization_energy=atomization,
                forces=forces,
            )
            records.append(QM7XRecord(**fields) if mol_id == 1 else fields)
    path = write_qm7x(tmp_path / "generated.hdf5", records, reference_method="gfn2-xtb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated.hdf5"]  # no temp file left behind
    with h5py.File(path, "r") as handle:
        assert handle.attrs["reference_method"] == "gfn2-xtb"
        assert set(handle["1/Geom-m1-i1-c1-opt"].keys()) == {"atNUM", "atXYZ", "eTOT", "eAT", "totFOR"}
    assert detect_format(path) == "qm7x"
    frames = {atoms.info["id"]: atoms for atoms in read(path)}
    assert len(frames) == 10
    for name, atoms in frames.items():
        numbers, positions, energy, atomization, forces = _geometry_values(*_parse(name))
        np.testing.assert_array_equal(atoms.numbers, numbers)
        np.testing.assert_array_equal(atoms.positions, positions)
        np.testing.assert_array_equal(atoms.get_forces(), forces)
        assert atoms.get_potential_energy() == energy
        assert atoms.info["atomization_energy"] == atomization
        assert atoms.info["reference_method"] == "gfn2-xtb"


def test_write_qm7x_pbe0_mbd_goes_to_the_paper_key_and_bad_record_leaves_nothing(tmp_path):
    numbers, positions, energy, atomization, forces = _geometry_values(2, 1, 1, "opt")
    good = dict(
        mol_id=2,
        isomer=1,
        conformer=1,
        label="opt",
        numbers=numbers,
        positions=positions,
        energy=energy,
        atomization_energy=atomization,
        forces=forces,
    )
    path = write_qm7x(tmp_path / "paper.hdf5", [good], reference_method="PBE0+MBD")
    with h5py.File(path, "r") as handle:
        assert "ePBE0+MBD" in handle["2/Geom-m2-i1-c1-opt"]
    before = path.read_bytes()
    bad = dict(good, label="d1", positions=np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="paper.hdf5.*positions"):
        write_qm7x(path, [dict(good, label="d2"), bad], reference_method="PBE0+MBD")
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper.hdf5"]


# ---------------------------------------------------------------- MD17 / rMD17


@pytest.mark.parametrize("energy_shape", ["column", "flat"])
def test_md17_npz_converts_kcal_per_mol_to_ev(tmp_path, energy_shape):
    path = tmp_path / "md17_water.npz"
    raw = write_md17(path, energy_shape=energy_shape)
    assert detect_format(path) == "md17"
    frames = read(path)
    assert len(frames) == 4
    # 1 kcal/mol = 4.184 kJ/mol; 1 eV = 96.485 kJ/mol (textbook values, independent of ase.units).
    assert KCAL_PER_MOL_IN_EV == pytest.approx(4.184 / 96.4853, rel=1e-5)
    for index, atoms in enumerate(frames):
        np.testing.assert_array_equal(atoms.numbers, [8, 1, 1])
        np.testing.assert_array_equal(atoms.positions, raw["R"][index])
        ratio = atoms.get_potential_energy() / raw["E"].reshape(-1)[index]
        assert ratio == pytest.approx(KCAL_PER_MOL_IN_EV, rel=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), raw["F"][index] * KCAL_PER_MOL_IN_EV, rtol=1e-12)
        assert atoms.info["reference_method"] == "CCSD(T)" and atoms.info["name"] == "water"
        assert atoms.info["index"] == index


def test_rmd17_npz_keys_and_units(tmp_path):
    path = tmp_path / "rmd17_methane.npz"
    raw = write_rmd17(path)
    assert detect_format(path) == "rmd17"
    frames = read(path)
    assert [atoms.get_chemical_formula() for atoms in frames] == ["CH4"] * 3
    energies = np.array([atoms.get_potential_energy() for atoms in frames])
    np.testing.assert_allclose(energies / raw["energies"], KCAL_PER_MOL_IN_EV, rtol=1e-9)
    np.testing.assert_allclose(frames[2].get_forces(), raw["forces"][2] * KCAL_PER_MOL_IN_EV, rtol=1e-12)
    np.testing.assert_array_equal(frames[1].positions, raw["coords"][1])
    assert [atoms.info["old_index"] for atoms in frames] == [17, 3, 99]
    assert frames[0].info["reference_method"] == "PBE/def2-SVP"


def test_npz_detected_by_content_not_extension(tmp_path):
    path = tmp_path / "renamed.npz"
    write_rmd17(path)
    renamed = path.rename(tmp_path / "renamed.bin")
    assert detect_format(renamed) == "rmd17"
    assert len(read(renamed)) == 3


# ---------------------------------------------------------------- ASE files


def test_extxyz_units_are_converted_and_results_kept(tmp_path):
    numbers, positions = WATER
    forces = np.array([[0.01, 0.0, -0.02], [0.0, 0.03, 0.0], [-0.01, -0.03, 0.02]])
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = SinglePointCalculator(atoms, energy=-76.4, forces=forces)
    path = tmp_path / "water_hartree.extxyz"
    ase.io.write(path, [atoms, atoms], format="extxyz")
    assert detect_format(path) == "ase"
    as_ev = read(path)
    assert as_ev[0].get_potential_energy() == pytest.approx(-76.4, rel=1e-12)
    frames = read(path, energy_unit="hartree", force_unit="hartree/bohr")
    assert len(frames) == 2
    assert frames[1].get_potential_energy() == pytest.approx(-76.4 * units.Hartree, rel=1e-12)
    np.testing.assert_allclose(frames[0].get_forces(), forces * units.Hartree / units.Bohr, rtol=1e-10)
    np.testing.assert_allclose(frames[0].positions, positions, atol=1e-8)
    assert frames[0].info["source"] == str(path)


# ---------------------------------------------------------------- bad inputs


def _corrupt_hdf5(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(3).bytes(4096))
    return path


def _truncated_hdf5(path: Path) -> Path:
    write_real_qm7x(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _hdf5_missing_positions(path: Path) -> Path:
    write_real_qm7x(path, {2: ["Geom-m2-i1-c1-opt"]})
    with h5py.File(path, "a") as handle:
        del handle["2/Geom-m2-i1-c1-opt/atXYZ"]
    return path


def _hdf5_without_groups(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.attrs["note"] = "empty"
    return path


def _hdf5_other_layout(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("positions", data=np.zeros((2, 3)))
    return path


def _hdf5_edit(key: str, value):
    def make(path: Path) -> Path:
        write_real_qm7x(path, {2: ["Geom-m2-i1-c1-opt"]})
        with h5py.File(path, "a") as handle:
            del handle[f"2/Geom-m2-i1-c1-opt/{key}"]
            handle[f"2/Geom-m2-i1-c1-opt/{key}"] = value
        return path

    return make


def _npz(**overrides):
    def make(path: Path) -> Path:
        arrays = write_md17(path)
        arrays.update(overrides)
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
        return path

    return make


def _random_npz(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(4).bytes(500))
    return path


def _xyz_with_nan(path: Path) -> Path:
    path.write_text("2\n\nH 0.0 0.0 nan\nH 0.0 0.0 0.74\n")
    return path


BAD_FILES = {
    "random_bytes.hdf5": (_corrupt_hdf5, "HDF5"),
    "truncated.hdf5": (_truncated_hdf5, "HDF5"),
    "no_atxyz.hdf5": (_hdf5_missing_positions, "atXYZ"),
    "no_groups.h5": (_hdf5_without_groups, "no molecule groups"),
    "flat.h5": (_hdf5_other_layout, "molecule group"),
    "short_forces.hdf5": (_hdf5_edit("totFOR", np.zeros((2, 3))), r"totFOR.*\(3, 3\)"),
    "z_zero.hdf5": (_hdf5_edit("atNUM", np.array([8, 0, 1])), "atomic number"),
    "nan_qm7x.hdf5": (_hdf5_edit("atXYZ", np.full((3, 3), np.nan)), "NaN"),
    "wrong_keys.npz": (lambda p: (np.savez(p, positions=np.zeros((1, 2, 3))), p)[1], "MD17 keys"),
    "random.npz": (_random_npz, "npz"),
    "forces_shape.npz": (_npz(F=np.zeros((4, 2, 3))), r"'F' has shape"),
    "energies_shape.npz": (_npz(E=np.zeros(3)), r"'E' has shape"),
    "atoms_shape.npz": (_npz(z=np.array([8, 1])), r"'R' has shape"),
    "z_119.npz": (_npz(z=np.array([8, 1, 119])), "119"),
    "nan_md17.npz": (_npz(R=np.full((4, 3, 3), np.nan)), "NaN"),
    "nan.xyz": (_xyz_with_nan, "NaN"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_input_gives_one_line_value_error_naming_the_file(tmp_path, name):
    make, expected = BAD_FILES[name]
    path = make(tmp_path / name)
    with pytest.raises(ValueError, match=expected) as caught:
        read(path)
    message = str(caught.value)
    assert name in message and "\n" not in message


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.hdf5"):
        read(tmp_path / "absent.hdf5")
    path = write_real_qm7x(tmp_path / "fine.hdf5")
    with pytest.raises(ValueError, match=r"fine\.hdf5.*unknown format 'qm9'"):
        read(path, format="qm9")
    with pytest.raises(ValueError, match=r"fine\.hdf5: not an npz archive"):
        read(path, format="md17")
    with pytest.raises(ValueError, match="unknown energy unit"):
        read(tmp_path / "fine.hdf5", format="ase", energy_unit="furlongs")


# ---------------------------------------------------------------- summary


def test_summarize_counts_molecules_elements_and_ranges(tmp_path):
    path = write_real_qm7x(tmp_path / "1000.hdf5")
    summary = summarize(path)
    assert summary["format"] == "qm7x"
    assert summary["n_configurations"] == 10 and summary["n_molecules"] == 2
    assert summary["elements"] == {"H": 6 * 4 + 4 * 2, "C": 6, "O": 4}
    assert summary["atoms_per_configuration"] == {"min": 3, "mean": pytest.approx(4.2), "max": 5}
    assert summary["energy_range"] == (-2000.11, pytest.approx(-1000.1))
    assert summary["reference_method"] == "PBE0+MBD"
    text = format_summary(summary)
    assert "configurations:     10" in text and "C 6" in text and "PBE0+MBD" in text
    assert len(text.splitlines()) >= 9


def test_summary_counts_isomers_as_molecules_and_never_formulas_as_molecules(tmp_path):
    """QM7-X ``m`` numbers a formula, ``i`` an isomer of it: three molecules here, two formulas."""
    isomers = {1: ["Geom-m1-i1-c1-opt", "Geom-m1-i2-c1-opt", "Geom-m1-i2-c2-opt"], 2: ["Geom-m2-i1-c1-opt"]}
    qm7x = summarize(write_real_qm7x(tmp_path / "isomers.hdf5", isomers))
    assert (qm7x["n_molecules"], qm7x["n_formulas"]) == (3, 2)
    assert "molecules:          3 (2 distinct formulas)" in format_summary(qm7x)

    # a plain xyz names no molecules: ethanol and dimethyl ether share C2H6O, so 3 molecules are 2 formulas
    path = tmp_path / "qm9_like.xyz"
    ase.io.write(path, [ase.build.molecule(name) for name in ("CH3CH2OH", "CH3OCH3", "H2O")], format="extxyz")
    plain = summarize(path)
    assert (plain["n_molecules"], plain["n_formulas"]) == (None, 2)
    text = format_summary(plain)
    assert "formulas:           2 distinct" in text and "molecules:" not in text

    md17 = tmp_path / "water.npz"
    write_md17(md17, n_frames=4)
    assert summarize(md17)["n_molecules"] == 1


# ---------------------------------------------------------------- the real files in shared/data


def _shared(name: str) -> Path:
    folder = shared_data_dir()
    if folder is None or not (folder / name).is_file():
        pytest.skip(f"{name} not available: ../shared/data beside the checkout is absent")
    return folder / name


def test_real_rmd17_ethanol_extxyz_in_kcal_per_mol(tmp_path):
    path = _shared("ethanol_reduced_100.xyz")
    lines = path.read_text().splitlines()
    raw_energy = float(re.search(r"energy=(\S+)", lines[1]).group(1))
    raw_force = np.array(lines[2].split()[4:7], dtype=float)
    assert raw_energy == -97079.92222178938
    frames = read(path, energy_unit="kcal/mol")
    assert len(frames) == 100
    assert all(len(atoms) == 9 and atoms.get_chemical_formula(mode="hill") == "C2H6O" for atoms in frames)
    energy = frames[0].get_potential_energy()
    assert energy / raw_energy == pytest.approx(KCAL_PER_MOL_IN_EV, rel=1e-9)
    assert energy == pytest.approx(-4209.78, abs=0.01)
    np.testing.assert_allclose(frames[0].get_forces()[0], raw_force * KCAL_PER_MOL_IN_EV, rtol=1e-12)
    spread = np.ptp([atoms.get_potential_energy() for atoms in frames])
    assert 0.1 < spread < 5.0  # thermal fluctuations of ethanol, in eV


def test_the_rule_flags_rmd17_read_as_ev_and_passes_it_in_kcal_per_mol():
    path = _shared("ethanol_reduced_100.xyz")
    reason = implausible_in_ev(read(path))
    assert reason is not None and "frame 0 has energy -97080 eV" in reason and "5540 eV" in reason
    assert implausible_in_ev(read(path, energy_unit="kcal/mol")) is None


def test_the_rule_passes_heavy_atoms_and_flags_atomization_energies_and_forces_in_kcal_per_mol():
    ccl4 = Atoms("CCl4", positions=np.eye(5, 3) * 1.77)
    ccl4.calc = SinglePointCalculator(ccl4, energy=-1878.5 * units.Hartree)  # all-electron CCl4, ~ -51100 eV
    assert implausible_in_ev([ccl4]) is None
    ccl4.calc = SinglePointCalculator(ccl4, energy=-1878.5 * units.Hartree / KCAL_PER_MOL_IN_EV)
    assert "more in magnitude than the 63" in implausible_in_ev([ccl4])
    atoms = Atoms(numbers=WATER[0], positions=WATER[1])
    atoms.info["atomization_energy"] = -10.0 * 23.06  # a water's ~10 eV, in kcal/mol
    assert "atomization energy -76.9 eV per atom" in implausible_in_ev([atoms])
    atoms.info["atomization_energy"] = -10.0
    assert implausible_in_ev([atoms]) is None
    atoms.calc = SinglePointCalculator(atoms, energy=-5.0, forces=np.full((3, 3), 80.0))  # relative energy
    assert "max |F| 139 eV/Å" in implausible_in_ev([atoms])
    atoms.calc = SinglePointCalculator(atoms, energy=-5.0, forces=np.full((3, 3), 5.0))
    assert implausible_in_ev([atoms]) is None


def test_real_qm7x_geometries_are_one_c5h7ns_molecule():
    path = _shared("qm7x_reduced_100.xyz")
    frames = read(path)
    assert len(frames) == 100
    for atoms in frames:
        counts = dict(zip(*np.unique(atoms.get_chemical_symbols(), return_counts=True)))
        assert counts == {"C": 5, "H": 7, "N": 1, "S": 1}
        assert atoms.calc is None or "energy" not in atoms.calc.results
        distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
        assert distances.min() > 0.8  # real molecules: no overlapping atoms
