"""A campaign of many trajectories on a fixed number of batch slots that never idle.

:func:`gemrepro.md.run_md` advances one batch to the end: a replica that fails early stays in
the batch, frozen, and the potential still evaluates it at every step. :func:`run_queue` runs a
queue of trajectories on ``slots`` batch slots instead. When a trajectory ends — it failed (run
``after_failure="freeze"``), turned non-finite, or reached ``n_steps`` — its file is closed and its
slot is given to the next trajectory in the queue before the next step; once the queue is empty,
ended slots leave the batch. TorchSim's in-flight batcher does this for optimisation only, not MD.

Exactness. Each trajectory owns its seed (the one :func:`gemrepro.md.runner.system_seeds` gives it
in a plain run of all trajectories), its generator, its step counter and its own HDF5 file in the
layout of a one-system :func:`run_md` file. So what a trajectory does does not depend on its slot
or its neighbours beyond floating-point rounding of the batched potential, and its failure is
recorded in its own steps. A checkpoint holds the batch, every slot's trajectory and start step,
the queue position and every file's frame count; a killed campaign resumes from it bit for bit
(frames written after it are cut back, as in :func:`run_md`).

Files: ``folder/trajectory_00000.h5`` … one per trajectory, frames every ``frame_interval`` of its
own steps plus its last step; ``folder/campaign.ckpt``; ``folder/campaign.json`` once all ended.
With ``refill=False`` the same engine runs the queue in waves of ``slots`` trajectories, each wave
to its end with ended slots frozen in the batch — the plain batched run the benchmark compares with.

I/O errors, as in :func:`run_md`: a frame, failure record, checkpoint or summary that cannot be
written (a full disk) ends the campaign with one ``OSError`` naming the file, the batch step and
the step of the last checkpoint, which stays whole (:func:`gemrepro.md.runner.atomic_save`); the
open files are closed without a second error. A checkpoint of the empty campaign is written
before the first trajectory starts, so rerunning the same call resumes even after a failure in
the first files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from ase import Atoms
from tqdm.std import tqdm

from gemrepro.analysis.geometry import check_geometry
from gemrepro.analysis.stability import FailureRecord, StabilityCriteria
from gemrepro.md.failures import STOP_RULES, FailureDetector, mark_failed
from gemrepro.md.integrators import DEFAULT_DT_FS, evaluate, get_integrator
from gemrepro.md.runner import AFTER_FAILURE_MODES, DEFAULT_FRICTION_PER_FS, atomic_save, system_seeds, write_failed
from gemrepro.md.state import MDState, Potential, build_state, concatenate_states, new_generator, select_systems
from gemrepro.md.trajectory import TrajectoryWriter, read_system
from gemrepro.model import resolve_device

CHECKPOINT_NAME = "campaign.ckpt"
SUMMARY_NAME = "campaign.json"
CHECKPOINT_VERSION = 1


def trajectory_path(folder: str | Path, trajectory: int) -> Path:
    """Where trajectory ``trajectory`` of a campaign in ``folder`` is written."""
    return Path(folder) / f"trajectory_{trajectory:05d}.h5"


def read_trajectory(source: str | Path, system: int) -> dict[str, np.ndarray]:
    """System ``system`` of a batched trajectory file, or trajectory ``system`` of a campaign folder.

    What :func:`gemrepro.md.trajectory.read_system` returns, so an analysis reads either kind of run.
    """
    source = Path(source)
    if source.is_dir():
        return read_system(trajectory_path(source, system), 0)
    return read_system(source, system)


def failure_frame(source: str | Path, trajectory: int) -> dict:
    """The geometry, forces, energy and kinetic temperature a campaign's trajectory failed in (its last frame)."""
    data = read_system(trajectory_path(source, trajectory), 0)
    if data["failure_step"] < 0 or int(data["step"][-1]) != data["failure_step"]:
        raise ValueError(f"trajectory {trajectory}: not failed, or its last frame is not its failure step")
    return {
        "step": int(data["step"][-1]),
        "positions": data["positions"][-1],
        "forces": data["forces"][-1],
        "energy": float(data["energy"][-1]),
        "temperature": float(data["temperature_kin"][-1]),
    }


@dataclass(frozen=True)
class QueueSummary:
    """What a campaign produced, per trajectory (in queue order) and for the whole run.

    ``system_steps`` counts the steps the trajectories were integrated (the work done);
    ``evaluated_system_steps`` the systems the potential evaluated over all batch steps, frozen
    slots included. Their ratio is the fraction of the batch that did useful work.
    """

    folder: Path
    paths: list[Path]
    steps: list[int]
    failures: list[FailureRecord | None]
    system_steps: int
    evaluated_system_steps: int
    batch_steps: int
    resumed_from_step: int | None
    wall_time_s: float

    @property
    def utilisation(self) -> float:
        return self.system_steps / self.evaluated_system_steps if self.evaluated_system_steps else float("nan")

    @property
    def system_steps_per_second(self) -> float:
        return self.system_steps / self.wall_time_s if self.wall_time_s > 0 else float("nan")


@dataclass
class _Slot:
    trajectory: int
    start: int  # batch step at which the trajectory's step 0 was
    writer: TrajectoryWriter
    ended: bool = False


def _values(value: float | Sequence[float], n: int, name: str) -> list[float]:
    values = [float(cast(float, value))] * n if np.isscalar(value) else [float(v) for v in cast(Sequence[float], value)]
    if len(values) != n or not all(np.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{name}: expected one finite non-negative value or {n} (one per trajectory), got {value!r}")
    return values


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _failure_record(step: int, rule: int, atoms: Sequence[int], dt_fs: float) -> FailureRecord | None:
    if rule == 0:
        return None
    return FailureRecord(
        step=step, time_ps=step * dt_fs / 1000.0, rule=STOP_RULES[rule - 1], atoms=tuple(a for a in atoms if a >= 0)
    )


class _Campaign:
    """The batch, its slots and the queue; one instance per call of :func:`run_queue`."""

    def __init__(
        self,
        potential: Potential,
        systems: list[Atoms],
        *,
        n_steps: int,
        folder: Path,
        slots: int,
        temperatures: list[float],
        frictions: list[float],
        seeds: list[int],
        dt_fs: float,
        integrator: str,
        frame_interval: int,
        checkpoint_interval: int,
        check_interval: int,
        criteria: StabilityCriteria,
        dtype: torch.dtype,
        device: torch.device,
        after_failure: str,
        refill: bool,
    ) -> None:
        self.potential, self.systems, self.n_steps, self.folder = potential, systems, n_steps, folder
        self.n_slots, self.temperatures, self.frictions, self.seeds = slots, temperatures, frictions, seeds
        self.dt_fs, self.integrator, self.step_fn = dt_fs, integrator, get_integrator(integrator)
        self.frame_interval, self.checkpoint_interval, self.check_interval = (
            frame_interval,
            checkpoint_interval,
            check_interval,
        )
        self.criteria, self.dtype, self.device = criteria, dtype, device
        self.freeze, self.refill, self.after_failure = after_failure == "freeze", refill, after_failure
        self.slots: list[_Slot] = []
        self.state: MDState | None = None
        self.detector: FailureDetector | None = None
        self.next_trajectory = 0
        self.results: dict[int, dict] = {}  # trajectory -> {"steps", "failure_step", "failure_rule", "failure_atoms"}
        self.batch_steps = 0
        self.evaluated = 0
        self.saved_step: int | None = None  # batch step of the checkpoint on disk (None: none yet)
        self.write_error = False
        self.fingerprint = self._fingerprint()

    # --- identity -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        config = dict(
            n_steps=self.n_steps,
            slots=self.n_slots,
            dt_fs=self.dt_fs,
            integrator=self.integrator,
            frame_interval=self.frame_interval,
            check_interval=self.check_interval,
            criteria=repr(self.criteria),
            dtype=str(self.dtype),
            after_failure=self.after_failure,
            refill=self.refill,
            temperatures=self.temperatures,
            frictions=self.frictions,
            seeds=self.seeds,
        )
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for atoms in self.systems:
            digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
            digest.update(np.asarray(atoms.positions, dtype=np.float64).tobytes())
            digest.update(np.asarray(atoms.get_masses(), dtype=np.float64).tobytes())
        return digest.hexdigest()

    @contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """A failed write to ``path`` (a full disk) becomes ``run_md``'s one-line ``OSError``, reported once."""
        try:
            yield
        except OSError as exc:
            if self.write_error or self.saved_step is None:  # reported already, or no checkpoint to name yet
                self.write_error = True
                raise
            self.write_error = True
            raise write_failed(exc, path, self.checkpoint_path, self.batch_steps, self.saved_step) from exc

    # --- one trajectory ---------------------------------------------------------------------------
    def _local(self, slot: _Slot) -> int:
        assert self.state is not None
        return self.state.step - slot.start

    def _view(self, s: int) -> MDState:
        """Slot ``s`` as a one-system state in its trajectory's own steps (what its file records)."""
        assert self.state is not None
        slot = self.slots[s]
        view = select_systems(self.state, [s])
        failed = view.failure_step >= 0
        return view.replace(
            step=self._local(slot), failure_step=torch.where(failed, view.failure_step - slot.start, view.failure_step)
        )

    def _start(self, trajectory: int, start: int) -> tuple[MDState, _Slot] | None:
        """Step 0 of ``trajectory``: momenta from its seed, forces, the step-0 check, its file and first frame.

        None when the trajectory ended at step 0 (its file is then complete).
        """
        atoms = self.systems[trajectory]
        single = build_state(
            [atoms.positions],
            [atoms.numbers],
            [atoms.get_masses()],
            [self.temperatures[trajectory]],
            [self.frictions[trajectory]],
            [self.seeds[trajectory]],
            remove_com_dof=self.integrator == "verlet",
            dtype=self.dtype,
            device=self.device,
        )
        energy, forces = evaluate(single, self.potential, single.positions)
        single = self._check(single.replace(energy=energy, forces=forces), FailureDetector(single, self.criteria))
        path = trajectory_path(self.folder, trajectory)
        with self.writing(path):
            writer = TrajectoryWriter.create(
                path,
                single,
                dt_fs=self.dt_fs,
                integrator=self.integrator,
                frame_interval=self.frame_interval,
                seeds=[self.seeds[trajectory]],
                formulas=[atoms.get_chemical_formula()],
                after_failure=self.after_failure,
            )
            try:
                writer.append(single, self.dt_fs)
            except OSError:
                _close_quietly(writer)  # in no slot yet: nothing else closes it
                raise
        if self._ends_at_start(single):
            self._close(trajectory, writer, single)
            return None
        failed = single.failure_step >= 0
        in_batch = single.replace(
            step=start, failure_step=torch.where(failed, single.failure_step + start, single.failure_step)
        )
        return in_batch, _Slot(trajectory, start, writer)

    def _check(self, state: MDState, detector: FailureDetector) -> MDState:
        """``run_md``'s failure check: in ``"continue"`` only non-finite systems stop being integrated."""
        checked = detector(state)
        if self.freeze:
            return checked
        bad = _nonfinite(checked)
        checked = mark_failed(checked, bad, "nonfinite")
        return checked.replace(alive=state.alive & ~bad)

    def _finish(self, s: int) -> None:
        """Close slot ``s``'s trajectory."""
        slot = self.slots[s]
        self._close(slot.trajectory, slot.writer, self._view(s))
        slot.ended = True

    def _close(self, trajectory: int, writer: TrajectoryWriter, view: MDState) -> None:
        """A last frame at the trajectory's last step (unless just written), its failure record, its result."""
        with self.writing(writer.path):
            try:
                if view.step % self.frame_interval != 0:
                    writer.append(view, self.dt_fs)
                writer.write_failures(view)
            except OSError:
                _close_quietly(writer)
                raise
            writer.close()
        failed = int(view.failure_rule[0]) > 0
        last = int(view.failure_step[0]) if self.freeze and failed else view.step
        self.results[trajectory] = {
            "steps": last,
            "failure_step": int(view.failure_step[0]),
            "failure_rule": int(view.failure_rule[0]),
            "failure_atoms": [int(a) for a in view.failure_atoms[0].tolist()],
        }

    def _ends_at_start(self, single: MDState) -> bool:
        """A trajectory of no steps, or one that fails its step-0 check in a frozen run, never enters the batch."""
        return self.n_steps == 0 or not bool(single.alive[0])

    # --- the batch --------------------------------------------------------------------------------
    def _rebuild(self, parts: list[MDState]) -> None:
        self.state = concatenate_states(parts, self.state.step if self.state is not None else 0)
        self.detector = FailureDetector(self.state, self.criteria)

    def fill(self) -> None:
        """Give ended slots to queued trajectories (all at once between waves when not refilling)."""
        ended = [s for s, slot in enumerate(self.slots) if slot.ended]
        queue_empty = self.next_trajectory >= len(self.systems)
        if not ended and (len(self.slots) == self.n_slots or queue_empty):
            return
        if not self.refill and len(ended) < len(self.slots):
            return  # the wave is still running
        step = self.state.step if self.state is not None else 0
        parts, slots = [], []
        for s, slot in enumerate(self.slots):
            if not slot.ended:
                assert self.state is not None  # a slot that has not ended runs in the batch
                parts.append(select_systems(self.state, [s]))
                slots.append(slot)
        while len(slots) < self.n_slots and self.next_trajectory < len(self.systems):
            started = self._start(self.next_trajectory, step)
            self.next_trajectory += 1
            if started is not None:
                parts.append(started[0])
                slots.append(started[1])
        self.slots = slots
        if parts:
            self._rebuild(parts)
        else:
            self.state = None

    def _end_of_step(self) -> None:
        """Frames of slots at a frame step; trajectories that ended close and free their slots."""
        assert self.state is not None
        alive = self.state.alive.tolist()
        for s, slot in enumerate(self.slots):
            if slot.ended:
                continue
            local = self._local(slot)
            if local % self.frame_interval == 0:
                with self.writing(slot.writer.path):
                    slot.writer.append(self._view(s), self.dt_fs)
            if local >= self.n_steps or not alive[s]:
                self._finish(s)

    def step(self) -> None:
        assert self.state is not None and self.detector is not None
        self.state = self.step_fn(self.state, self.potential, self.dt_fs)
        self.batch_steps += 1
        self.evaluated += self.state.n_systems
        local = torch.tensor([self._local(slot) for slot in self.slots], device=self.device)
        due = (local % self.check_interval == 0) & torch.tensor(
            [not slot.ended for slot in self.slots], device=self.device
        )
        if bool(due.any()):
            checked = self._check(self.state, self.detector)
            keep = ~due
            self.state = checked.replace(
                alive=torch.where(keep, self.state.alive, checked.alive),
                failure_step=torch.where(keep, self.state.failure_step, checked.failure_step),
                failure_rule=torch.where(keep, self.state.failure_rule, checked.failure_rule),
                failure_atoms=torch.where(keep[:, None], self.state.failure_atoms, checked.failure_atoms),
            )
        self._end_of_step()

    @property
    def running(self) -> bool:
        return any(not slot.ended for slot in self.slots)

    # --- checkpoints ------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT_NAME

    def save(self) -> None:
        """Atomically write the campaign (batch, slots, queue position, frame counts, results).

        A failed write leaves the previous checkpoint whole (the first one: no checkpoint).
        """
        payload = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "next_trajectory": self.next_trajectory,
            "results": self.results,
            "batch_steps": self.batch_steps,
            "evaluated": self.evaluated,
            "slots": [
                {
                    "trajectory": s.trajectory,
                    "start": s.start,
                    "ended": s.ended,
                    "n_frames": None if s.ended else s.writer.n_frames,
                }
                for s in self.slots
            ],
            "step": None if self.state is None else self.state.step,
            "tensors": None if self.state is None else {k: t.detach().cpu() for k, t in self.state.tensors().items()},
            "generators": None if self.state is None else [g.get_state() for g in self.state.generators],
        }
        with self.writing(self.checkpoint_path):
            atomic_save(self.checkpoint_path, payload)
        self.saved_step = self.batch_steps

    def load(self) -> int:
        """Continue from the checkpoint: the batch as saved, every running file cut back to its frames."""
        payload = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        if payload.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{self.checkpoint_path}: expected campaign checkpoint version {CHECKPOINT_VERSION}")
        if payload["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"folder: {self.checkpoint_path} belongs to a different campaign (systems or settings "
                "differ); use another folder"
            )
        self.next_trajectory, self.batch_steps, self.evaluated = (
            payload["next_trajectory"],
            payload["batch_steps"],
            payload["evaluated"],
        )
        self.results = {int(k): v for k, v in payload["results"].items()}
        self.saved_step = self.batch_steps
        if payload["tensors"] is not None:
            generators = []
            for rng_state in payload["generators"]:
                generator = new_generator(0, self.device)
                generator.set_state(rng_state)
                generators.append(generator)
            tensors = {k: t.to(self.device) for k, t in payload["tensors"].items()}
            self.state = MDState(**tensors, generators=generators, step=int(payload["step"]))
            self.detector = FailureDetector(self.state, self.criteria)
        self.slots = []
        for s, saved in enumerate(payload["slots"]):
            path = trajectory_path(self.folder, saved["trajectory"])
            if saved["ended"]:
                self.slots.append(_Slot(saved["trajectory"], saved["start"], None, ended=True))  # type: ignore[arg-type]
                continue
            if not path.is_file():
                raise ValueError(f"folder: the checkpoint runs {path.name}, which is missing; use another folder")
            with self.writing(path):
                slot = _Slot(saved["trajectory"], saved["start"], TrajectoryWriter(path, "a"))
                self.slots.append(slot)
                slot.writer.truncate(saved["n_frames"], self._view(s))
        return self.batch_steps

    def close(self) -> None:
        """Close every running trajectory's file; after a failed write, that failure is the one reported."""
        for slot in self.slots:
            if not slot.ended and slot.writer is not None:
                if self.write_error:
                    _close_quietly(slot.writer)
                else:
                    slot.writer.close()


def _close_quietly(writer: TrajectoryWriter) -> None:
    """Close after a failed write: a second error from the same full disk would only mask the first."""
    with suppress(OSError):
        writer.close()


def _nonfinite(state: MDState) -> torch.Tensor:
    """(S,) systems with a non-finite position, force or energy."""
    bad_atom = ~(torch.isfinite(state.positions).all(-1) & torch.isfinite(state.forces).all(-1))
    count = torch.zeros(state.n_systems, dtype=torch.long, device=bad_atom.device)
    return (count.index_add_(0, state.system_index, bad_atom.long()) > 0) | ~torch.isfinite(state.energy)


def _write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` atomically; a failed write leaves no temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def run_queue(
    potential: Potential,
    systems: Sequence[Atoms],
    *,
    n_steps: int,
    folder: str | Path,
    slots: int,
    temperatures: float | Sequence[float] = 300.0,
    seeds: int | Sequence[int] = 0,
    dt_fs: float = DEFAULT_DT_FS,
    integrator: str = "langevin",
    friction: float | Sequence[float] = DEFAULT_FRICTION_PER_FS,
    frame_interval: int = 100,
    checkpoint_interval: int = 1000,
    check_interval: int = 1,
    criteria: StabilityCriteria | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    after_failure: str = "freeze",
    refill: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> QueueSummary:
    """Run every trajectory of ``systems`` for ``n_steps`` steps on ``slots`` batch slots (see the module docstring).

    Settings mean what they mean in :func:`gemrepro.md.run_md`, per trajectory; an integer ``seeds``
    gives trajectory ``k`` the seed it would have as system ``k`` of one ``run_md`` call. A
    checkpoint of the same campaign in ``folder`` is continued; trajectory files there without one
    are only replaced with ``overwrite``.
    """
    if after_failure not in AFTER_FAILURE_MODES:
        raise ValueError(f"after_failure: expected one of {AFTER_FAILURE_MODES}, got {after_failure!r}")
    systems = list(systems)
    if not systems or not all(isinstance(a, Atoms) and len(a) > 0 for a in systems):
        raise ValueError("systems: expected a non-empty list of non-empty ase.Atoms")
    for k, atoms in enumerate(systems):
        check_geometry(atoms.numbers, atoms.positions, f"systems[{k}] ({atoms.get_chemical_formula()})")
        if atoms.pbc.any():  # a slot's system changes as it is refilled; no potential here follows its cell
            raise ValueError(
                f"systems[{k}] ({atoms.get_chemical_formula()}): periodic; refilled slots run isolated molecules only"
            )
    n = len(systems)
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ValueError(f"n_steps: expected a non-negative integer, got {n_steps!r}")
    slots = _positive_int(slots, "slots")
    for name, value in (
        ("frame_interval", frame_interval),
        ("checkpoint_interval", checkpoint_interval),
        ("check_interval", check_interval),
    ):
        _positive_int(value, name)
    if not (np.isfinite(dt_fs) and dt_fs > 0):
        raise ValueError(f"dt_fs: expected a positive time step in fs, got {dt_fs!r}")
    get_integrator(integrator)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder: {folder} is a file; expected a folder for the campaign's trajectories")
    campaign = _Campaign(
        potential,
        systems,
        n_steps=int(n_steps),
        folder=folder,
        slots=slots,
        temperatures=_values(temperatures, n, "temperatures"),
        frictions=_values(friction, n, "friction"),
        seeds=system_seeds(seeds, n),
        dt_fs=float(dt_fs),
        integrator=integrator,
        frame_interval=int(frame_interval),
        checkpoint_interval=int(checkpoint_interval),
        check_interval=int(check_interval),
        criteria=criteria or StabilityCriteria(),
        dtype=dtype,
        device=resolve_device(device),
        after_failure=after_failure,
        refill=bool(refill),
    )
    resumed_from: int | None = None
    if campaign.checkpoint_path.exists():
        try:
            resumed_from = campaign.load()
        except BaseException:
            campaign.close()  # the files it opened before the error
            raise
    else:
        existing = sorted(folder.glob("trajectory_*.h5")) if folder.is_dir() else []
        if existing and not overwrite:
            raise ValueError(
                f"folder: {folder} holds {len(existing)} trajectory files but no {CHECKPOINT_NAME}; "
                "pass overwrite=True to replace them, or use another folder"
            )
        for path in existing:
            path.unlink()
        (folder / SUMMARY_NAME).unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        campaign.save()  # the empty campaign: a failure in the first files still leaves one to resume from
    started = time.perf_counter()
    try:
        if campaign.next_trajectory == 0:  # nothing started yet (fresh, or resumed from the empty campaign)
            campaign.fill()
            campaign.save()
        with tqdm(total=n, initial=len(campaign.results), disable=not progress, unit="traj") as bar:
            while campaign.state is not None:
                if campaign.running:
                    campaign.step()
                campaign.fill()
                if campaign.state is not None and campaign.state.step % campaign.checkpoint_interval == 0:
                    campaign.save()
                bar.update(len(campaign.results) - bar.n)
    finally:
        campaign.close()
    campaign.save()
    wall = time.perf_counter() - started
    results = [campaign.results[k] for k in range(n)]
    summary = QueueSummary(
        folder=folder,
        paths=[trajectory_path(folder, k) for k in range(n)],
        steps=[r["steps"] for r in results],
        failures=[
            _failure_record(r["failure_step"], r["failure_rule"], r["failure_atoms"], campaign.dt_fs) for r in results
        ],
        system_steps=int(sum(r["steps"] for r in results)),
        evaluated_system_steps=campaign.evaluated,
        batch_steps=campaign.batch_steps,
        resumed_from_step=resumed_from,
        wall_time_s=wall,
    )
    with campaign.writing(folder / SUMMARY_NAME):
        _write_json(
            folder / SUMMARY_NAME,
            {
                "n_trajectories": n,
                "slots": slots,
                "refill": campaign.refill,
                "n_steps": int(n_steps),
                "dt_fs": float(dt_fs),
                "after_failure": after_failure,
                "system_steps": summary.system_steps,
                "evaluated_system_steps": summary.evaluated_system_steps,
                "batch_steps": summary.batch_steps,
                "trajectories": [
                    {
                        "path": p.name,
                        "steps": s,
                        "failure": None
                        if f is None
                        else {"step": f.step, "time_ps": f.time_ps, "rule": f.rule, "atoms": list(f.atoms)},
                    }
                    for p, s, f in zip(summary.paths, summary.steps, summary.failures, strict=True)
                ],
            },
        )
    return summary
