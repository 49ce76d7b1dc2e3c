"""Samplers: recompute a small piece of a stored artifact with today's code and say how far it lands.

``python -m gemrepro.studies.stages --record`` accepts a changed stage's old artifacts only when its
sampler reproduces one of them. Each sampler calls the stage's own public function (today's build
path, not a copy of it) on a shortened design in a scratch cache, and compares:

* MD stages: the first :data:`COMPARED_STEPS` steps of every trajectory (positions, alive flags;
  ``arms-md`` stores a frame every 1,000 steps: up to its first stored frame);
* label stages: a few labels recomputed with the reference method (energies, forces);
* model stages: the first evaluation of a training run from the same seed (losses, errors).

Tolerances: MD on one CPU thread agrees to rounding over the first steps on any CPU type (worst
seen across machines 7e-5 Å, ``tests/studies/test_shipped_models.py``); training from the same seed
agrees to float32 rounding after a hundred steps. The samplers live here, not in the stages'
modules, so that writing or improving one does not change the code digest of what it checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import h5py
import numpy as np
import pandas as pd
import torch
from ase import Atoms

from gemrepro.cache.artifacts import MANIFEST, Artifact, artifact_key
from gemrepro.catalog import MD17
from gemrepro.catalog.molecules import molecule_from_smiles
from gemrepro.config.designs import LongRunDesign, SeedsDesign
from gemrepro.config.scales import Scale, get_scale
from gemrepro.data import reference_md
from gemrepro.data.build import MoleculeTask, dataset_params, sample_and_label
from gemrepro.md import read_system
from gemrepro.md.queue import trajectory_path
from gemrepro.reference.free_atoms import free_atom_energy
from gemrepro.reference.registry import get_method
from gemrepro.studies import holes, long_runs, pretraining_arms, sweep
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
}
"""Stage -> its sampler. Stages without one (timings, which no rerun reproduces; stages not yet given
one) can only change by a version bump."""
