"""The MD campaign of Stocker et al. Fig. 2: every model x molecule x temperature, frames relabelled.

Three cached stages, each a pure function of its inputs:

``md-start``
    start structures of the MD molecules: an RDKit conformer relaxed with the sampler method of
    the dataset (GFN2-xTB), as QM7-X starts from relaxed structures.
``md-sweep``
    one batched Langevin run per model holding every (molecule, temperature) system; the
    trajectory (HDF5) and a table of the systems with their failures. As in the paper, a
    trajectory runs its full length after a failure (``run_md(after_failure="continue")``): the
    failure is recorded and the frames go on, so the post-failure frames can be relabelled. The
    run happens in a work folder ``<artifacts>/md-sweep-work/<key>/`` so a killed run resumes from
    its checkpoint.
``md-labels``
    chosen frames of one run relabelled with a reference method on Dask; a table with the
    model's and the reference's atomization energies, the per-frame force MAE, whether the
    calculation converged, and the frame's geometry; the force arrays in ``forces.npz``.

Frames are chosen by :func:`sample_frames`: ``n`` uniformly spaced frames over the whole run,
frame 1 to the last one, each flagged ``after_failure`` when it lies at or after its trajectory's
failure. (A system whose coordinates turned non-finite is frozen there, and its sample ends at
that frame; a run that froze failed systems ends each failed sample at the failure geometry.)
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import h5py
import numpy as np
import pandas as pd
import torch
from ase import Atoms
from ase.io import read, write

from gemrepro.analysis.errors import force_mae, frame_geometry
from gemrepro.cache.artifacts import Artifact, get_or_create, load_artifact
from gemrepro.cache.bundle import shipped_artifact
from gemrepro.cache.cluster import dask_client
from gemrepro.cache.paths import artifacts_dir
from gemrepro.catalog import MD_MOLECULES_COVER_ALL_ELEMENTS, md_molecules
from gemrepro.config.scales import Scale
from gemrepro.data.build import SAMPLER_METHOD, molecule_seed
from gemrepro.data.sampling import embed_conformers, relax
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md import one_torch_thread, run_md
from gemrepro.md.trajectory import failed_frames
from gemrepro.reference import atomization_energy, free_atom_energies, get_method
from gemrepro.studies.learning_curve import learning_curve, model_artifacts, resolve_variant

__all__ = [
    "Protocol",
    "Sweep",
    "dft_convergence",
    "label_frames",
    "label_params",
    "n_md_molecules",
    "load_frames",
    "md_params",
    "pbe0_subsample",
    "protocol_for",
    "relabel",
    "relabel_runs",
    "run_sweep_md",
    "sample_frames",
    "sampled_frames",
    "short_run_protocol",
    "simulate_sweep",
    "sweep_systems",
    "start_images",
    "start_params",
    "start_structures",
    "systems_table",
    "temperature_sweep",
]

START_STAGE, MD_STAGE, LABEL_STAGE = "md-start", "md-sweep", "md-labels"
STAGE_VERSION = 2  # md-sweep, md-labels; bump when what these artifacts hold or how they are computed changes
# 2: trajectories continue after a failure; frames sampled over the whole run, labels flag after_failure
START_STAGE_VERSION = 1  # md-start: the start structures did not change with version 2
AFTER_FAILURE = "continue"
"""What the sweep's runs do with a failed trajectory (:func:`gemrepro.md.run_md`'s ``after_failure``)."""


@dataclass(frozen=True)
class Protocol:
    """The MD protocol of the sweep (the paper: 1 ns NVT Langevin, 0.5 fs, 72 frames)."""

    md_time_ps: float
    temperatures: tuple[float, ...]
    dt_fs: float = 0.5
    friction_per_fs: float = 0.01
    n_sampled_frames: int = 72

    def __post_init__(self) -> None:
        if not (math.isfinite(self.md_time_ps) and self.md_time_ps > 0):
            raise ValueError(f"md_time_ps: expected a positive duration in ps, got {self.md_time_ps!r}")
        if not self.temperatures or any(not (t > 0) for t in self.temperatures):
            raise ValueError(f"temperatures: expected positive temperatures in K, got {self.temperatures!r}")
        if int(self.n_sampled_frames) != self.n_sampled_frames or self.n_sampled_frames < 1:
            raise ValueError(f"n_sampled_frames: expected a positive integer, got {self.n_sampled_frames!r}")
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))

    @property
    def n_steps(self) -> int:
        return int(round(self.md_time_ps * 1000.0 / self.dt_fs))

    @property
    def frame_interval(self) -> int:
        """Steps between stored frames: a stable trajectory stores at least ``n_sampled_frames``."""
        return max(1, self.n_steps // self.n_sampled_frames)


def protocol_for(scale: Scale) -> Protocol:
    """The temperature sweep's protocol of a scale (its runs last ``Scale.sweep_length_ps``)."""
    return Protocol(scale.sweep_length_ps, scale.temperatures, n_sampled_frames=scale.n_sampled_frames)


def short_run_protocol(scale: Scale) -> Protocol:
    """The sweep's protocol at the length of a scale's many short runs (``Scale.md_time_ps``: the seeds study)."""
    return Protocol(scale.md_time_ps, scale.temperatures, n_sampled_frames=scale.n_sampled_frames)


# ----------------------------------------------------------------------------- start structures
def start_params(n_molecules: int, seed: int = 0) -> dict:
    """Cache parameters of :func:`start_structures` (a campaign asks for them without building)."""
    return {
        "molecules": {m.name: m.smiles for m in md_molecules(n_molecules)},
        "seed": int(seed),
        "relax": SAMPLER_METHOD,
        "stage_version": START_STAGE_VERSION,
    }


def start_structures(n_molecules: int, seed: int = 0, root=None) -> Artifact:
    """The first ``n_molecules`` MD molecules, conformer-embedded and relaxed; ``start.xyz`` (names in info)."""
    molecules = md_molecules(n_molecules)
    params = start_params(n_molecules, seed)

    def build(folder: Path) -> dict:
        method = get_method(SAMPLER_METHOD)
        images = []
        for m in molecules:
            atoms = relax(embed_conformers(m.smiles, 1, seed=molecule_seed(seed, m.smiles) % 2**31)[0], method)
            atoms.info["name"] = m.name
            images.append(atoms)
        write(folder / "start.xyz", images, format="extxyz")
        return {"n_molecules": len(images)}

    return get_or_create(START_STAGE, params, build, root)


def start_images(artifact: Artifact) -> list[Atoms]:
    """The relaxed start structures of a :func:`start_structures` artifact (names in ``info``)."""
    return cast(list[Atoms], read(artifact.file("start.xyz"), index=":", format="extxyz"))  # index=":": a list


# ----------------------------------------------------------------------------- MD
def md_params(model_key: str, starts_key: str, protocol: Protocol, seed: int = 0) -> dict:
    """Cache parameters of :func:`run_sweep_md` (a campaign asks for them without running)."""
    return {
        "model": model_key,
        "starts": starts_key,
        "protocol": asdict(protocol),
        "seed": int(seed),
        "after_failure": AFTER_FAILURE,
        "stage_version": STAGE_VERSION,
    }


def sweep_systems(starts: Artifact, protocol: Protocol) -> list[tuple[Atoms, float]]:
    """The sweep's systems in their batch order: every start structure at every temperature (K)."""
    return [(atoms, t) for atoms in start_images(starts) for t in protocol.temperatures]


def simulate_sweep(
    model: Artifact,
    starts: Artifact,
    protocol: Protocol,
    seed: int,
    path: Path,
    *,
    n_steps: int | None = None,
    progress: bool = False,
    device: str = "cpu",
):
    """The sweep's batched Langevin run of every (molecule, temperature) into ``path``; its summary.

    ``n_steps`` (default the protocol's) runs only a prefix with the same frame interval and noise,
    so the first frames of a shipped run can be recomputed and compared. One torch thread, so the
    run is the same on every machine's CPU.
    """
    systems = sweep_systems(starts, protocol)
    with one_torch_thread():
        potential = potential_from_checkpoint(model.file("model.pt"), device=device)
        return run_md(
            potential,
            [a for a, _ in systems],
            n_steps=protocol.n_steps if n_steps is None else int(n_steps),
            path=path,
            temperatures=[t for _, t in systems],
            seeds=int(seed),
            dt_fs=protocol.dt_fs,
            friction=protocol.friction_per_fs,
            frame_interval=protocol.frame_interval,
            checkpoint_interval=max(protocol.frame_interval, 1000),
            dtype=torch.float64,
            device=device,
            progress=progress,
            after_failure=AFTER_FAILURE,
        )


def run_sweep_md(
    model: Artifact,
    starts: Artifact,
    protocol: Protocol,
    seed: int = 0,
    root=None,
    progress: bool = False,
    device: str = "cpu",
    *,
    scale: Scale | None = None,
    shipped: bool = True,
) -> Artifact:
    """One batched MD run of every (molecule, temperature) with the model of ``model``.

    The artifact holds ``trajectory.h5`` (format of :mod:`gemrepro.md.trajectory`) and
    ``systems.csv``: system, molecule, formula, atoms, temperature, and the failure (step, time,
    rule) of each trajectory. A failed trajectory runs on to the end (:data:`AFTER_FAILURE`);
    only non-finite coordinates freeze it. Each system draws its noise from its own seed, so a
    trajectory does not depend on the others in the batch. ``device`` is not part of the key
    (bit-for-bit reproducibility holds on the CPU with one thread). With ``scale``, a run the
    scale's committed bundle holds is taken from there (``tiny``'s 10 ps runs take about an hour of
    one core); ``shipped=False`` computes it anyway.
    """
    root = Path(root) if root else artifacts_dir()
    params = md_params(model.key, starts.key, protocol, seed)
    found = load_artifact(MD_STAGE, params, root)
    if found is None and shipped and scale is not None:
        found = shipped_artifact(scale, MD_STAGE, params, root)
    if found is not None:
        return found

    def build(folder: Path, workdir: Path) -> dict:
        systems = sweep_systems(starts, protocol)
        summary = simulate_sweep(
            model, starts, protocol, seed, workdir / "trajectory.h5", progress=progress, device=device
        )
        shutil.move(str(workdir / "trajectory.h5"), folder / "trajectory.h5")
        rows = []
        for s, ((atoms, t), failure) in enumerate(zip(systems, summary.failures)):
            rows.append(
                {
                    "system": s,
                    "molecule": atoms.info["name"],
                    "formula": atoms.get_chemical_formula(),
                    "n_atoms": len(atoms),
                    "temperature": t,
                    "failed": failure is not None,
                    "failure_step": failure.step if failure else -1,
                    "time_to_failure_ps": failure.time_ps if failure else float("nan"),
                    "failure_rule": failure.rule if failure else "",
                }
            )
        pd.DataFrame(rows).to_csv(folder / "systems.csv", index=False)
        return {
            "steps": summary.step,
            "n_frames": summary.n_frames,
            "md_wall_time_s": round(summary.wall_time_s, 2),
            "steps_per_second": round(summary.steps_per_second, 2),
            "n_failed": sum(r["failed"] for r in rows),
        }

    return get_or_create(MD_STAGE, params, build, root, resumable=True)


def systems_table(md: Artifact) -> pd.DataFrame:
    """The ``systems.csv`` of an MD run (one row per trajectory)."""
    table = pd.read_csv(md.file("systems.csv"), keep_default_na=False, na_values=[""])
    table["failure_rule"] = table["failure_rule"].fillna("")
    table["n_electrons"] = [int(Atoms(formula).numbers.sum()) for formula in table["formula"]]
    return table


# ----------------------------------------------------------------------------- frame choice
def sample_frames(alive: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` uniformly spaced frames of one trajectory, the last one included.

    ``alive`` (frames,) says whether the system was still integrated in each stored frame
    (``frames/alive``). The sample spans frame 1 (the first after the start structure) to the last
    frame of the run, or to the first frame it was no longer integrated in — the geometry it
    stopped in. In a run that continued failed systems that is the whole run (unless the
    coordinates turned non-finite); in a frozen run a failed sample ends at the failure geometry
    (:func:`sampled_frames` with ``until_failure`` ends a continued run's sample there too).
    Shorter trajectories give all their frames; a system dead at the start gives frame 0.
    """
    alive = np.asarray(alive, dtype=bool)
    if alive.ndim != 1 or len(alive) == 0:
        raise ValueError(f"alive: expected a non-empty 1-d array (one flag per frame), got shape {alive.shape}")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n: expected a positive number of frames, got {n!r}")
    last = int(np.argmin(alive)) if not alive.all() else len(alive) - 1
    if last == 0:
        return np.array([0])
    if last <= n:
        return np.arange(1, last + 1)
    return np.round(np.linspace(0, last, n + 1)[1:]).astype(int)


def _first_failed(failed: np.ndarray) -> np.ndarray:
    """(S,) per system the first frame at or after its failure; -1 where none is."""
    return np.where(failed.any(axis=0), np.argmax(failed, axis=0), -1)


def sampled_frames(md: Artifact, n: int, until_failure: bool = False) -> pd.DataFrame:
    """The frames :func:`sample_frames` picks from every trajectory of a run.

    Columns: system, frame, step, time_ps, ``failure_frame`` (the first stored frame at or after
    the failure: in a frozen run the failure geometry), ``after_failure`` (the frame is at or after
    the failure), molecule, temperature. A run that continued its failed trajectories is sampled
    over its whole length; ``until_failure`` ends each failed sample at its failure frame instead,
    as a frozen run's is (for a frozen run it changes nothing).
    """
    systems = systems_table(md)
    with h5py.File(md.file("trajectory.h5"), "r") as f:
        alive, steps, times = f["frames/alive"][()], f["frames/step"][()], f["frames/time_ps"][()]
        failed = failed_frames(steps, f["failure/step"][()])
    first_failed = _first_failed(failed)
    rows = []
    for s in systems["system"]:
        usable = alive[:, s].copy()
        if until_failure and first_failed[s] >= 0:
            usable[first_failed[s] :] = False  # the failure frame is then the first "dead" one
        for k in sample_frames(usable, n):
            rows.append(
                {
                    "system": int(s),
                    "frame": int(k),
                    "step": int(steps[k]),
                    "time_ps": float(times[k]),
                    "failure_frame": bool(k == first_failed[s]),
                    "after_failure": bool(failed[k, s]),
                }
            )
    table = pd.DataFrame(rows)
    return table.merge(systems[["system", "molecule", "temperature"]], on="system")


def pbe0_subsample(
    frames: pd.DataFrame, systems: pd.DataFrame, per_cell: int, temperatures: Sequence[float] | None = None
) -> pd.DataFrame:
    """A small, deterministic subsample for an expensive method: per temperature, the last
    ``per_cell`` sampled frames of the trajectory of the molecule with the fewest electrons.

    The last frames are the end of the run: for a trajectory that failed and ran on, its
    post-failure frames (where the paper's reference calculations stop converging, Fig. 2d); for a
    frozen run's, the frames up to its failure geometry. The molecule with the fewest electrons is
    the cheapest DFT. ``temperatures`` restricts the cells (default all).
    """
    if isinstance(per_cell, bool) or int(per_cell) != per_cell or per_cell < 0:
        raise ValueError(f"per_cell: expected a non-negative number of frames, got {per_cell!r}")
    sizes = systems.set_index("system")["n_electrons"]
    chosen = []
    for temperature, cell in frames.groupby("temperature", sort=True):
        if temperatures is not None and not any(np.isclose(temperature, t) for t in temperatures):
            continue
        smallest = min(cell["system"].unique(), key=lambda s: (sizes[s], s))
        chosen.append(cell[cell["system"] == smallest].sort_values("frame").tail(int(per_cell)))
    if not chosen:
        return frames.iloc[:0].copy()
    return pd.concat(chosen, ignore_index=True)


# ----------------------------------------------------------------------------- relabelling
def label_frames(method_name: str, options: dict, numbers: np.ndarray, positions: list[np.ndarray]) -> list[dict]:
    """Run on a worker: the reference method on each geometry; failures become records, never raises.

    Geometries with non-finite coordinates (a system that blew up) cannot be computed; they are
    recorded as not converged with that reason.
    """
    method = get_method(method_name, **options)
    out = []
    for r in positions:
        if not np.all(np.isfinite(r)):
            out.append(
                {
                    "energy": float("nan"),
                    "forces": np.full((len(numbers), 3), np.nan),
                    "converged": False,
                    "error": "non-finite coordinates",
                    "wall_time": 0.0,
                }
            )
            continue
        result = method.compute(numbers, r)
        out.append(
            {
                "energy": float(result.energy),
                "forces": np.asarray(result.forces, dtype=float),
                "converged": bool(result.converged),
                "error": result.error or "",
                "wall_time": float(result.wall_time),
            }
        )
    return out


def _chunks(items: list, n_chunks: int) -> list[list]:
    n_chunks = max(1, min(n_chunks, len(items)))
    return [items[i::n_chunks] for i in range(n_chunks)]


def relabel(
    md: Artifact,
    frames: pd.DataFrame,
    method: str = "gfn2-xtb",
    *,
    options: dict | None = None,
    root=None,
    scheduler: str | None = None,
    n_workers: int | None = None,
) -> Artifact:
    """``frames`` of the run ``md`` relabelled with ``method``, in parallel on Dask; cached.

    The artifact holds ``frames.csv`` — the chosen frames with the model's atomization energy
    (``model_energy``), ``failure_frame`` (the first stored frame at or after the trajectory's
    failure), ``after_failure`` (the frame is at or after it), the reference's total and
    atomization energies, ``energy_error`` (model minus reference, eV), the per-frame
    ``forces_mae`` (eV/Å), ``converged``, ``error``,
    ``wall_time`` and the frame geometry (:func:`~gemrepro.analysis.errors.frame_geometry`) — and
    ``forces.npz`` with both force arrays per frame.
    """
    return relabel_runs({0: (md, frames)}, method, options, root, scheduler, n_workers)[0]


def relabel_runs(
    runs: dict,
    method: str = "gfn2-xtb",
    options: dict | None = None,
    root=None,
    scheduler: str | None = None,
    n_workers: int | None = None,
) -> dict:
    """:func:`relabel` for several ``{name: (md artifact, frames)}`` at once; ``{name: artifact}``.

    The frames of every run not yet cached go to one Dask cluster together, so a few expensive
    calculations spread over the cores; without missing work no cluster is started.
    """
    options = dict(options or {})
    reference = get_method(method, **options)
    keyed = {name: (md, *label_params(md, frames, reference)) for name, (md, frames) in runs.items()}
    done = {name: load_artifact(LABEL_STAGE, params, root) for name, (_, params, _) in keyed.items()}
    missing = [name for name, artifact in done.items() if artifact is None]
    if missing:
        jobs = {name: _jobs(keyed[name][0], keyed[name][2]) for name in missing}
        with dask_client(scheduler, n_workers) as client:
            results = _compute(jobs, reference.name, options, client)
        for name in missing:
            md, params, _ = keyed[name]
            systems = systems_table(md).set_index("system")

            def build(folder: Path, n=name, systems=systems) -> dict:
                return _write_labels(folder, systems, jobs[n], results[n], reference, root)

            done[name] = get_or_create(LABEL_STAGE, params, build, root)
    return done


def label_params(md: Artifact, frames: pd.DataFrame, reference) -> tuple[dict, pd.DataFrame]:
    """Cache key of a relabelling and the (system, frame) pairs it covers, sorted."""
    missing = [c for c in ("system", "frame") if c not in frames.columns]
    if missing:
        raise ValueError(f"frames: missing column(s) {missing}; expected a table from sampled_frames")
    chosen = frames[["system", "frame"]].astype(int).drop_duplicates().sort_values(["system", "frame"])
    params = {
        "md": md.key,
        "method": reference.name,
        "options": reference.options(),
        "frames": chosen.to_numpy().tolist(),
        "stage_version": STAGE_VERSION,
    }
    return params, chosen


def _jobs(md: Artifact, chosen: pd.DataFrame) -> list[dict]:
    """The chosen frames of a run with what the model said about them."""
    jobs = []
    with h5py.File(md.file("trajectory.h5"), "r") as f:
        offsets = f["systems/atom_offset"][()]
        numbers_all, reference_all = f["systems/numbers"][()], f["systems/reference_positions"][()]
        failed = failed_frames(f["frames/step"][()], f["failure/step"][()])
        first_failed = _first_failed(failed)
        for s, k in chosen.itertuples(index=False):
            a, b = int(offsets[s]), int(offsets[s + 1])
            jobs.append(
                {
                    "system": int(s),
                    "frame": int(k),
                    "numbers": numbers_all[a:b],
                    "start": reference_all[a:b],
                    "positions": f["frames/positions"][k, a:b],
                    "model_forces": f["frames/forces"][k, a:b],
                    "model_energy": float(f["frames/energy"][k, s]),
                    "step": int(f["frames/step"][k]),
                    "time_ps": float(f["frames/time_ps"][k]),
                    "alive": bool(f["frames/alive"][k, s]),
                    "after_failure": bool(failed[k, s]),
                    "failure_frame": bool(k == first_failed[s]),
                }
            )
    return jobs


def _compute(jobs: dict[object, list[dict]], method: str, options: dict, client) -> dict[object, list[dict]]:
    """Reference results of every run's jobs, in order; one Dask task per chunk of one trajectory."""
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    total = sum(len(j) for j in jobs.values())
    tasks = []
    for name, run_jobs in jobs.items():
        by_system: dict[int, list[int]] = {}
        for i, job in enumerate(run_jobs):
            by_system.setdefault(job["system"], []).append(i)
        for indices in by_system.values():
            # about four chunks per worker overall, so the cores stay busy to the end
            n_chunks = max(1, round(4 * workers * len(indices) / max(total, 1)))
            for chunk in _chunks(indices, n_chunks):
                future = client.submit(
                    label_frames,
                    method,
                    options,
                    run_jobs[chunk[0]]["numbers"],
                    [run_jobs[i]["positions"] for i in chunk],
                    pure=False,
                )
                tasks.append((name, chunk, future))
    results: dict[object, list] = {name: [None] * len(run_jobs) for name, run_jobs in jobs.items()}
    for name, chunk, future in tasks:
        for i, res in zip(chunk, future.result()):
            results[name][i] = res
    return results


def _write_labels(folder: Path, systems: pd.DataFrame, jobs: list[dict], results: list[dict], reference, root) -> dict:
    """``frames.csv`` and ``forces.npz`` of one relabelled run (see :func:`relabel`)."""
    elements = sorted({int(z) for job in jobs for z in job["numbers"]} | {1})
    free_atoms = free_atom_energies(reference, elements, root=root)
    rows, model_forces, reference_forces = [], [], []
    for job, res in zip(jobs, results):
        converged = res["converged"]
        ae = atomization_energy(res["energy"], job["numbers"], free_atoms) if converged else float("nan")
        fmae = force_mae(job["model_forces"], res["forces"]) if converged else float("nan")
        info = systems.loc[job["system"]]
        rows.append(
            {
                "system": job["system"],
                "frame": job["frame"],
                "step": job["step"],
                "time_ps": job["time_ps"],
                "molecule": info["molecule"],
                "temperature": float(info["temperature"]),
                "n_atoms": len(job["numbers"]),
                "failure_frame": job["failure_frame"],
                "after_failure": job["after_failure"],
                "model_energy": job["model_energy"],
                "reference_energy": res["energy"] if converged else float("nan"),
                "reference_atomization_energy": ae,
                "energy_error": job["model_energy"] - ae,
                "forces_mae": fmae,
                "converged": converged,
                "error": res["error"],
                "wall_time": res["wall_time"],
                **frame_geometry(job["numbers"], job["positions"], job["start"]),
            }
        )
        model_forces.append(job["model_forces"])
        reference_forces.append(res["forces"])
    pd.DataFrame(rows).to_csv(folder / "frames.csv", index=False)
    np.savez_compressed(
        folder / "forces.npz",
        model=np.concatenate(model_forces),
        reference=np.concatenate(reference_forces),
        atom_offset=np.cumsum([0] + [len(f) for f in model_forces]),
    )
    return {
        "n_frames": len(rows),
        "n_converged": int(sum(r["converged"] for r in rows)),
        "reference_cpu_time_s": round(float(sum(r["wall_time"] for r in rows)), 2),
        "free_atom_energies": {str(z): e for z, e in free_atoms.items()},
    }


def dft_convergence(
    result: "Sweep",
    scale: Scale,
    method: str = "pbe0",
    per_cell: int | None = None,
    temperatures: Sequence[float] | None = None,
    root=None,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """The expensive method on the scale's subsample of every run of ``result`` (Fig. 2d); frames with train_size.

    ``per_cell`` and ``temperatures`` default to the scale's ``dft_frames_per_cell`` and
    ``dft_temperatures`` (see :func:`pbe0_subsample`); the calculations are cached like any relabelling.
    """
    per_cell = scale.dft_frames_per_cell if per_cell is None else per_cell
    temperatures = scale.dft_temperatures if temperatures is None else temperatures
    subsamples = {}
    for n, md in result.md.items():
        sampled = sampled_frames(md, result.protocol.n_sampled_frames)
        subsamples[n] = pbe0_subsample(sampled, systems_table(md), per_cell, temperatures)
    labels = relabel_runs(
        {n: (md, subsamples[n]) for n, md in result.md.items()}, method, root=root, scheduler=scheduler
    )
    frames = pd.concat([load_frames(a).assign(train_size=n) for n, a in labels.items()], ignore_index=True)
    frames.attrs["labels"] = labels
    return frames


def load_frames(labels: Artifact) -> pd.DataFrame:
    """The ``frames.csv`` of a relabelling artifact."""
    table = pd.read_csv(labels.file("frames.csv"), keep_default_na=False, na_values=["", "nan", "NaN"])
    table["error"] = table["error"].fillna("")
    return table


# ----------------------------------------------------------------------------- the campaign
@dataclass
class Sweep:
    """The temperature sweep of one scale: artifacts per training size and the combined tables."""

    protocol: Protocol
    starts: Artifact
    models: dict[int, Artifact]
    md: dict[int, Artifact]
    labels: dict[int, Artifact]
    trajectories: pd.DataFrame  # one row per (train_size, system) with its failure
    frames: pd.DataFrame  # one row per relabelled frame, with train_size

    def artifacts(self) -> list[Artifact]:
        return [*self.md.values(), *self.labels.values()]


def n_md_molecules(scale: Scale, n_molecules: int | None = None) -> int:
    """How many MD molecules the sweep runs: ``n_molecules`` or the scale's, at least enough to cover every element."""
    return max(n_molecules or scale.n_md_molecules, MD_MOLECULES_COVER_ALL_ELEMENTS)


def temperature_sweep(
    scale: Scale,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    *,
    variant: str | None = None,
    n_molecules: int | None = None,
    protocol: Protocol | None = None,
    root=None,
    progress: bool = False,
    scheduler: str | None = None,
    n_workers: int | None = None,
    device: str = "cpu",
) -> Sweep:
    """Train (or load) the scale's four models, run their MD and relabel the sampled frames.

    ``n_molecules`` defaults to the scale's and is raised to the smallest prefix of the MD
    molecules that holds every element. ``variant`` is "T" or "Q"; ``None`` means the scale's
    default. Each piece is cached; a second call only reads.
    """
    variant = resolve_variant(scale, variant)
    root = Path(root) if root else artifacts_dir()
    protocol = protocol or protocol_for(scale)
    n_molecules = n_md_molecules(scale, n_molecules)
    curve = learning_curve(
        scale=scale, seed=seed, reference=reference, variant=variant, root=root, progress=progress, device=device
    )
    models = dict(zip((int(n) for n in curve["train_size"]), model_artifacts(curve, root=root)))
    starts = start_structures(n_molecules, seed, root)
    md = {
        n: run_sweep_md(model, starts, protocol, seed, root, progress, device, scale=scale)
        for n, model in models.items()
    }
    samples = {n: sampled_frames(run, protocol.n_sampled_frames) for n, run in md.items()}
    labels = relabel_runs(
        {n: (run, samples[n]) for n, run in md.items()}, reference, root=root, scheduler=scheduler, n_workers=n_workers
    )
    trajectories = pd.concat([systems_table(run).assign(train_size=n) for n, run in md.items()], ignore_index=True)
    frames = pd.concat([load_frames(art).assign(train_size=n) for n, art in labels.items()], ignore_index=True)
    return Sweep(protocol, starts, models, md, labels, trajectories, frames)
