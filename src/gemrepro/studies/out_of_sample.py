"""Out-of-sample molecules (Stocker et al., Fig. 3): the largest model on four larger molecules at 1200 K.

The pieces are the sweep's (:mod:`gemrepro.studies.sweep`), so the cache and file formats are
shared:

``oos-start``
    paracetamol, 4H-furo[2,3-c]pyrrol-6-amine, histidine and Ser-Trp-Leu: an RDKit conformer
    each, relaxed with GFN2-xTB (as the sweep's ``md-start``).
``md-sweep``
    one batched Langevin run of the four molecules at 1200 K with the scale's largest
    learning-curve model (:func:`~gemrepro.studies.sweep.run_sweep_md`, keyed by these start
    structures, so it never collides with the temperature sweep).
``md-labels``
    the sampled frames relabelled twice: with the reference method, and with the same method
    without its dispersion term, to measure how much of the atomization energy is dispersion.

Atomization energies stay consistent in both relabellings: each subtracts the free atoms of
*its own* method, and a lone atom has no dispersion partner, so the free atoms are the same and
the difference of the two atomization energies is the molecule's dispersion energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from ase.io import write

from gemrepro import paper
from gemrepro.cache.artifacts import Artifact, get_or_create
from gemrepro.cache.paths import artifacts_dir
from gemrepro.catalog import out_of_sample as molecules_of_fig3
from gemrepro.config.scales import Scale
from gemrepro.data.build import SAMPLER_METHOD, molecule_seed
from gemrepro.data.sampling import embed_conformers, relax
from gemrepro.reference import get_method
from gemrepro.reference.dispersion import d4_pair_energies
from gemrepro.studies.learning_curve import learning_curve, model_artifacts, resolve_variant
from gemrepro.studies.sweep import (
    Protocol,
    load_frames,
    relabel_runs,
    run_sweep_md,
    sampled_frames,
    systems_table,
)

__all__ = [
    "NO_DISPERSION",
    "OutOfSample",
    "force_component_errors",
    "frame_dispersion",
    "model_ranges",
    "out_of_sample",
    "out_of_sample_protocol",
    "out_of_sample_starts",
]

START_STAGE = "oos-start"
STAGE_VERSION = 1  # bump when what these artifacts hold or how they are computed changes

#: GFN2-xTB relaxation of the start structures (max force eV/Å, BFGS steps). Looser than the
#: sweep's: a 57-atom tripeptide costs ~0.3 s per xTB call, the RDKit conformer is already near
#: a minimum, and 1200 K Langevin dynamics forgets the last 0.1 eV/Å within femtoseconds.
RELAX: dict[str, Any] = {"fmax": 0.1, "steps": 100}

#: Options that switch off each reference method's dispersion term.
NO_DISPERSION: dict[str, dict] = {"gfn2-xtb": {"dispersion": False}, "pbe0": {"dispersion": None}}


def out_of_sample_protocol(scale: Scale) -> Protocol:
    """The scale's MD protocol (length, time step, 72 frames) at the paper's single temperature, 1200 K."""
    return Protocol(
        scale.md_time_ps, (float(paper.OUT_OF_SAMPLE["temperature"]),), n_sampled_frames=scale.n_sampled_frames
    )


def out_of_sample_starts(seed: int = 0, root=None) -> Artifact:
    """The four out-of-sample molecules, conformer-embedded and relaxed with GFN2-xTB (:data:`RELAX`); ``start.xyz``."""
    molecules = molecules_of_fig3()
    params = {
        "molecules": {m.name: m.smiles for m in molecules},
        "seed": int(seed),
        "relax": SAMPLER_METHOD,
        "relax_settings": RELAX,
        "stage_version": STAGE_VERSION,
    }

    def build(folder: Path) -> dict:
        method = get_method(SAMPLER_METHOD)
        images = []
        for m in molecules:
            conformer = embed_conformers(m.smiles, 1, seed=molecule_seed(seed, m.smiles) % 2**31)[0]
            atoms = relax(conformer, method, **RELAX)
            atoms.info["name"] = m.name
            images.append(atoms)
        write(folder / "start.xyz", images, format="extxyz")
        return {"n_molecules": len(images), "atoms": {a.info["name"]: len(a) for a in images}}

    return get_or_create(START_STAGE, params, build, root)


def model_ranges(model: Artifact) -> tuple[float, float]:
    """(cutoff, receptive field) of a model in Å: its graph cutoff, and how far messages reach.

    Every interaction block passes messages one cutoff further, so an atom's energy depends on
    atoms up to ``num_blocks`` cutoffs away (GemNet-Q's quadruplets reach ``int_cutoff``).
    """
    config = model.manifest["params"]["model"]
    cutoff = float(config["cutoff"])
    reach = cutoff * int(config["num_blocks"])
    if config.get("variant") == "Q":
        reach = max(reach, float(config["int_cutoff"]) * int(config["num_blocks"]))
    return cutoff, reach


def _frame_geometries(md: Artifact, frames: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """(numbers, positions) of each (system, frame) row, read from the run's trajectory."""
    out = []
    with h5py.File(md.file("trajectory.h5"), "r") as f:
        offsets, numbers = f["systems/atom_offset"][()], f["systems/numbers"][()]
        for s, k in frames[["system", "frame"]].astype(int).itertuples(index=False):
            a, b = int(offsets[s]), int(offsets[s + 1])
            out.append((numbers[a:b], f["frames/positions"][k, a:b]))
    return out


def frame_dispersion(md: Artifact, frames: pd.DataFrame, beyond: dict[str, float]) -> pd.DataFrame:
    """Per frame, the D4 energy (GFN2-xTB damping) in total and of the pairs beyond given distances.

    ``beyond`` maps a column name to a distance (Å). Columns ``system``, ``frame``, ``d4_energy``
    and one per entry of ``beyond`` (eV). Frames with non-finite coordinates (a system that blew
    up) get NaN.
    """
    bad = {name: d for name, d in beyond.items() if not (np.isfinite(d) and d > 0)}
    if bad:
        raise ValueError(f"beyond: expected positive distances in Å, got {bad}")
    rows = []
    for (s, k), (numbers, positions) in zip(
        frames[["system", "frame"]].astype(int).itertuples(index=False), _frame_geometries(md, frames)
    ):
        row = {"system": s, "frame": k, "d4_energy": np.nan, **{name: np.nan for name in beyond}}
        if np.all(np.isfinite(positions)):
            pairs = d4_pair_energies(numbers, positions)
            separation = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
            row["d4_energy"] = float(pairs.sum())
            row.update({name: float(pairs[separation > d].sum()) for name, d in beyond.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def force_component_errors(labels: Artifact) -> pd.DataFrame:
    """Every force component's error (model minus reference, eV/Å) of the converged frames, by molecule."""
    frames = load_frames(labels)
    with np.load(labels.file("forces.npz")) as forces:
        difference = forces["model"] - forces["reference"]
        offsets = forces["atom_offset"]
    parts = [
        pd.DataFrame({"molecule": row.molecule, "error": difference[offsets[i] : offsets[i + 1]].ravel()})
        for i, row in enumerate(frames.itertuples(index=False))
        if row.converged
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"molecule": [], "error": []})


@dataclass
class OutOfSample:
    """Artifacts and tables of the out-of-sample experiment at one scale."""

    protocol: Protocol
    starts: Artifact
    model: Artifact
    train_size: int
    md: Artifact
    labels: Artifact
    labels_no_dispersion: Artifact
    cutoff: float  # Å, the model's graph cutoff
    receptive_field: float  # Å, how far its messages reach
    trajectories: pd.DataFrame  # one row per molecule's trajectory, with its failure
    frames: pd.DataFrame  # one row per relabelled frame, with and without dispersion
    force_errors: pd.DataFrame  # one row per force component: molecule, error

    def artifacts(self) -> list[Artifact]:
        return [self.md, self.labels, self.labels_no_dispersion]


def out_of_sample(
    scale: Scale,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    variant: str | None = None,
    root=None,
    progress: bool = False,
    scheduler: str | None = None,
    n_workers: int | None = None,
    device: str = "cpu",
) -> OutOfSample:
    """Run (or load) the out-of-sample experiment of a scale with its largest learning-curve model.

    ``frames`` holds the relabelled-frame columns of :func:`~gemrepro.studies.sweep.relabel`
    plus ``reference_atomization_energy_no_dispersion`` and ``dispersion_energy``
    (reference AE with minus without dispersion, eV), and the D4 pair-sum columns of
    :func:`frame_dispersion` at the model's cutoff and receptive field.
    """
    if reference not in NO_DISPERSION:
        raise ValueError(f"reference: expected one of {', '.join(NO_DISPERSION)}, got {reference!r}")
    variant = resolve_variant(scale, variant)
    root = Path(root) if root else artifacts_dir()
    protocol = out_of_sample_protocol(scale)
    curve = learning_curve(
        scale=scale, seed=seed, reference=reference, variant=variant, root=root, progress=progress, device=device
    )
    largest = int(np.argmax(curve["train_size"].to_numpy()))
    model = model_artifacts(curve, root=root)[largest]
    starts = out_of_sample_starts(seed, root)
    md = run_sweep_md(model, starts, protocol, seed, root, progress, device)
    chosen = sampled_frames(md, protocol.n_sampled_frames)
    labels = relabel_runs({"full": (md, chosen)}, reference, root=root, scheduler=scheduler, n_workers=n_workers)[
        "full"
    ]
    bare = relabel_runs(
        {"bare": (md, chosen)}, reference, NO_DISPERSION[reference], root=root, scheduler=scheduler, n_workers=n_workers
    )["bare"]
    cutoff, reach = model_ranges(model)

    frames = load_frames(labels)
    without = load_frames(bare)[["system", "frame", "reference_atomization_energy"]]
    frames = frames.merge(
        without.rename(columns={"reference_atomization_energy": "reference_atomization_energy_no_dispersion"}),
        on=["system", "frame"],
        how="left",
        validate="one_to_one",
    )
    frames["dispersion_energy"] = (
        frames["reference_atomization_energy"] - frames["reference_atomization_energy_no_dispersion"]
    )
    d4 = frame_dispersion(md, frames, {"d4_beyond_cutoff": cutoff, "d4_beyond_receptive_field": reach})
    frames = frames.merge(d4, on=["system", "frame"], how="left", validate="one_to_one")
    return OutOfSample(
        protocol,
        starts,
        model,
        int(curve["train_size"].iloc[largest]),
        md,
        labels,
        bare,
        cutoff,
        reach,
        systems_table(md),
        frames,
        force_component_errors(labels),
    )
