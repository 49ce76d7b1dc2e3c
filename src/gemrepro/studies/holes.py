"""Holes in the potential energy surface (Stocker et al., Fig. 2e and the cross-trajectory errors).

A sparse model can run stably for a long time and then fall into a "hole": a region it never saw
in training where its energy drops without bound, a bond dissociates and the error explodes. This
module runs the experiment behind that figure and one step beyond it:

``md-seeds``
    one batched Langevin run per model of every (molecule, temperature, seed) system of a
    :class:`SeedsDesign`. During the run a system is stopped only when it is far gone
    (:data:`RUN_CRITERIA`), so a trajectory goes on *into* its hole as the paper's 1 ns runs
    did; the stability rules of the sweep are applied afterwards to the stored frames, which
    gives each trajectory's time to failure (to the resolution of the frame interval).

On these runs :func:`sparse_model` picks the sparsest model that does not fail at once,
:func:`hole_search` lists the trajectories that were fine for a while and then failed,
:func:`find_hole` runs that search from the sparse model at 600 K onwards until it finds one, and
:func:`hole_timeline` relabels every frame of it. :func:`cross_trajectory` evaluates the hole's
model and the exhaustive model on each other's sweep trajectories (the paper's 6.8 vs
0.16 eV/Å), and :func:`survival_summary` with :func:`error_vs_survival` asks whether the test-set
error predicts how long a model's trajectories survive.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from ase import Atoms

from gemrepro.analysis.errors import force_mae
from gemrepro.analysis.origin import failure_origin
from gemrepro.analysis.stability import StabilityCriteria, detect_failure
from gemrepro.analysis.survival import Correlation, rank_correlation, stable_times
from gemrepro.analysis.timeline import trajectory_timeline
from gemrepro.cache.artifacts import Artifact, get_or_create, load_artifact
from gemrepro.cache.bundle import shipped_artifact
from gemrepro.cache.paths import artifacts_dir
from gemrepro.catalog import MD_MOLECULES_COVER_ALL_ELEMENTS
from gemrepro.config.designs import SeedsDesign
from gemrepro.config.scales import Scale
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md import read_system, run_md
from gemrepro.studies.learning_curve import learning_curve, model_artifacts, resolve_variant
from gemrepro.studies.sweep import (
    Protocol,
    load_frames,
    relabel,
    short_run_protocol,
    start_images,
    start_structures,
)

__all__ = [
    "Hole",
    "SeedsStudy",
    "cross_trajectory",
    "error_vs_survival",
    "failure_origins",
    "find_hole",
    "forces_on_frames",
    "hole_search",
    "hole_timeline",
    "md_seed",
    "pick_hole",
    "post_hoc_failures",
    "run_systems",
    "seed_runs",
    "seeds_study",
    "seeds_table",
    "snapshots",
    "sparse_model",
    "survival_summary",
]

SEEDS_STAGE = "md-seeds"
SHIPPED_PART = "seeds"  # the runs ship in models/<scale>-seeds.tar.xz, beside the models' bundle
STAGE_VERSION = 1  # bump when what these artifacts hold or how they are computed changes

RUN_CRITERIA = StabilityCriteria(rules=("nonfinite", "force", "bond"), bond_tolerance=1.5)
"""What stops a system during a seeds run: non-finite numbers, exploding forces, or a bond 1.5 Å
off its start length (three times the bond rule's tolerance: the molecule is in pieces, deep in
its hole, and more steps would show nothing new). A run whose systems are all that far ends early."""

ANALYSIS_CRITERIA = StabilityCriteria()
"""Rules applied to the stored frames afterwards (the sweep's defaults: bond, H loss, clash, force, NaN)."""


def md_seed(seed: int, molecule: str, temperature: float, replica: int) -> int:
    """The Langevin seed of one system, from its names, so it does not move when the design grows."""
    words = [int(seed), int(round(float(temperature) * 1000)), int(replica), *molecule.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)


# ----------------------------------------------------------------------------- the runs
def post_hoc_failures(trajectory: dict, dt_fs: float, criteria: StabilityCriteria = ANALYSIS_CRITERIA) -> dict:
    """The first failure of one stored trajectory under ``criteria``: ``failed``, step, time, rule.

    ``trajectory`` is :func:`gemrepro.md.trajectory.read_system` output. A system the run itself
    stopped (non-finite numbers, exploding forces) fails at that step at the latest.
    """
    frames = _until_stop(trajectory)
    record = detect_failure(
        frames["positions"],
        frames["numbers"],
        steps=frames["step"],
        times_ps=frames["time_ps"],
        reference_positions=frames["reference_positions"],
        energies=frames["energy"],
        forces=frames["forces"],
        criteria=criteria,
    )
    if record is None and trajectory["failure_step"] >= 0:  # stopped between stored frames
        step = int(trajectory["failure_step"])
        return {
            "failed": True,
            "failure_step": step,
            "time_to_failure_ps": step * dt_fs / 1000.0,
            "failure_rule": trajectory["failure_rule"],
        }
    if record is None:
        return {"failed": False, "failure_step": -1, "time_to_failure_ps": float("nan"), "failure_rule": ""}
    return {
        "failed": True,
        "failure_step": record.step,
        "time_to_failure_ps": record.time_ps,
        "failure_rule": record.rule,
    }


def run_systems(
    potential,
    systems: Sequence[tuple[Atoms, float, int]],
    seeds: Sequence[int],
    protocol: Protocol,
    path: Path,
    progress: bool = False,
    device: str = "cpu",
):
    """Run ``(atoms, temperature, replica)`` systems as one batch to ``path``; a table row per system.

    Only :data:`RUN_CRITERIA` stop a system during the run; the failure columns come from
    :func:`post_hoc_failures` on the stored frames. Returns ``(rows, MDSummary)``.
    """
    summary = run_md(
        potential,
        [a for a, _, _ in systems],
        n_steps=protocol.n_steps,
        path=path,
        temperatures=[t for _, t, _ in systems],
        seeds=list(seeds),
        dt_fs=protocol.dt_fs,
        friction=protocol.friction_per_fs,
        frame_interval=protocol.frame_interval,
        checkpoint_interval=max(protocol.frame_interval, 1000),
        criteria=RUN_CRITERIA,
        dtype=torch.float64,
        device=device,
        progress=progress,
    )
    rows = []
    for s, ((atoms, t, r), stop) in enumerate(zip(systems, summary.failures)):
        rows.append(
            {
                "system": s,
                "molecule": atoms.info.get("name", atoms.get_chemical_formula()),
                "formula": atoms.get_chemical_formula(),
                "n_atoms": len(atoms),
                "temperature": float(t),
                "replica": int(r),
                "md_seed": int(seeds[s]),
                **post_hoc_failures(read_system(path, s), protocol.dt_fs),
                "stop_rule": stop.rule if stop else "",
            }
        )
    return rows, summary


def seed_runs(
    model: Artifact,
    starts: Artifact,
    protocol: Protocol,
    design: SeedsDesign,
    seed: int = 0,
    root=None,
    progress: bool = False,
    device: str = "cpu",
    *,
    scale: Scale | None = None,
    shipped: bool = True,
) -> Artifact:
    """One batched MD run of every (molecule, temperature, seed) of ``design`` with ``model``; cached.

    The artifact holds ``trajectory.h5`` and ``systems.csv`` (system, molecule, formula, n_atoms,
    temperature, replica, md_seed, then the post-hoc failure: failed, failure_step,
    time_to_failure_ps, failure_rule, and ``stop_rule``, the rule that stopped the run of the
    system, if any). Frames are stored every ``protocol.frame_interval`` steps. With ``scale``, a run
    the scale's committed bundle holds is taken from there (two chapters wait on ``tiny``'s four
    runs otherwise, six minutes of one core); ``shipped=False`` computes it anyway.
    """
    root = Path(root) if root else artifacts_dir()
    images = start_images(starts)
    if design.n_molecules > len(images):
        raise ValueError(
            f"design.n_molecules: expected at most the {len(images)} start structures, got {design.n_molecules}"
        )
    temperatures = design.temperatures or protocol.temperatures
    systems = [
        (atoms, t, r) for atoms in images[: design.n_molecules] for t in temperatures for r in range(design.n_seeds)
    ]
    seeds = [md_seed(seed, atoms.info["name"], t, r) for atoms, t, r in systems]
    params = {
        "model": model.key,
        "starts": starts.key,
        "protocol": asdict(protocol),
        "design": asdict(design),
        "seed": int(seed),
        "run_criteria": repr(RUN_CRITERIA),
        "criteria": repr(ANALYSIS_CRITERIA),
        "stage_version": STAGE_VERSION,
    }
    found = load_artifact(SEEDS_STAGE, params, root)
    if found is None and shipped and scale is not None:
        found = shipped_artifact(scale, SEEDS_STAGE, params, root, SHIPPED_PART)
    if found is not None:
        return found

    def build(folder: Path, workdir: Path) -> dict:
        potential = potential_from_checkpoint(model.file("model.pt"), device=device)
        rows, summary = run_systems(potential, systems, seeds, protocol, workdir / "trajectory.h5", progress, device)
        shutil.move(str(workdir / "trajectory.h5"), folder / "trajectory.h5")
        pd.DataFrame(rows).to_csv(folder / "systems.csv", index=False)
        return {
            "steps": summary.step,
            "n_frames": summary.n_frames,
            "n_systems": len(rows),
            "md_wall_time_s": round(summary.wall_time_s, 2),
            "steps_per_second": round(summary.steps_per_second, 2),
            "n_failed": int(sum(r["failed"] for r in rows)),
        }

    return get_or_create(SEEDS_STAGE, params, build, root, resumable=True)


def seeds_table(md: Artifact) -> pd.DataFrame:
    """The ``systems.csv`` of a seeds run (one row per trajectory)."""
    table = pd.read_csv(md.file("systems.csv"), keep_default_na=False, na_values=["", "nan", "NaN"])
    for column in ("failure_rule", "stop_rule"):
        table[column] = table[column].fillna("")
    return table


@dataclass
class SeedsStudy:
    """The seeds runs of one scale: a run per training size and their trajectories in one table."""

    protocol: Protocol
    design: SeedsDesign
    starts: Artifact
    models: dict[int, Artifact]
    md: dict[int, Artifact]
    trajectories: pd.DataFrame  # one row per (train_size, system)
    test_errors: pd.DataFrame  # the learning-curve table (test-set MAEs per training size)


def seeds_study(
    scale: Scale,
    *,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    variant: str | None = None,
    design: SeedsDesign | None = None,
    protocol: Protocol | None = None,
    root=None,
    progress: bool = False,
    device: str = "cpu",
) -> SeedsStudy:
    """The scale's models (trained or loaded) run on every system of ``design`` (default: the scale's).

    Start structures and models come from the same cached functions as the temperature sweep, so
    nothing is recomputed that the sweep already holds.
    """
    design = design or scale.seeds
    if design is None:
        raise ValueError(f"scale {scale.name!r} has no seeds design (Scale.seeds); pass design=")
    protocol = protocol or short_run_protocol(scale)
    root = Path(root) if root else artifacts_dir()
    variant = resolve_variant(scale, variant)
    curve = learning_curve(
        scale=scale, seed=seed, reference=reference, variant=variant, root=root, progress=progress, device=device
    )
    models = dict(zip((int(n) for n in curve["train_size"]), model_artifacts(curve, root=root)))
    starts = start_structures(max(scale.n_md_molecules, MD_MOLECULES_COVER_ALL_ELEMENTS), seed, root)
    md = {
        n: seed_runs(model, starts, protocol, design, seed, root, progress, device, scale=scale)
        for n, model in models.items()
    }
    trajectories = pd.concat([seeds_table(run).assign(train_size=n) for n, run in md.items()], ignore_index=True)
    return SeedsStudy(protocol, design, starts, models, md, trajectories, curve)


# ----------------------------------------------------------------------------- choosing the hole
def _require(table: pd.DataFrame, columns: Sequence[str], name: str = "trajectories") -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}")


def survival_summary(
    trajectories: pd.DataFrame, horizon_ps: float, by: Sequence[str] = ("train_size", "temperature")
) -> pd.DataFrame:
    """Per group: trajectories, failed ones, median and mean stable time (ps) and mean stable fraction.

    A survivor's stable time is the run length (censored), so means and medians are lower bounds
    once trajectories survive; the fraction is the mean stable time over the run length.
    """
    by = list(by)
    _require(trajectories, [*by, "failed", "time_to_failure_ps"])
    work = trajectories.assign(_stable=stable_times(trajectories, horizon_ps))
    grouped = work.groupby(by, sort=True)
    table = pd.DataFrame(
        {
            "trajectories": grouped.size(),
            "failed": grouped["failed"].sum().astype(int),
            "median_stable_ps": grouped["_stable"].median(),
            "mean_stable_ps": grouped["_stable"].mean(),
        }
    )
    table["mean_stable_fraction"] = table["mean_stable_ps"] / float(horizon_ps)
    return table.reset_index()


def sparse_model(trajectories: pd.DataFrame, horizon_ps: float, temperature: float, min_fraction: float = 0.5) -> int:
    """The sparsest model whose median trajectory at ``temperature`` stays stable ``min_fraction`` of the run.

    A model below that fails "at once": its trajectories end before they could show a hole that
    opens after a stable stretch. Raises ``ValueError`` when no model qualifies.
    """
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction: expected a fraction of the run in (0, 1], got {min_fraction!r}")
    _require(trajectories, ["train_size", "temperature"])
    at_t = trajectories[np.isclose(trajectories["temperature"], temperature)]
    if at_t.empty:
        raise ValueError(
            f"temperature: no trajectories at {temperature} K; expected one of "
            f"{sorted(trajectories['temperature'].unique())}"
        )
    summary = survival_summary(at_t, horizon_ps, by=["train_size"])
    fine = summary[summary["median_stable_ps"] >= min_fraction * horizon_ps]
    if fine.empty:
        raise ValueError(
            f"trajectories: no model keeps its median trajectory stable for {min_fraction:.0%} "
            f"of the run at {temperature} K"
        )
    return int(fine["train_size"].min())


def hole_search(
    trajectories: pd.DataFrame, train_size: int, temperature: float, horizon_ps: float, min_fraction: float = 0.25
) -> pd.DataFrame:
    """Every trajectory of one model at one temperature, latest failure first, with the search verdict.

    ``stable_fraction`` is the stable time over the run length; ``hole`` marks a trajectory that
    failed after at least ``min_fraction`` of the run (fine for a while, then a hole).
    """
    if not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction: expected a fraction of the run in [0, 1), got {min_fraction!r}")
    _require(trajectories, ["train_size", "temperature", "molecule", "system", "failed", "time_to_failure_ps"])
    rows = trajectories[
        (trajectories["train_size"] == train_size) & np.isclose(trajectories["temperature"], temperature)
    ].copy()
    if rows.empty:
        raise ValueError(f"train_size, temperature: no trajectories of the {train_size} model at {temperature} K")
    rows["stable_fraction"] = stable_times(rows, horizon_ps) / float(horizon_ps)
    rows["hole"] = rows["failed"].astype(bool) & (rows["stable_fraction"] >= min_fraction)
    rows = rows.sort_values(["failed", "stable_fraction", "system"], ascending=[False, False, True])
    return rows.reset_index(drop=True)


def pick_hole(search: pd.DataFrame) -> pd.Series | None:
    """The trajectory of :func:`hole_search` that stayed fine longest before failing; ``None`` if none did."""
    _require(search, ["hole", "stable_fraction", "system"], "search")
    holes = search[search["hole"]]
    if holes.empty:
        return None
    return holes.sort_values(["stable_fraction", "system"], ascending=[False, True]).iloc[0]


def find_hole(
    trajectories: pd.DataFrame,
    train_sizes: Sequence[int],
    temperatures: Sequence[float],
    horizon_ps: float,
    min_fraction: float = 0.25,
) -> tuple[pd.DataFrame, pd.Series | None]:
    """:func:`hole_search` over models and temperatures, in the order given, until one holds a hole.

    The paper's hole belongs to its sparsest model at 600 K. A short run may hold none there, so
    the search goes on at the next temperature given, then with the next model. Returns every
    trajectory searched (with ``train_size`` and ``temperature``) and the hole :func:`pick_hole`
    chose, or ``None`` when there was none.
    """
    searched = []
    for train_size in train_sizes:
        for temperature in temperatures:
            search = hole_search(trajectories, train_size, temperature, horizon_ps, min_fraction)
            searched.append(search)
            hole = pick_hole(search)
            if hole is not None:
                return pd.concat(searched, ignore_index=True), hole
    return pd.concat(searched, ignore_index=True), None


# ----------------------------------------------------------------------------- the hole, frame by frame
@dataclass
class Hole:
    """One trajectory that fell into a hole: its row, every frame relabelled, and the timeline."""

    row: pd.Series
    trajectory: dict
    labels: Artifact
    timeline: pd.DataFrame


_PER_FRAME = ("step", "time_ps", "positions", "forces", "energy", "temperature_kin", "alive", "failed")


def _until_stop(trajectory: dict) -> dict:
    """The frames of a trajectory up to the one its run stopped integrating it in (later frames are
    frozen copies). The seeds runs freeze a system once :data:`RUN_CRITERIA` fire; a run that
    continued failed systems (the sweep's) gives every frame up to a non-finite freeze, if any."""
    alive = np.asarray(trajectory["alive"], dtype=bool)
    last = len(alive) if alive.all() else int(np.argmin(alive)) + 1
    return {k: (v[:last] if k in _PER_FRAME else v) for k, v in trajectory.items()}


def hole_timeline(
    md: Artifact,
    row: pd.Series,
    reference: str = "gfn2-xtb",
    *,
    root=None,
    scheduler: str | None = None,
    n_workers: int | None = None,
) -> Hole:
    """Every stored frame of the trajectory ``row`` (a seeds-table row), up to where its run stopped,
    relabelled with ``reference``.

    The relabelling is a cached ``md-labels`` artifact (:func:`gemrepro.studies.sweep.relabel`).
    """
    system = int(row["system"])
    trajectory = _until_stop(read_system(md.file("trajectory.h5"), system))
    frames = pd.DataFrame({"system": system, "frame": np.arange(len(trajectory["step"]))})
    labels = relabel(md, frames, reference, root=root, scheduler=scheduler, n_workers=n_workers)
    table = load_frames(labels)
    return Hole(row, trajectory, labels, trajectory_timeline(trajectory, table[table["system"] == system]))


def snapshots(hole: Hole, tolerance: float = ANALYSIS_CRITERIA.bond_tolerance) -> dict[str, tuple[float, Atoms]]:
    """The structures to show, ``{label: (time_ps, Atoms)}``: the ``start``, the ``last intact``
    frame before the bond signal crossed ``tolerance``, and the ``end`` of the run (its last frame
    with finite coordinates)."""
    timeline, trajectory = hole.timeline, hole.trajectory
    broken = np.flatnonzero(timeline["max_bond_deviation"].to_numpy() > tolerance)
    intact = int(broken[0]) - 1 if len(broken) else len(timeline) - 1
    finite = np.flatnonzero(np.isfinite(trajectory["positions"]).all(axis=(1, 2)))
    picks = {"start": 0, "last intact": max(intact, 0), "end": int(finite[-1])}
    return {
        label: (float(trajectory["time_ps"][k]), Atoms(trajectory["numbers"], trajectory["positions"][k]))
        for label, k in picks.items()
    }


# ----------------------------------------------------------------------------- cross-trajectory errors
def forces_on_frames(model: Artifact, md: Artifact, labels: Artifact, system: int, device: str = "cpu") -> pd.DataFrame:
    """``model``'s force MAE (eV/Å) against the reference on the relabelled frames of ``system`` of ``md``.

    The frames and reference forces come from ``labels`` (a relabelling of ``md``); the model is
    evaluated on all of them as one batch. Rows: frame, time_ps, converged, after_failure (the frame
    is at or after the trajectory's failure; from ``failure_frame`` for labels older than that
    column), forces_mae (NaN where the reference did not converge).
    """
    table = load_frames(labels)
    forces = np.load(labels.file("forces.npz"))
    offsets, reference_forces = forces["atom_offset"], forces["reference"]
    rows = table.index[table["system"] == system].to_numpy()
    if len(rows) == 0:
        raise ValueError(f"system: the labels {labels.key} hold no frame of system {system}")
    with h5py.File(md.file("trajectory.h5"), "r") as f:
        a, b = (int(x) for x in f["systems/atom_offset"][system : system + 2])
        numbers = f["systems/numbers"][a:b]
        positions = np.stack([f["frames/positions"][int(k), a:b] for k in table.loc[rows, "frame"]])
    potential = potential_from_checkpoint(model.file("model.pt"), device=device)
    n_frames, n_atoms = positions.shape[:2]
    _, predicted = potential(
        torch.as_tensor(positions.reshape(-1, 3)),
        torch.as_tensor(numbers).repeat(n_frames),
        torch.arange(n_frames).repeat_interleave(n_atoms),
    )
    predicted_forces = predicted.numpy().reshape(n_frames, n_atoms, 3)
    out = table.loc[rows, ["frame", "time_ps", "converged"]].reset_index(drop=True)
    flag = next((c for c in ("after_failure", "failure_frame") if c in table.columns), None)
    out["after_failure"] = table.loc[rows, flag].astype(bool).to_numpy() if flag else False
    out["forces_mae"] = [
        force_mae(predicted_forces[i], reference_forces[offsets[r] : offsets[r + 1]])
        if out.loc[i, "converged"]
        else np.nan
        for i, r in enumerate(rows)
    ]
    return out


def cross_trajectory(
    sweep, molecule: str, temperature: float, *, sizes: Sequence[int] | None = None, device: str = "cpu"
) -> pd.DataFrame:
    """Each of ``sizes`` (default: sparsest and largest) on each one's sweep trajectory of ``molecule``
    at ``temperature``: rows ``model``, ``trajectory_of``, ``frames``, ``forces_mae`` (eV/Å, mean
    over converged frames), ``own`` (the model's own trajectory), ``frames_after_failure`` (how many
    of those frames lie at or after the trajectory's failure).

    ``sweep`` is a :class:`gemrepro.studies.sweep.Sweep`; its relabelled frames supply the
    geometries and reference forces, so no new reference calculation is needed. The sweep's
    trajectories run on after a failure, so a failed trajectory's frames span the whole run, its
    post-failure frames included, as the paper's 72 frames per nanosecond did.
    """
    sizes = [int(n) for n in (sizes or (min(sweep.models), max(sweep.models)))]
    unknown = [n for n in sizes if n not in sweep.models]
    if unknown:
        raise ValueError(
            f"sizes: no model of {unknown} configurations in the sweep; expected some of {sorted(sweep.models)}"
        )
    trajectories = sweep.trajectories
    rows = []
    for trajectory_of in sizes:
        match = trajectories[
            (trajectories["train_size"] == trajectory_of)
            & (trajectories["molecule"] == molecule)
            & np.isclose(trajectories["temperature"], temperature)
        ]
        if match.empty:
            raise ValueError(f"molecule, temperature: no sweep trajectory of {molecule!r} at {temperature} K")
        system = int(match["system"].iloc[0])
        for model in sizes:
            per_frame = forces_on_frames(
                sweep.models[model], sweep.md[trajectory_of], sweep.labels[trajectory_of], system, device
            )
            converged = per_frame["converged"].astype(bool)
            rows.append(
                {
                    "model": model,
                    "trajectory_of": trajectory_of,
                    "frames": int(converged.sum()),
                    "forces_mae": float(per_frame["forces_mae"].mean()),
                    "own": model == trajectory_of,
                    "frames_after_failure": int((converged & per_frame["after_failure"]).sum()),
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- test error vs survival
def error_vs_survival(
    test_errors: pd.DataFrame,
    survival: pd.DataFrame,
    error: str = "forces_mae",
    survival_column: str = "mean_stable_fraction",
) -> tuple[pd.DataFrame, dict[str, Correlation | None]]:
    """Test-set error of each model next to its survival per temperature, and Spearman's rho.

    Returns the merged table and ``{"all": rho over every (model, temperature), "<T> K": rho
    within each temperature}``; ``None`` where a rank correlation is undefined (fewer than three
    points, or one of the two samples constant).
    """
    _require(test_errors, ["train_size", error], "test_errors")
    _require(survival, ["train_size", "temperature", survival_column], "survival")
    table = survival.merge(test_errors[["train_size", error]].rename(columns={error: f"test_{error}"}), on="train_size")
    x = f"test_{error}"

    def rho(part: pd.DataFrame) -> Correlation | None:
        if len(part) < 3 or part[x].nunique() < 2 or part[survival_column].nunique() < 2:
            return None
        return rank_correlation(part[x].to_numpy(), part[survival_column].to_numpy())

    correlations: dict[str, Correlation | None] = {"all": rho(table)}
    for temperature, part in table.groupby("temperature", sort=True):
        correlations[f"{temperature:g} K"] = rho(part)
    return table, correlations


# ----------------------------------------------------------------------------- hole or chemistry
def failure_origins(trajectories: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Hole or real chemistry for every failed trajectory with relabelled frames on both sides of its failure.

    ``trajectories`` and ``frames`` are a sweep's tables (runs that went on after their failure, so
    frames after it exist). The frames nearest the failure on either side are compared
    (:func:`gemrepro.analysis.origin.failure_origin`, atomization energies of model and reference);
    ``before_ps`` and ``after_ps`` say how far from the failure they are.
    """
    usable = frames[frames["converged"].astype(bool) & np.isfinite(frames["reference_atomization_energy"])]
    columns = [
        "train_size",
        "molecule",
        "temperature",
        "failure_ps",
        "before_ps",
        "after_ps",
        "model_delta_eV",
        "reference_delta_eV",
        "excess_eV",
        "threshold_eV",
        "verdict",
    ]
    rows = []
    for row in trajectories[trajectories["failed"]].itertuples():
        mine = usable[(usable["train_size"] == row.train_size) & (usable["system"] == row.system)].sort_values("step")
        before = mine[mine["time_ps"] < row.time_to_failure_ps]
        after = mine[mine["time_ps"] >= row.time_to_failure_ps]
        if before.empty or after.empty:
            continue
        b, a = before.iloc[-1], after.iloc[0]
        origin = failure_origin(
            model_before=b["model_energy"],
            model_after=a["model_energy"],
            reference_before=b["reference_atomization_energy"],
            reference_after=a["reference_atomization_energy"],
            temperature_K=row.temperature,
        )
        rows.append(
            {
                "train_size": int(row.train_size),
                "molecule": row.molecule,
                "temperature": row.temperature,
                "failure_ps": float(row.time_to_failure_ps),
                "before_ps": float(row.time_to_failure_ps - b["time_ps"]),
                "after_ps": float(a["time_ps"] - row.time_to_failure_ps),
                "model_delta_eV": origin.model_delta_eV,
                "reference_delta_eV": origin.reference_delta_eV,
                "excess_eV": origin.excess_eV,
                "threshold_eV": origin.threshold_eV,
                "verdict": origin.verdict,
            }
        )
    return pd.DataFrame(rows, columns=columns)
