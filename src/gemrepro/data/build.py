"""Build the QM7-X-style labelled dataset: one Dask task per molecule, one artifact per molecule.

Each molecule's structures (``opt`` plus ``d1..dN`` per conformer) and their labels are cached
as a ``labels`` artifact as soon as its task finishes, so a killed build resumes where it
stopped. The dataset artifact then gathers them into one HDF5 file in the QM7-X layout plus
``labels.csv``, the bookkeeping of every calculation including the failed ones.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula
from tqdm.std import tqdm

from gemrepro.cache.artifacts import Artifact, get_or_create, load_artifact
from gemrepro.cache.bundle import unpack_shipped
from gemrepro.cache.cluster import dask_client
from gemrepro.cache.paths import artifacts_dir
from gemrepro.catalog import dataset_molecules
from gemrepro.config.scales import Scale
from gemrepro.data.formats import write_qm7x
from gemrepro.data.sampling import displace, embed_conformers, hessian, normal_modes, relax
from gemrepro.reference import atomization_energy, free_atom_energies, get_method

SAMPLER_VERSION = 1  # bump when the sampling recipe changes: it is part of every cache key
SAMPLER_METHOD = "gfn2-xtb"  # relaxation and Hessian, whatever labels the structures
SHIPPED_PART = "labels"  # a scale's labels ship in models/<scale>-labels.tar.xz (its slowest minutes)


def molecule_seed(seed: int, smiles: str) -> int:
    """A per-molecule seed independent of which other molecules are built."""
    digest = hashlib.sha256(f"{seed}:{smiles}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class MoleculeTask:
    """Everything a worker needs to sample and label one molecule."""

    smiles: str
    n_conformers: int
    n_displaced: int
    seed: int
    reference: str
    reference_options: tuple[tuple[str, object], ...] = ()

    def params(self) -> dict:
        return {
            "smiles": self.smiles,
            "n_conformers": self.n_conformers,
            "n_displaced": self.n_displaced,
            "seed": self.seed,
            "reference": self.reference,
            "reference_options": dict(self.reference_options),
            "sampler_version": SAMPLER_VERSION,
        }


def sample_and_label(task: MoleculeTask) -> dict:
    """Run on a worker: conformers -> xTB relax -> Hessian -> displacements -> labels.

    Never raises for chemistry: a molecule whose sampling fails comes back with ``error`` set and
    no structures; a structure whose label fails keeps ``converged=False`` and its message.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(molecule_seed(task.seed, task.smiles))
    sampler = get_method(SAMPLER_METHOD)
    labeller = get_method(task.reference, **dict(task.reference_options))
    rows: list[dict] = []
    try:
        conformers = embed_conformers(task.smiles, task.n_conformers, seed=int(rng.integers(2**31)))
        structures = []
        for c, conformer in enumerate(conformers, start=1):
            relaxed = relax(conformer, sampler)
            modes = normal_modes(relaxed, hessian(relaxed, sampler))
            structures.append((c, "opt", relaxed))
            for d, displaced in enumerate(displace(relaxed, modes, task.n_displaced, rng), start=1):
                structures.append((c, f"d{d}", displaced))
    except (RuntimeError, ValueError) as exc:
        return {"task": task, "error": f"sampling failed: {exc}", "rows": [], "wall_time": time.perf_counter() - start}
    for conformer_id, label, atoms in structures:
        result = labeller.compute(atoms.numbers, atoms.positions)
        rows.append(
            {
                "conformer": conformer_id,
                "label": label,
                "numbers": atoms.numbers.copy(),
                "positions": atoms.positions.copy(),
                "energy": result.energy,
                "forces": result.forces,
                "converged": bool(result.converged),
                "error": result.error or "",
                "wall_time": result.wall_time,
            }
        )
    return {"task": task, "error": "", "rows": rows, "wall_time": time.perf_counter() - start}


def _save_molecule(folder: Path, outcome: dict) -> dict:
    rows = outcome["rows"]
    payload: dict[str, Any] = {"error": np.array(outcome["error"]), "wall_time": np.array(outcome["wall_time"])}
    if rows:
        payload.update(
            numbers=rows[0]["numbers"],
            conformer=np.array([r["conformer"] for r in rows]),
            label=np.array([r["label"] for r in rows]),
            positions=np.stack([r["positions"] for r in rows]),
            energy=np.array([r["energy"] for r in rows]),
            forces=np.stack([r["forces"] for r in rows]),
            converged=np.array([r["converged"] for r in rows]),
            label_error=np.array([r["error"] for r in rows]),
            label_time=np.array([r["wall_time"] for r in rows]),
        )
    np.savez_compressed(folder / "labels.npz", **payload)
    return {"n_structures": len(rows), "n_converged": int(sum(r["converged"] for r in rows)), "error": outcome["error"]}


def label_molecules(
    tasks: list[MoleculeTask],
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    root=None,
) -> list[Artifact]:
    """The ``labels`` artifact of every task, computing the missing ones on a Dask cluster."""
    artifacts: dict[int, Artifact] = {}
    missing = []
    for i, task in enumerate(tasks):
        found = load_artifact("labels", task.params(), root)
        if found is None:
            missing.append(i)
        else:
            artifacts[i] = found
    bar = tqdm(
        total=len(tasks),
        initial=len(artifacts),
        desc="label molecules",
        unit="mol",
        disable=not progress or not missing,
    )

    def store(i: int, outcome: dict) -> None:
        artifacts[i] = get_or_create("labels", tasks[i].params(), lambda tmp: _save_molecule(tmp, outcome), root)
        bar.update()

    if missing and scheduler is None and (n_workers == 1 or len(missing) == 1):
        for i in missing:  # no cluster start-up for a single worker or a single molecule
            store(i, sample_and_label(tasks[i]))
    elif missing:
        # Imported here: dask.distributed is slow to import and only a cluster run needs it.
        from distributed import as_completed

        with dask_client(scheduler, n_workers) as client:
            futures = {client.submit(sample_and_label, tasks[i], pure=False): i for i in missing}
            for future in as_completed(futures):
                store(futures[future], future.result())
    bar.close()
    return [artifacts[i] for i in range(len(tasks))]


def _formula_ids(smiles_list: list[str]) -> dict[str, tuple[int, int]]:
    """QM7-X numbering: ``m`` counts distinct formulas, ``i`` the isomers within a formula."""
    formulas = {s: CalcMolFormula(Chem.MolFromSmiles(s)) for s in smiles_list}
    formula_index = {f: k for k, f in enumerate(sorted(set(formulas.values())), start=1)}
    isomers: dict[str, int] = {}
    ids = {}
    for s in smiles_list:
        f = formulas[s]
        isomers[f] = isomers.get(f, 0) + 1
        ids[s] = (formula_index[f], isomers[f])
    return ids


def dataset_params(
    scale: Scale,
    reference: str = "gfn2-xtb",
    seed: int = 0,
    molecules: list | None = None,
    reference_options: dict | None = None,
) -> tuple[dict, list[MoleculeTask]]:
    """Cache parameters of :func:`build_dataset` and its per-molecule tasks, computed without
    labelling anything (a campaign's dry run asks what exists). The scale enters by its name."""
    method = get_method(reference, **(reference_options or {}))  # a one-line error before any work
    if molecules is None:
        molecules = dataset_molecules(scale.n_molecules, scale.n_md_molecules, seed=seed)
    smiles = [m.smiles if hasattr(m, "smiles") else str(m) for m in molecules]
    options = tuple(sorted(method.options().items()))
    tasks = [MoleculeTask(s, scale.n_conformers, scale.n_displaced, seed, reference, options) for s in smiles]
    params = {
        "scale": scale.name,
        "reference": reference,
        "reference_options": dict(options),
        "seed": seed,
        "molecules": [t.params() for t in tasks],
    }
    return params, tasks


def build_dataset(
    scale: Scale,
    *,
    reference: str = "gfn2-xtb",
    seed: int = 0,
    molecules: list | None = None,
    reference_options: dict | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    root=None,
) -> Artifact:
    """The labelled dataset of a scale as an artifact holding ``qm7x.hdf5`` and ``labels.csv``."""
    params, tasks = dataset_params(scale, reference, seed, molecules, reference_options)
    found = load_artifact("dataset", params, root)
    if found is not None:
        return found

    method = get_method(reference, **(reference_options or {}))
    smiles = [task.smiles for task in tasks]
    unpack_shipped(scale, Path(root) if root else artifacts_dir(), SHIPPED_PART)  # labels a checkout ships
    labels = label_molecules(tasks, scheduler, n_workers, progress, root)
    elements = _elements(smiles)
    free_atoms = free_atom_energies(method, elements, root=root)
    ids = _formula_ids(smiles)

    def build(folder: Path) -> dict:
        records, rows = [], []
        for task, artifact in zip(tasks, labels):
            mol_id, isomer = ids[task.smiles]
            with np.load(artifact.file("labels.npz"), allow_pickle=False) as stored:
                data = dict(stored)  # read each array once, not once per structure
            if "positions" not in data:
                rows.append(
                    {
                        "mol_id": mol_id,
                        "smiles": task.smiles,
                        "geometry": "",
                        "n_atoms": 0,
                        "converged": False,
                        "error": str(data["error"]),
                        "wall_time": float(data["wall_time"]),
                    }
                )
                continue
            numbers = data["numbers"]
            for k in range(len(data["label"])):
                name = f"Geom-m{mol_id}-i{isomer}-c{int(data['conformer'][k])}-{data['label'][k]}"
                converged = bool(data["converged"][k])
                energy = float(data["energy"][k])
                rows.append(
                    {
                        "mol_id": mol_id,
                        "smiles": task.smiles,
                        "geometry": name,
                        "n_atoms": len(numbers),
                        "converged": converged,
                        "error": str(data["label_error"][k]),
                        "wall_time": float(data["label_time"][k]),
                    }
                )
                if converged:
                    records.append(
                        {
                            "mol_id": mol_id,
                            "isomer": isomer,
                            "conformer": int(data["conformer"][k]),
                            "label": str(data["label"][k]),
                            "numbers": numbers,
                            "positions": data["positions"][k],
                            "energy": energy,
                            "atomization_energy": atomization_energy(energy, numbers, free_atoms),
                            "forces": data["forces"][k],
                        }
                    )
        write_qm7x(folder / "qm7x.hdf5", records, reference_method=reference)
        table = pd.DataFrame(rows)
        table.to_csv(folder / "labels.csv", index=False)
        return {
            "n_molecules": len(tasks),
            "n_configurations": len(records),
            "n_failed": int((~table["converged"]).sum()),
            "label_cpu_time_s": float(table["wall_time"].sum()),
            "free_atom_energies": {str(z): e for z, e in free_atoms.items()},
        }

    return get_or_create("dataset", params, build, root)


def _elements(smiles_list: list[str]) -> list[int]:
    """Atomic numbers present in the molecules (hydrogen included): the free atoms needed."""
    return sorted({a.GetAtomicNum() for s in smiles_list for a in Chem.AddHs(Chem.MolFromSmiles(s)).GetAtoms()})
