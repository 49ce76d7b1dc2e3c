"""Samplers: recompute a small piece of a stored artifact with today's code and say how far it lands.

``python -m gemrepro.studies.stages --record`` accepts a changed stage's old artifacts only when its
sampler reproduces one of them. Each sampler calls the stage's own public function (today's build
path, not a copy of it) on a shortened design in a scratch cache, and compares:

* MD stages: the first :data:`COMPARED_STEPS` steps of every trajectory (positions, alive flags;
  ``arms-md`` stores a frame every 1,000 steps: up to its first stored frame);
* label stages: a few labels recomputed with the reference method (energies, forces);
* model stages: the first evaluation of a training run from the same seed (losses, errors);
* stages that gather stored inputs (``dataset``, ``committee-disagreement``): rebuilt from the same
  stored inputs, every value (or every few frames') compared;
* start structures (``md-start``, ``oos-start``): the xTB relaxations redone, positions compared.

Tolerances: MD on one CPU thread agrees to rounding over the first steps on any CPU type (worst
seen across machines 7e-5 Å, ``tests/studies/test_shipped_models.py``); training from the same seed
agrees to float32 rounding after a hundred steps. The samplers live here, not in the stages'
modules, so that writing or improving one does not change the code digest of what it checks.
"""

from __future__ import annotations

import dataclasses
import filecmp
import hashlib
import importlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import h5py
import numpy as np
import pandas as pd
import torch
from ase import Atoms

from gemrepro.cache.artifacts import MANIFEST, Artifact, artifact_key
from gemrepro.cache.paths import shared_data_dir
from gemrepro.cache.stages import STAGES
from gemrepro.catalog import MD17
from gemrepro.catalog.molecules import molecule_from_smiles
from gemrepro.config.designs import LongRunDesign, SeedsDesign
from gemrepro.config.scales import Scale, get_scale
from gemrepro.data import build as data_build
from gemrepro.data import reference_md
from gemrepro.data.build import MoleculeTask, dataset_params, sample_and_label
from gemrepro.md import read_system
from gemrepro.md.queue import trajectory_path
from gemrepro.reference.free_atoms import free_atom_energy
from gemrepro.reference.registry import get_method
from gemrepro.studies import committee, holes, long_runs, out_of_sample, pretraining_arms, sweep
from gemrepro.studies import learning_curve as lc
from gemrepro.train import TrainConfig

COMPARED_STEPS = 400
"""MD steps compared: where trajectories from the same seed still agree to rounding on any CPU."""
POSITIONS_ATOL = 1e-3  # Å
ENERGY_ATOL = 1e-4  # eV, a reference label recomputed at the same geometry
FORCES_ATOL = 1e-3  # eV/Å
LOSS_RTOL = 1e-3  # relative, the first evaluation of a training run from the same seed


class SampleUnavailable(Exception):
    """A sampler cannot recompute this artifact (an input is missing, or it lacks what is compared)."""


@dataclass(frozen=True)
class Inputs:
    """Where a sampler finds the artifacts a stored one was made from (``roots``), and room to work."""

    roots: list[Path]
    scratch: Path

    def find(self, stage: str, key: str) -> Artifact:
        """The stored input ``stage/key`` from any root (whatever code made it: it is an input here)."""
        for root in self.roots:
            manifest = Path(root) / stage / key / MANIFEST
            if manifest.is_file():
                return Artifact(manifest.parent, json.loads(manifest.read_text()))
        raise SampleUnavailable(f"its input {stage}/{key} is in none of {', '.join(map(str, self.roots))}")

    def folder(self, name: str) -> Path:
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Sample:
    """What a sampler recomputed of one stored artifact, and the largest difference it found."""

    stage: str
    key: str
    made_by: str
    what: str
    difference: float
    tolerance: float
    unit: str
    seconds: float

    @property
    def agrees(self) -> bool:
        return bool(np.isfinite(self.difference) and self.difference <= self.tolerance)

    def evidence(self) -> str:
        """One line for the record: which artifact, what was recomputed, the difference, when."""
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        return (
            f"{self.stage}/{self.key} (digest {self.made_by}): {self.what} recomputed in {self.seconds:.0f} s, "
            f"max |Δ| = {self.difference:.3g} {self.unit} (tolerance {self.tolerance:g}), {day}"
        )


Sampler = Callable[[Artifact, Inputs], Sample]


def _sample(artifact: Artifact, what: str, difference: float, tolerance: float, unit: str, start: float) -> Sample:
    made = str(artifact.manifest.get("code_digest"))
    return Sample(artifact.stage, artifact.key, made, what, difference, tolerance, unit, time.perf_counter() - start)


# ----------------------------------------------------------------------------- MD prefixes
def frames_difference(ours: dict, theirs: dict, steps: int = COMPARED_STEPS) -> float:
    """Largest position difference (Å) over the stored frames at or before ``steps`` of two runs of one
    system (:func:`gemrepro.md.read_system` dicts); infinite when their steps or alive flags differ."""
    n = len(ours["step"])
    if n > len(theirs["step"]) or theirs["step"][:n].tolist() != ours["step"].tolist():
        return float("inf")
    early = ours["step"] <= steps
    if early.sum() < 2 or not np.array_equal(ours["alive"][early], theirs["alive"][:n][early]):
        return float("inf")
    return float(np.abs(ours["positions"][early] - theirs["positions"][:n][early]).max())


def trajectory_difference(ours: Path, theirs: Path, steps: int = COMPARED_STEPS) -> float:
    """:func:`frames_difference` over every system of two batched trajectory files."""
    with h5py.File(ours, "r") as f:
        n_systems = len(f["systems/atom_offset"]) - 1
    return max(frames_difference(read_system(ours, s), read_system(theirs, s), steps) for s in range(n_systems))


def _prefix_frames(frame_interval: int) -> int:
    """Whole frame intervals covering :data:`COMPARED_STEPS` (at least two frames after the start)."""
    return max(2, -(-COMPARED_STEPS // frame_interval))


def start_structures_of(key: str, inputs: Inputs) -> Artifact:
    """The ``md-start`` artifact ``key``: stored, else recomputed (cheap: a few xTB relaxations) if a
    number of MD molecules and seed give that key."""
    try:
        return inputs.find(sweep.START_STAGE, key)
    except SampleUnavailable:
        pass
    for seed in (0, 1, 2):
        for n in range(1, 41):
            if artifact_key(sweep.start_params(n, seed)) == key:
                return sweep.start_structures(n, seed, root=inputs.folder("starts"))
    raise SampleUnavailable(f"its start structures {sweep.START_STAGE}/{key} are stored nowhere and not recomputable")


def _model(key: str, inputs: Inputs) -> Artifact:
    return inputs.find(lc.STAGE, key)


def _prefix_protocol(protocol: sweep.Protocol) -> sweep.Protocol:
    """``protocol`` cut to the whole frame intervals of :func:`_prefix_frames`: the same stored steps, fewer."""
    frames = _prefix_frames(protocol.frame_interval)
    md_time_ps = frames * protocol.frame_interval * protocol.dt_fs / 1000.0
    return dataclasses.replace(protocol, md_time_ps=md_time_ps, n_sampled_frames=frames)


def _rerun_sample(artifact: Artifact, run: Artifact, prefix: sweep.Protocol, n_systems: int, start: float) -> Sample:
    """A rerun prefix of a batched MD run against the stored run: the largest position difference."""
    difference = trajectory_difference(run.file("trajectory.h5"), artifact.file("trajectory.h5"))
    what = f"the first {prefix.n_steps} MD steps of {n_systems} trajectories"
    return _sample(artifact, what, difference, POSITIONS_ATOL, "Å", start)


def _protocol(stored: dict) -> sweep.Protocol:
    """The sweep protocol a stored run's parameters name (``asdict`` of it; the temperatures as a list)."""
    return sweep.Protocol(
        md_time_ps=float(stored["md_time_ps"]),
        temperatures=tuple(stored["temperatures"]),
        dt_fs=float(stored["dt_fs"]),
        friction_per_fs=float(stored["friction_per_fs"]),
        n_sampled_frames=int(stored["n_sampled_frames"]),
    )


def sample_sweep(artifact: Artifact, inputs: Inputs) -> Sample:
    """``md-sweep``: the run's first frames, recomputed through :func:`sweep.run_sweep_md`."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    protocol = _protocol(p["protocol"])
    prefix = _prefix_protocol(protocol)
    model, starts = _model(p["model"], inputs), start_structures_of(p["starts"], inputs)
    run = sweep.run_sweep_md(model, starts, prefix, p["seed"], inputs.folder("md-sweep"), shipped=False)
    n_systems = len(sweep.sweep_systems(starts, protocol))
    return _rerun_sample(artifact, run, prefix, n_systems, start)


def sample_seeds(artifact: Artifact, inputs: Inputs) -> Sample:
    """``md-seeds``: the run's first frames, recomputed through :func:`holes.seed_runs`."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    if p.get("run_criteria") != repr(holes.RUN_CRITERIA) or p.get("criteria") != repr(holes.ANALYSIS_CRITERIA):
        raise SampleUnavailable("its failure criteria are not today's (its key differs: nothing to compare)")
    protocol = _protocol(p["protocol"])
    design = SeedsDesign(**p["design"])
    prefix = _prefix_protocol(protocol)
    model, starts = _model(p["model"], inputs), start_structures_of(p["starts"], inputs)
    run = holes.seed_runs(model, starts, prefix, design, p["seed"], inputs.folder("md-seeds"), shipped=False)
    return _rerun_sample(artifact, run, prefix, run.manifest["n_systems"], start)


def sample_long_run(artifact: Artifact, inputs: Inputs) -> Sample:
    """``md-long``: every trajectory's first frames, recomputed through :func:`long_runs.long_run`."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    design = LongRunDesign(**p["design"])
    n_steps = _prefix_frames(design.frame_interval) * design.frame_interval
    prefix = dataclasses.replace(design, time_ps=n_steps * p["dt_fs"] / 1000.0)
    model, starts = _model(p["model"], inputs), start_structures_of(p["starts"], inputs)
    run = long_runs.long_run(
        get_scale(p["scale"]), model, starts, prefix, p["seed"], inputs.folder("md-long"), shipped=False
    )
    n = int(run.manifest["n_systems"])
    difference = max(
        frames_difference(
            read_system(trajectory_path(run.file("runs"), k), 0),
            read_system(trajectory_path(artifact.file("runs"), k), 0),
        )
        for k in range(n)
    )
    return _sample(
        artifact, f"the first {n_steps} MD steps of {n} trajectories", difference, POSITIONS_ATOL, "Å", start
    )


def sample_arms_run(artifact: Artifact, inputs: Inputs) -> Sample:
    """``arms-md``: the trajectories up to their first stored frame, through
    :func:`pretraining_arms.stability_run` (its start geometry read from the stored run, checked
    against the key's digest of it)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    stored = read_system(artifact.file("trajectory.h5"), 0)
    atoms = Atoms(numbers=stored["numbers"], positions=stored["positions"][0])
    geometry = np.ascontiguousarray(atoms.positions).tobytes() + atoms.numbers.tobytes()
    if hashlib.sha256(geometry).hexdigest()[:16] != p["start"]:
        raise SampleUnavailable("its first frame is not the start geometry its key names")
    temperatures = list(dict.fromkeys(p["temperatures"]))
    n_seeds = len(p["temperatures"]) // len(temperatures)
    if [t for t in temperatures for _ in range(n_seeds)] != p["temperatures"]:
        raise SampleUnavailable("its temperatures are not a design's (each temperature times the seeds)")
    models = _any(inputs, ARMS_MODEL_STAGES, p["model"])
    if not models:
        raise SampleUnavailable(f"its model {p['model']} is in none of {', '.join(map(str, inputs.roots))}")
    model = models[0]
    steps = p["frame_interval"]
    run = pretraining_arms.stability_run(
        model,
        atoms,
        temperatures,
        n_seeds,
        steps * p["dt_fs"] / 1000.0,
        file=p["file"],
        seed=p["seed"],
        frame_interval=p["frame_interval"],
        root=inputs.folder("arms-md"),
    )
    difference = trajectory_difference(run.file("trajectory.h5"), artifact.file("trajectory.h5"), steps)
    return _sample(artifact, f"the first {steps} MD steps of {len(p['temperatures'])} trajectories", difference,
                   POSITIONS_ATOL, "Å", start)  # fmt: skip


ARMS_MODEL_STAGES = ("arms-models", "arms-pretrained")


def _any(inputs: Inputs, stages: tuple[str, ...], key: str) -> list[Artifact]:
    found = []
    for stage in stages:
        try:
            found.append(inputs.find(stage, key))
        except SampleUnavailable:
            continue
    return found


def sample_reference_md(artifact: Artifact, inputs: Inputs) -> Sample:
    """``reference-md``: the first frames recomputed through :func:`reference_md.reference_md_frames`
    (the same relaxation, equilibration and thermostat seed; fewer frames)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    theirs = reference_md.read_frames(artifact)
    n = min(REFERENCE_FRAMES, len(theirs))
    if n == 0:
        raise SampleUnavailable("it holds no frames")
    recipe = dataclasses.replace(reference_md.MDRecipe(**p["recipe"]), n_frames=n)
    run = reference_md.reference_md_frames(
        p["smiles"], recipe, p["reference"], p["seed"], root=inputs.folder("reference-md")
    )
    ours = reference_md.read_frames(run)
    if len(ours) != n:
        return _sample(artifact, f"the first {n} frames", float("inf"), 1.0, "of the tolerances", start)
    positions = max(float(np.abs(a.positions - b.positions).max()) for a, b in zip(ours, theirs))
    energy = max(abs(a.get_potential_energy() - b.get_potential_energy()) for a, b in zip(ours, theirs))
    difference = max(positions / POSITIONS_ATOL, energy / ENERGY_ATOL)
    steps = recipe.equilibration_steps + n * recipe.frame_interval
    return _sample(artifact, f"the first {n} frames ({steps} {p['reference']} MD steps)", difference, 1.0,
                   "of the tolerances", start)  # fmt: skip


REFERENCE_FRAMES = 5


# ----------------------------------------------------------------------------- labels
def sample_md_labels(artifact: Artifact, inputs: Inputs) -> Sample:
    """``md-labels``: the cheapest converged frame relabelled with the reference method (energy, forces)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    md = inputs.find(sweep.MD_STAGE, p["md"])
    table = pd.read_csv(artifact.file("frames.csv"))
    converged = table.index[table["converged"].astype(bool) & ~table["after_failure"].astype(bool)]
    if len(converged) == 0:
        raise SampleUnavailable("it holds no converged frame before a failure")
    row = int(table.loc[converged, "n_atoms"].idxmin())
    (job,) = sweep._jobs(md, table.loc[[row], ["system", "frame"]])
    (result,) = sweep.label_frames(p["method"], p["options"], job["numbers"], [job["positions"]])
    forces = np.load(artifact.file("forces.npz"))
    offset = forces["atom_offset"]
    stored = forces["reference"][offset[row] : offset[row + 1]]
    difference = max(
        abs(result["energy"] - float(table.loc[row, "reference_energy"])) / ENERGY_ATOL,
        float(np.abs(result["forces"] - stored).max()) / FORCES_ATOL,
    )
    what = f"1 {p['method']} label (frame {job['frame']} of system {job['system']}), energy and forces"
    return _sample(artifact, what, difference, 1.0, "of the tolerances", start)


def sample_labels(artifact: Artifact, inputs: Inputs) -> Sample:
    """``labels``: the whole molecule re-sampled and relabelled when its reference is cheap (xTB:
    conformers, relaxation, Hessian, displacements, labels); else 1 label at a stored geometry."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    stored = np.load(artifact.file("labels.npz"), allow_pickle=False)
    if "positions" not in stored:
        raise SampleUnavailable("it holds no structures (its sampling failed)")
    options = tuple(sorted(p["reference_options"].items()))
    if p["reference"] == "gfn2-xtb":
        task = MoleculeTask(p["smiles"], p["n_conformers"], p["n_displaced"], p["seed"], p["reference"], options)
        rows = sample_and_label(task)["rows"]
        if len(rows) != len(stored["energy"]):
            return _sample(artifact, "the whole molecule", float("inf"), ENERGY_ATOL, "eV", start)
        positions = float(np.abs(np.stack([r["positions"] for r in rows]) - stored["positions"]).max())
        energy = float(np.nanmax(np.abs(np.array([r["energy"] for r in rows]) - stored["energy"])))
        difference = max(positions / POSITIONS_ATOL, energy / ENERGY_ATOL)
        what = f"the whole molecule ({len(rows)} structures: geometries and xTB labels)"
        return _sample(artifact, what, difference, 1.0, "of the tolerances", start)
    method = get_method(p["reference"], **dict(options))
    result = method.compute(stored["numbers"], stored["positions"][0])
    difference = max(
        abs(result.energy - float(stored["energy"][0])) / ENERGY_ATOL,
        float(np.abs(result.forces - stored["forces"][0]).max()) / FORCES_ATOL,
    )
    return _sample(artifact, f"1 {p['reference']} label", difference, 1.0, "of the tolerances", start)


def sample_free_atom(artifact: Artifact, inputs: Inputs) -> Sample:
    """``free-atoms``: the atom recomputed through :func:`free_atom_energy` (xTB: ms; PBE0: seconds)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    method = get_method(p["method"], **p["options"])
    if method.options() != p["options"]:
        raise SampleUnavailable("its method options are not today's defaults")
    energy = free_atom_energy(method, p["element"], p["multiplicity"], root=inputs.folder("free-atoms"))
    difference = abs(energy - float(artifact.manifest["energy_eV"]))
    return _sample(artifact, f"the free atom Z={p['element']}", difference, ENERGY_ATOL, "eV", start)


# ----------------------------------------------------------------------------- models
HISTORY_COLUMNS = ("train_loss", "val_loss", "val_energy_mae", "val_forces_mae")


def sample_model(artifact: Artifact, inputs: Inputs) -> Sample:
    """``models``: the first ``eval_every`` training steps from the same seed, through
    :func:`learning_curve.train_scale_model` with its step budget cut (the key's ``max_steps`` is the
    only change); compared with the stored history's first evaluation."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    scale = get_scale(p["scale"])
    variants = [v for v in ("T", "Q") if lc.model_config(scale, v).to_dict() == p["model"]]
    if not variants:
        raise SampleUnavailable("its model configuration is not one of today's variants")
    history = pd.read_csv(artifact.file("history.csv"))
    steps = int(history["step"].iloc[0])
    dataset = inputs.find("dataset", p["dataset"])
    root = inputs.folder("models")
    cut = lc.train_config

    def first_steps(*args, **kwargs):
        return dataclasses.replace(cut(*args, **kwargs), max_steps=steps)

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(lc, "train_config", first_steps))
        stack.enter_context(_one_thread())
        data = lc.load_scale_data(scale, p["seed"], p["reference"], root, artifact=dataset)
        model = lc.train_scale_model(
            scale,
            p["split"]["train_size"],
            p["seed"],
            p["reference"],
            variants[0],
            root,
            progress=False,
            data=data,
            member=int(p.get("member", 0)),
            shipped=False,
        )
    difference = first_evaluation_difference(pd.read_csv(model.file("history.csv")), history)
    what = f"the first {steps} training steps (losses and validation errors of the first evaluation)"
    return _sample(artifact, what, difference, LOSS_RTOL, "relative", start)


def first_evaluation_difference(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    """Largest relative difference of the first history rows' losses and validation errors (infinite
    when they are not at the same step)."""
    if int(ours["step"].iloc[0]) != int(theirs["step"].iloc[0]):
        return float("inf")
    a, b = ours.iloc[0], theirs.iloc[0]
    return float(max(abs(a[c] - b[c]) / max(abs(b[c]), 1e-12) for c in HISTORY_COLUMNS))


class _one_thread:
    """One torch thread inside: reductions in the order the shipped artifacts were made in."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)


# ----------------------------------------------------------------------------- the arms' models
FIRST_EVALUATION = "losses and validation errors of the first evaluation"
TARGET_SEEDS = (0, 1, 2)
"""Study seeds tried for a fine-tuning target: an arm model's key names its target runs by a digest,
not by the seed that made them."""


@contextmanager
def _stored_inputs(inputs: Inputs) -> Iterator[None]:
    """Inside, :mod:`~gemrepro.studies.pretraining_arms` gets its dataset and reference MD from the stored
    artifacts of the keys today's code asks for (:meth:`Inputs.find`), never computed: today's
    :func:`~pretraining_arms.corpus` and :func:`~pretraining_arms.target` assemble them, whatever code made them."""

    def reference_md_frames(smiles: str, recipe: reference_md.MDRecipe, reference: str = "gfn2-xtb", seed: int = 0,
                            **_: object) -> Artifact:  # fmt: skip
        key = artifact_key(reference_md.reference_md_params(smiles, recipe, reference, seed))
        return inputs.find(reference_md.STAGE, key)

    def build_dataset(scale: Scale, *, reference: str = "gfn2-xtb", seed: int = 0, molecules: list | None = None,
                      reference_options: dict | None = None, **_: object) -> Artifact:  # fmt: skip
        return inputs.find(
            "dataset", artifact_key(dataset_params(scale, reference, seed, molecules, reference_options)[0])
        )

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(pretraining_arms, "reference_md_frames", reference_md_frames))
        stack.enter_context(mock.patch.object(pretraining_arms, "build_dataset", build_dataset))
        yield


@contextmanager
def _first_steps(steps: int) -> Iterator[None]:
    """Inside, :func:`pretraining_arms.epoch_config` stops a run after ``steps`` updates: its only change."""
    cut = pretraining_arms.epoch_config

    def first_steps(*args: Any, **kwargs: Any) -> TrainConfig:
        return dataclasses.replace(cut(*args, **kwargs), max_steps=steps)

    with mock.patch.object(pretraining_arms, "epoch_config", first_steps):
        yield


def _first_evaluation(artifact: Artifact) -> tuple[pd.DataFrame, int]:
    history = pd.read_csv(artifact.file("history.csv"))
    if history.empty:
        raise SampleUnavailable("its history holds no evaluation")
    return history, int(history["step"].iloc[0])


def _target_formula(scale: Scale) -> str:
    """The formula of the design's MD17 molecule: what a study leaves out of its corpus."""
    molecule = molecule_from_smiles(MD17[pretraining_arms.design_for(scale).molecule])
    return Atoms(molecule.formula).get_chemical_formula()


def sample_arms_pretrained(artifact: Artifact, inputs: Inputs) -> Sample:
    """``arms-pretrained``: the first epoch on the corpus from the same seed, through
    :func:`pretraining_arms.pretrain` with its step budget cut to the first evaluation (its key
    holds no budget: the rerun has the stored key); the corpus assembled by
    :func:`pretraining_arms.corpus` from the stored dataset and hot reference MD its key names. The
    costliest sampler: nothing before the first epoch is stored (at the tiny scale 1,448 steps on 23,000
    frames, 2 to 6 minutes on one core)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    scale = get_scale(p["scale"])
    if any(source.startswith("file:") for source in p["corpus"]):
        raise SampleUnavailable("its corpus is a user's file, which no artifact folder holds")
    formula = _target_formula(scale)
    if pretraining_arms.corpus_sources(scale, p["seed"], p["reference"], formula) != p["corpus"]:
        raise SampleUnavailable(f"its corpus is not the one today's code gives the design (without {formula})")
    history, steps = _first_evaluation(artifact)
    root = inputs.folder(pretraining_arms.PRETRAIN_STAGE)
    with ExitStack() as stack:
        stack.enter_context(_one_thread())
        with _stored_inputs(inputs):
            data = pretraining_arms.corpus(scale, p["seed"], p["reference"], formula, root=root)
        if data.n_excluded != artifact.manifest.get("n_excluded", data.n_excluded):
            raise SampleUnavailable(
                f"its corpus left out {artifact.manifest['n_excluded']} frames, today's {data.n_excluded}"
            )
        stack.enter_context(_first_steps(steps))
        model = pretraining_arms.pretrain(data, scale, p["seed"], p["reference"], root)
    if model.key != artifact.key:
        raise SampleUnavailable("today's code gives its rerun other parameters (another key)")
    difference = first_evaluation_difference(pd.read_csv(model.file("history.csv")), history)
    what = f"the first {steps} pretraining steps on {len(data.frames)} frames ({FIRST_EVALUATION})"
    return _sample(artifact, what, difference, LOSS_RTOL, "relative", start)


def _arms_target(scale: Scale, p: dict, inputs: Inputs, root: Path) -> pretraining_arms.Target:
    """The target an arm model's key names, assembled by today's :func:`pretraining_arms.target` from
    stored reference MD (the study seed found by trying :data:`TARGET_SEEDS`)."""
    if str(p["target"]).startswith("file:"):
        raise SampleUnavailable("its target is a user's file, which no artifact folder holds")
    reasons = []
    with _stored_inputs(inputs):
        for seed in TARGET_SEEDS:
            try:
                found = pretraining_arms.target(scale, seed, p["reference"], None, root)
            except (SampleUnavailable, ValueError) as exc:
                reasons.append(f"seed {seed}: {exc}")
                continue
            if found.source == p["target"] and len(found.validation) == p["n_validation"]:
                return found
            reasons.append(f"seed {seed}: another target ({found.source})")
    raise SampleUnavailable(f"its target {p['target']} is made by none of the study seeds ({'; '.join(reasons)})")


def sample_arms_model(artifact: Artifact, inputs: Inputs) -> Sample:
    """``arms-models``: the first epoch from the same seed (and, fine-tuned, the same stored pretrained
    weights), through :func:`pretraining_arms.arm_model` with its step budget cut to the first
    evaluation (the key's ``train.max_steps`` is the only change). A matching run must also match
    at that evaluation exactly when the stored one did (its matched checkpoint is compared by step)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    scale = get_scale(p["scale"])
    pretrained = None if p["init"] is None else inputs.find(pretraining_arms.PRETRAIN_STAGE, p["init"])
    history, steps = _first_evaluation(artifact)
    root = inputs.folder(pretraining_arms.MODEL_STAGE)
    with ExitStack() as stack:
        stack.enter_context(_one_thread())
        tgt = _arms_target(scale, p, inputs, root)
        stack.enter_context(_first_steps(steps))
        model = pretraining_arms.arm_model(
            tgt,
            scale,
            p["arm"],
            p["size"],
            p["training_seed"],
            pretrained=pretrained,
            match_forces_mae=p["match_forces_mae"],
            reference=p["reference"],
            root=root,
        )
    ours = model.manifest["params"]
    if artifact_key({**ours, "train": {**ours["train"], "max_steps": p["train"]["max_steps"]}}) != artifact.key:
        raise SampleUnavailable("today's code gives its rerun other parameters than its key's, the budget aside")
    difference = first_evaluation_difference(pd.read_csv(model.file("history.csv")), history)
    if p["match_forces_mae"] is not None:
        stored = artifact.manifest.get("matched_step")
        if model.manifest.get("matched_step") != (stored if stored is not None and stored <= steps else None):
            difference = float("inf")
    arm = "fine-tuning" if pretrained is not None else "training"
    what = f"the first {steps} {arm} steps on {p['size']} frames ({FIRST_EVALUATION})"
    return _sample(artifact, what, difference, LOSS_RTOL, "relative", start)


# ----------------------------------------------------------------------------- comparing stored values
NUMBER_KINDS = "biuf"  # numpy dtype kinds compared by their difference: bool, integers, floats


def array_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Largest |Δ| of two arrays of numbers (equal values, NaNs included, count 0); for anything else
    (strings, bytes) 0 when equal and infinite when not; infinite when their shapes differ."""
    a, b = np.asarray(ours), np.asarray(theirs)
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.kind not in NUMBER_KINDS or b.dtype.kind not in NUMBER_KINDS:
        return 0.0 if pd.Series(a.ravel()).equals(pd.Series(b.ravel())) else float("inf")
    if a.size == 0:
        return 0.0
    a, b = a.astype(float), b.astype(float)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    gap = np.where(same, 0.0, np.abs(a - b))
    return float(np.where(np.isnan(gap), np.inf, gap).max())  # NaN against a number: infinitely far


def table_difference(ours: pd.DataFrame, theirs: pd.DataFrame, tolerances: dict[str, float] | None = None) -> float:
    """Largest :func:`array_difference` over the columns of two tables; with ``tolerances``, in units of
    each named column's tolerance, and every other column must be equal (0, else infinite). Infinite
    when their columns or lengths differ."""
    if list(ours.columns) != list(theirs.columns) or len(ours) != len(theirs):
        return float("inf")
    worst = 0.0
    for column in ours.columns:
        gap = array_difference(ours[column].to_numpy(), theirs[column].to_numpy())
        if tolerances is not None:
            gap = gap / tolerances[column] if column in tolerances else (0.0 if gap == 0.0 else float("inf"))
        worst = max(worst, gap)
    return worst


def hdf5_difference(ours: Path, theirs: Path) -> float:
    """Largest :func:`array_difference` over every dataset and attribute of two HDF5 files, all groups
    walked; infinite when one holds a name the other does not. Files with the same bytes are 0 at once
    (the same code and HDF5 library write the same bytes; reading a dataset's 40,000 small arrays takes
    tens of seconds)."""
    if filecmp.cmp(ours, theirs, shallow=False):
        return 0.0
    a, b = _hdf5_values(ours), _hdf5_values(theirs)
    if a.keys() != b.keys():
        return float("inf")
    return max((array_difference(a[name], b[name]) for name in a), default=0.0)


def _hdf5_values(path: Path) -> dict[str, np.ndarray]:
    """Every group (``name/``), dataset (``name``) and attribute (``name@attribute``) of an HDF5 file."""
    with h5py.File(path, "r") as f:
        values = {f"/@{k}": np.asarray(v) for k, v in f.attrs.items()}

        def visit(name: str, item: h5py.Group | h5py.Dataset) -> None:
            values[name if isinstance(item, h5py.Dataset) else f"{name}/"] = (
                np.asarray(item[()]) if isinstance(item, h5py.Dataset) else np.asarray("group")
            )
            values.update({f"{name}@{k}": np.asarray(v) for k, v in item.attrs.items()})

        f.visititems(visit)
    return values


def images_difference(ours: list[Atoms], theirs: list[Atoms]) -> float:
    """Largest position difference (Å) of two lists of named structures; infinite when their names or
    elements differ."""
    if [(a.info.get("name"), a.numbers.tolist()) for a in ours] != [
        (a.info.get("name"), a.numbers.tolist()) for a in theirs
    ]:
        return float("inf")
    return max((float(np.abs(a.positions - b.positions).max()) for a, b in zip(ours, theirs)), default=0.0)


def _same_key(ours: dict, theirs: dict) -> None:
    """Refuse when today's code asks for other parameters than the stored artifact's (its key would
    differ: it is never served, and what today's code builds is another artifact)."""
    if artifact_key(ours) != artifact_key(theirs):
        raise SampleUnavailable("today's code gives its parameters another key (nothing to compare)")


# ----------------------------------------------------------------------------- data and start structures
def sample_dataset(artifact: Artifact, inputs: Inputs) -> Sample:
    """``dataset``: rebuilt through :func:`gemrepro.data.build.build_dataset` from its stored ``labels``
    artifacts (``label_molecules`` returns them; the free atoms are recomputed, ms of xTB each), every
    dataset and attribute of ``qm7x.hdf5`` and every cell of ``labels.csv`` compared."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    designs = {(m["n_conformers"], m["n_displaced"]) for m in p["molecules"]}
    if len(designs) != 1:
        raise SampleUnavailable("its molecules were not all sampled with one design (conformers, displacements)")
    ((n_conformers, n_displaced),) = designs
    try:
        scale = dataclasses.replace(get_scale(p["scale"]), n_conformers=n_conformers, n_displaced=n_displaced)
    except ValueError as exc:
        raise SampleUnavailable(str(exc)) from None
    smiles = [m["smiles"] for m in p["molecules"]]
    design = {"reference": p["reference"], "seed": p["seed"], "molecules": smiles}
    params, _ = data_build.dataset_params(scale, **design, reference_options=p["reference_options"])
    _same_key(params, p)

    def stored_labels(tasks: list[MoleculeTask], *args: object, **kwargs: object) -> list[Artifact]:
        return [inputs.find("labels", artifact_key(task.params())) for task in tasks]

    with mock.patch.object(data_build, "label_molecules", stored_labels):
        ours = data_build.build_dataset(
            scale, **design, reference_options=p["reference_options"], progress=False, root=inputs.folder("dataset")
        )
    difference = max(
        hdf5_difference(ours.file("qm7x.hdf5"), artifact.file("qm7x.hdf5")),
        table_difference(pd.read_csv(ours.file("labels.csv")), pd.read_csv(artifact.file("labels.csv"))),
    )
    what = (
        f"the dataset from its {len(smiles)} stored labels artifacts ({ours.manifest['n_configurations']} "
        "configurations: every array of qm7x.hdf5, every cell of labels.csv)"
    )
    return _sample(artifact, what, difference, ENERGY_ATOL, "eV, Å or eV/Å", start)


def sample_start_structures(artifact: Artifact, inputs: Inputs) -> Sample:
    """``md-start``: every start structure embedded and relaxed again through :func:`sweep.start_structures`
    (a few xTB relaxations: seconds); positions compared."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    n = len(p["molecules"])
    try:
        params = sweep.start_params(n, p["seed"])
    except ValueError as exc:
        raise SampleUnavailable(str(exc)) from None
    _same_key(params, p)
    ours = sweep.start_structures(n, p["seed"], root=inputs.folder(sweep.START_STAGE))
    difference = images_difference(sweep.start_images(ours), sweep.start_images(artifact))
    return _sample(artifact, f"the {n} start structures (xTB relaxations)", difference, POSITIONS_ATOL, "Å", start)


def sample_out_of_sample_starts(artifact: Artifact, inputs: Inputs) -> Sample:
    """``oos-start``: the out-of-sample molecules embedded and relaxed again through
    :func:`out_of_sample.out_of_sample_starts` (four xTB relaxations, the tripeptide's the longest:
    seconds); positions compared."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    ours = out_of_sample.out_of_sample_starts(p["seed"], root=inputs.folder(out_of_sample.START_STAGE))
    _same_key(ours.manifest["params"], p)
    difference = images_difference(sweep.start_images(ours), sweep.start_images(artifact))
    what = f"the {len(p['molecules'])} out-of-sample start structures (xTB relaxations)"
    return _sample(artifact, what, difference, POSITIONS_ATOL, "Å", start)


# ----------------------------------------------------------------------------- fits and audits
def _shared_file(name: str, sha256: str) -> Path:
    """The data file ``name`` of ``../shared/data`` whose digest a key names (its path is not stored)."""
    folder = shared_data_dir()
    path = None if folder is None else folder / name
    if path is None or not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest()[:16] != sha256:
        raise SampleUnavailable(f"its data file {name} (sha256 {sha256}...) is not in ../shared/data")
    return path


def sample_sanity_fit(artifact: Artifact, inputs: Inputs) -> Sample:
    """``sanity-fit``: the whole short fit again through :func:`learning_curve.sanity_check_real_data`
    (its history is not kept, and its learning-rate schedule depends on the step budget, so it cannot
    be cut; a hundred steps of the scale's GemNet: seconds); the test errors of the model and of the
    baselines compared."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    path = _shared_file(p["file"], p["sha256"])
    try:
        scale = get_scale(p["scale"])
    except ValueError as exc:
        raise SampleUnavailable(str(exc)) from None
    n_train, n_validation, n_test = p["split"]
    steps = int(p["train"]["max_steps"])
    with _one_thread():
        ours = lc.sanity_check_real_data(
            path,
            energy_unit=p["energy_unit"],
            n_train=n_train,
            n_validation=n_validation,
            n_test=n_test,
            steps=steps,
            seed=p["seed"],
            scale=scale,
            root=inputs.folder("sanity-fit"),
        ).artifact
    _same_key(ours.manifest["params"], p)
    mine, theirs = ours.manifest["errors"], artifact.manifest["errors"]
    difference = max(
        abs(mine[who][error] - theirs[who][error]) / max(abs(theirs[who][error]), 1e-12)
        for who in ("model", "baseline")
        for error in ("energy_mae", "forces_mae")
    )
    if ours.manifest["steps"] != artifact.manifest["steps"]:
        difference = float("inf")
    what = f"the whole fit ({steps} steps on {n_train} frames of {p['file']}): model and baseline test errors"
    return _sample(artifact, what, float(difference), LOSS_RTOL, "relative", start)


AUDIT_STAGE = "stress-audit"
AUDIT_ENERGY_ATOL = 1e-3  # eV, model energies after a few hundred MD steps (tests/studies/test_shipped_audits.py)
AUDIT_TOLERANCES = {
    "model_energy": AUDIT_ENERGY_ATOL,
    "reference_energy": AUDIT_ENERGY_ATOL,
    "energy_error": AUDIT_ENERGY_ATOL,
    "origin_excess_eV": AUDIT_ENERGY_ATOL,
    "forces_mae": FORCES_ATOL,
    "max_force_error": FORCES_ATOL,
}
"""Columns of an audit's tables that differ by rounding (their tolerance); the others must be equal."""
FIELD_CUT_PS = 0.001
"""What a sampled audit runs of the field's NVE and heating ramp (ps: a step or two). Only their scores
are stored, which need the whole runs; nothing of them is compared."""


def _builder(stage: str) -> ModuleType:
    """The module that builds ``stage``, by the name the stage registry gives it. ``stress-audit`` is
    built a floor above the studies (:mod:`gemrepro.stress` runs on the sweep's MD), so its sampler
    reaches the builder by that name at call time rather than by an import (ARCHITECTURE.md's floors)."""
    return importlib.import_module(STAGES[stage].builder)


def _named(ref: str, inputs: Inputs) -> Artifact:
    """The input ``stage/key`` of an audit's parameters (start structures recomputed if not stored)."""
    stage, _, key = ref.partition("/")
    return start_structures_of(key, inputs) if stage == sweep.START_STAGE else inputs.find(stage, key)


def sample_audit(artifact: Artifact, inputs: Inputs) -> Sample:
    """``stress-audit``: the audit's hot batched MD and its relabelled frames, recomputed through
    :func:`gemrepro.stress.cached.model_audit` with the same model, starts, temperatures and seeds; the
    MD cut to whole frame intervals covering :data:`COMPARED_STEPS` when it is longer, the field's NVE
    and heating runs to :data:`FIELD_CUT_PS`. Compared: every stored frame's positions in that piece and,
    when the MD ran whole, the failures, failure geometries, relabelled frames (:data:`AUDIT_TOLERANCES`)
    and the MDsim and MLIPAudit scores. Not compared: the NVE and ramp scores, which need those runs whole
    (the audit keeps no trajectory of them)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    audits = _builder(AUDIT_STAGE)
    design = audits.AuditDesign(
        p["time_ps"], tuple(p["temperatures"]), p["n_seeds"], p["nve_ps"], p["ramp_ps"], p["n_sampled_frames"]
    )
    model, starts = _named(p["model"], inputs), _named(p["starts"], inputs)
    _same_key(audits.audit_params(model, starts, design, p["seed"], p["reference"]), p)
    prefix = _prefix_protocol(design.protocol)
    whole = prefix.n_steps >= design.protocol.n_steps
    cut = dataclasses.replace(design, nve_ps=FIELD_CUT_PS, ramp_ps=FIELD_CUT_PS)
    if not whole:
        cut = dataclasses.replace(cut, time_ps=prefix.md_time_ps, n_sampled_frames=prefix.n_sampled_frames)
    root = inputs.folder(AUDIT_STAGE)
    _, ours = audits.model_audit(model, starts, cut, seed=p["seed"], reference=p["reference"], root=root, shipped=False)
    theirs = audits.read_audit(artifact.path)
    n_steps = cut.protocol.n_steps
    difference = trajectory_difference(ours.trajectory_path, theirs.trajectory_path, n_steps) / POSITIONS_ATOL
    if whole:
        difference = max(difference, _audit_difference(ours, theirs))
    n = len(ours.trajectories)
    what = f"the first {n_steps} hot MD steps of {n} trajectories" + (
        " with their failures, relabelled frames and MDsim/MLIPAudit scores" if whole else ""
    )
    return _sample(artifact, what, difference, 1.0, "of the tolerances", start)


def _audit_difference(ours: Any, theirs: Any) -> float:
    """Two audits of the same hot MD (:class:`gemrepro.stress.audit.AuditResult`, typed ``Any``: a floor
    above): their tables (:data:`AUDIT_TOLERANCES`) and failure geometries (:data:`POSITIONS_ATOL`), in
    units of the tolerances."""
    if (ours.field is None) != (theirs.field is None):
        return float("inf")
    if ours.failure_positions.keys() != theirs.failure_positions.keys():
        return float("inf")
    tables = [(ours.trajectories, theirs.trajectories), (ours.frames, theirs.frames)]
    if ours.field is not None:
        tables.append((ours.field.trajectories, theirs.field.trajectories))
    geometries = [
        array_difference(ours.failure_positions[s], theirs.failure_positions[s]) / POSITIONS_ATOL
        for s in ours.failure_positions
    ]
    return max([*(table_difference(a, b, AUDIT_TOLERANCES) for a, b in tables), *geometries])


# ----------------------------------------------------------------------------- committees
DISAGREEMENT_FRAMES = 8
"""About how many stored frames per trajectory a sampled committee is evaluated on again."""


def sample_disagreement(artifact: Artifact, inputs: Inputs) -> Sample:
    """``committee-disagreement``: the committee evaluated again through
    :func:`committee.frame_disagreement` on the same stored MD run, on every few of its frames (a
    ``frame_stride`` that is a multiple of the stored one: a subset of the stored rows, each
    trajectory's last evaluated frame included); force disagreement and energy spread compared."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    models = [_model(key, inputs) for key in p["models"]]
    runs = _any(inputs, (sweep.MD_STAGE, holes.SEEDS_STAGE), p["md"])
    if not runs:
        raise SampleUnavailable(f"its MD run {p['md']} is in none of {', '.join(map(str, inputs.roots))}")
    theirs = committee.disagreement_table(artifact)
    stride = int(p["frame_stride"])
    n_frames = int(theirs["frame"].max()) + 1 if len(theirs) else 1
    coarse = stride * max(1, n_frames // (DISAGREEMENT_FRAMES * stride))
    with _one_thread():
        ours = committee.frame_disagreement(models, runs[0], inputs.folder(committee.STAGE), frame_stride=coarse)
    table = committee.disagreement_table(ours)
    both = table.merge(theirs, on=["system", "frame"], how="left", suffixes=("", "_stored"), validate="one_to_one")
    tolerances = {"force_disagreement": FORCES_ATOL, "energy_spread": ENERGY_ATOL}
    columns = [c for c in table.columns if c not in ("system", "frame")]
    difference = table_difference(
        both[columns], both[[f"{c}_stored" for c in columns]].set_axis(columns, axis=1), tolerances
    )
    what = (
        f"the committee of {len(models)} on {len(table)} stored frames (1 in {coarse} of each trajectory's, its last)"
    )
    return _sample(artifact, what, difference, 1.0, "of the tolerances", start)


def sample_committee_run(artifact: Artifact, inputs: Inputs) -> Sample:
    """``md-committee``: the committee-driven runs' first frames, recomputed through
    :func:`committee.stop_on_uncertainty_run` (the same systems, Langevin seeds and threshold; the
    sweep's protocol cut to whole frame intervals covering :data:`COMPARED_STEPS`)."""
    start = time.perf_counter()
    p = artifact.manifest["params"]
    models = [_model(key, inputs) for key in p["models"]]
    run = inputs.find(sweep.MD_STAGE, p["md"])
    prefix = _prefix_protocol(_protocol(run.manifest["params"]["protocol"]))
    starts = start_structures_of(run.manifest["params"]["starts"], inputs)
    study = sweep.Sweep(prefix, starts, {}, {0: run}, {}, pd.DataFrame(), pd.DataFrame())
    with _one_thread():
        ours = committee.stop_on_uncertainty_run(
            models, study, 0, p["systems"], p["threshold"], root=inputs.folder(committee.MD_STAGE)
        )
    return _rerun_sample(artifact, ours, prefix, len(p["systems"]), start)


SAMPLERS: dict[str, Sampler] = {
    "md-sweep": sample_sweep,
    "md-seeds": sample_seeds,
    "md-long": sample_long_run,
    "md-labels": sample_md_labels,
    "labels": sample_labels,
    "free-atoms": sample_free_atom,
    "models": sample_model,
    "arms-pretrained": sample_arms_pretrained,
    "arms-models": sample_arms_model,
    "arms-md": sample_arms_run,
    "reference-md": sample_reference_md,
    "dataset": sample_dataset,
    "md-start": sample_start_structures,
    "oos-start": sample_out_of_sample_starts,
    "sanity-fit": sample_sanity_fit,
    AUDIT_STAGE: sample_audit,
    "committee-disagreement": sample_disagreement,
    "md-committee": sample_committee_run,
}
"""Stage -> its sampler. Stages without one (timings, which no rerun reproduces; stages not yet given
one) can only change by a version bump."""
