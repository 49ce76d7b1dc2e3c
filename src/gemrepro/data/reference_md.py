"""Frames from molecular dynamics driven by the reference method itself (MD17's recipe).

MD17 is a long ab-initio MD trajectory of one molecule at 500 K, sampled every 0.5 fs; a model
is trained on frames drawn from it. Here the forces come from the package's reference method
(GFN2-xTB by default) through ``ase.md.Langevin``, so the same recipe runs on any laptop. The
same routine gives the high-temperature samples of the pretraining corpus: short hot runs of many
molecules, off equilibrium the way OC20's relaxation trajectories are.

A reference calculation that fails mid-run ends that trajectory (MD cannot step without forces);
the frames before it are kept and the failure is recorded, never raised.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

from gemrepro.cache.artifacts import Artifact, get_or_create
from gemrepro.catalog.molecules import molecule_from_smiles
from gemrepro.data.build import SAMPLER_METHOD, molecule_seed
from gemrepro.data.sampling import MethodCalculator, embed_conformers, relax
from gemrepro.reference import atomization_energy, free_atom_energies, get_method

__all__ = [
    "MDRecipe",
    "ReferenceTrajectory",
    "read_frames",
    "reference_md_frames",
    "reference_md_params",
    "relaxed_start",
    "run_reference_md",
]

STAGE = "reference-md"
STAGE_VERSION = 1  # bump when the frames or how they are computed change
FRAMES_FILE = "frames.xyz"


@dataclass(frozen=True)
class MDRecipe:
    """Langevin NVT with the reference method: ``n_frames`` frames, one every ``frame_interval`` steps,
    after ``equilibration_steps`` steps that are thrown away (the start is a relaxed structure)."""

    temperature: float = 500.0
    n_frames: int = 100
    frame_interval: int = 10
    equilibration_steps: int = 200
    dt_fs: float = 0.5
    friction_per_fs: float = 0.01

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature: expected a positive temperature in K, got {self.temperature!r}")
        for name in ("n_frames", "frame_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if (
            isinstance(self.equilibration_steps, bool)
            or int(self.equilibration_steps) != self.equilibration_steps
            or self.equilibration_steps < 0
        ):
            raise ValueError(f"equilibration_steps: expected a non-negative integer, got {self.equilibration_steps!r}")
        for name in ("dt_fs", "friction_per_fs"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")

    @property
    def n_steps(self) -> int:
        return self.equilibration_steps + self.n_frames * self.frame_interval


@dataclass(frozen=True)
class ReferenceTrajectory:
    """Frames of one reference-method run and how it ended."""

    frames: list[Atoms]
    steps: int  # steps taken
    error: str  # "" when the run completed


def relaxed_start(smiles: str, method, seed: int = 0) -> Atoms:
    """An RDKit conformer of ``smiles`` relaxed with ``method`` (the MD start, as in MD17 and QM7-X)."""
    return relax(embed_conformers(smiles, 1, seed=molecule_seed(seed, smiles) % 2**31)[0], method)


def run_reference_md(
    start: Atoms, method, recipe: MDRecipe, *, seed: int = 0, free_atoms: dict[int, float] | None = None
) -> ReferenceTrajectory:
    """Langevin MD of ``start`` on the reference method's forces; every frame keeps its labels.

    Each frame carries energy (eV) and forces (eV/Å) in a SinglePointCalculator and ``step``,
    ``time_ps`` and, given ``free_atoms``, ``atomization_energy`` in ``info``.
    """
    if not isinstance(start, Atoms) or len(start) == 0:
        raise ValueError("start: expected a non-empty ase.Atoms")
    atoms = start.copy()
    atoms.calc = MethodCalculator(method)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=recipe.temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = Langevin(
        atoms,
        recipe.dt_fs * units.fs,
        temperature_K=recipe.temperature,
        friction=recipe.friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )
    frames: list[Atoms] = []
    steps, error = 0, ""

    def record() -> None:
        if steps < recipe.equilibration_steps or (steps - recipe.equilibration_steps) % recipe.frame_interval:
            return
        if steps == recipe.equilibration_steps:
            return  # the first frame is the end of equilibration, not a sample
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions.copy())
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces.copy())
        frame.info.update(step=steps, time_ps=steps * recipe.dt_fs / 1000.0)
        if free_atoms is not None:
            frame.info["atomization_energy"] = atomization_energy(energy, frame.numbers, free_atoms)
        frames.append(frame)

    try:
        while steps < recipe.n_steps:
            dyn.run(1)
            steps += 1
            record()
    except RuntimeError as exc:  # MethodCalculator: the reference did not converge
        error = f"step {steps + 1}: {exc}".splitlines()[0]
    return ReferenceTrajectory(frames, steps, error)


def reference_md_params(smiles: str, recipe: MDRecipe, reference: str = "gfn2-xtb", seed: int = 0) -> dict:
    """The cache parameters of :func:`reference_md_frames`: its key is known before anything is run."""
    return {
        "smiles": smiles,
        "recipe": asdict(recipe),
        "reference": reference,
        "seed": int(seed),
        "relax": SAMPLER_METHOD,
        "stage_version": STAGE_VERSION,
    }


def reference_md_frames(
    smiles: str, recipe: MDRecipe, reference: str = "gfn2-xtb", seed: int = 0, *, name: str = "", root=None
) -> Artifact:
    """The cached reference-MD frames of one molecule: ``frames.xyz`` (extended XYZ) and ``start.xyz``.

    The manifest records how many frames were made and, when the reference failed, where.
    """
    molecule_from_smiles(smiles)  # one-line error for an invalid SMILES before any work
    params = reference_md_params(smiles, recipe, reference, seed)

    def build(folder: Path) -> dict:
        method = get_method(reference)
        start = relaxed_start(smiles, get_method(SAMPLER_METHOD), seed)
        free_atoms = free_atom_energies(method, start.numbers, root=root)
        start.info["name"] = name or smiles
        run = run_reference_md(start, method, recipe, seed=seed, free_atoms=free_atoms)
        for frame in run.frames:
            frame.info["name"] = name or smiles
        write(folder / "start.xyz", start, format="extxyz")
        if run.frames:
            write(folder / FRAMES_FILE, run.frames, format="extxyz")
        return {"name": name or smiles, "n_frames": len(run.frames), "steps": run.steps, "error": run.error}

    return get_or_create(STAGE, params, build, root)


def read_frames(artifact: Artifact) -> list[Atoms]:
    """The labelled frames of a :func:`reference_md_frames` artifact."""
    if not artifact.file(FRAMES_FILE).is_file() or artifact.manifest.get("n_frames", 0) == 0:
        return []
    return cast(list[Atoms], read(artifact.file(FRAMES_FILE), index=":", format="extxyz"))  # index=":": a list
