"""Run batched MD to a trajectory file, with checkpoints that make a killed run resumable.

Order of work at each step: integrate, check failures (every ``check_interval`` steps), append a
frame (every ``frame_interval``; with ``store_last`` also at the run's last step, so even a run
shorter than ``frame_interval`` ends on disk), write a checkpoint (every ``checkpoint_interval`` and at the end).
A checkpoint holds the state tensors, each system's RNG state, the step and the number of frames
on disk; it is written to a temporary file and renamed over the old one, so it is always whole.
Resuming cuts the HDF5 frames back to the checkpoint's count — dropping frames written after it —
and continues; on CPU the result is bit for bit the uninterrupted run.

What happens after a failure is the run's ``after_failure`` policy:

``"freeze"`` (default)
    the failed system is frozen at its failure step (``alive`` false: no longer integrated, its
    frames repeat the failed geometry) and the run stops early once every system has failed —
    for stability runs, where a failed replica is dropped.
``"continue"``
    the failure is recorded (step, rule, atoms) as in ``"freeze"`` but the system keeps being
    integrated to ``n_steps``, as in the paper's temperature sweep (Stocker et al.), so its
    post-failure frames can be relabelled. Only a system whose positions, forces or energy turn
    non-finite is frozen, at the first check that sees it (recorded as rule ``"nonfinite"`` unless
    it had failed before): a NaN cannot be integrated meaningfully and must not reach the
    potential. The run never stops early.

Periodic systems. The engine integrates positions only; a cell is a constant of the run, like the
atoms' elements. A system with periodic boundaries (``atoms.pbc``) runs only on a potential that
takes cells — one with ``set_cells(cells (S, 3, 3) Å, pbc (S, 3))``, which :func:`run_md` calls
before the first evaluation (an ASE calculator,
:class:`~gemrepro.stress.calculators.CalculatorPotential`); any other potential (GemNet, which
is molecular) gets a one-line error before any compute. Positions are never wrapped.

I/O errors. A frame or checkpoint that cannot be written (a full disk) ends the run with one
``OSError`` naming the file and the step of the last checkpoint, which stays whole: the checkpoint
is written to a temporary file (removed when the write fails) and renamed over the old one, and
``torch.save``'s ``RuntimeError`` for a failed write is reported as the ``OSError`` it is.

``state.alive`` means "still integrated" in both; whether a system has failed is
``state.failure_rule > 0`` (on disk: ``failure/step``; a frame is after the failure when its
step is at or after that step, :func:`gemrepro.md.trajectory.failed_frames`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from ase import Atoms
from tqdm.std import tqdm

from gemrepro.analysis.geometry import check_geometry
from gemrepro.analysis.stability import FailureRecord, StabilityCriteria
from gemrepro.md.failures import FailureDetector, failure_records, mark_failed
from gemrepro.md.integrators import DEFAULT_DT_FS, evaluate, get_integrator
from gemrepro.md.state import MDState, Potential, build_state, new_generator
from gemrepro.md.trajectory import TrajectoryWriter
from gemrepro.model import resolve_device

CHECKPOINT_VERSION = 1
AFTER_FAILURE_MODES: tuple[str, ...] = ("freeze", "continue")
"""What :func:`run_md` does with a system once it has failed (see the module docstring)."""
DEFAULT_FRICTION_PER_FS = 0.01  # 10 / ps: thermalises a small molecule within a few hundred fs


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch thread: CPU float sums then have one order, so a run repeats bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class MDSummary:
    """What a call of :func:`run_md` produced."""

    path: Path
    checkpoint_path: Path
    step: int
    n_frames: int
    alive: list[bool]
    failures: list[FailureRecord | None]
    resumed_from_step: int | None
    wall_time_s: float
    steps_per_second: float


def checkpoint_path_for(path: str | Path) -> Path:
    """Where the checkpoint of the trajectory at ``path`` lives (next to it)."""
    path = Path(path)
    return path.with_name(path.name + ".ckpt")


def _per_system(value: float | Sequence[float], n: int, name: str) -> list[float]:
    values = [float(cast(float, value))] * n if np.isscalar(value) else [float(v) for v in cast(Sequence[float], value)]
    if len(values) != n:
        raise ValueError(f"{name}: expected one value or {n} (one per system), got {len(values)}")
    if not all(np.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{name}: expected finite non-negative values, got {values}")
    return values


def system_seeds(seeds: int | Sequence[int], n: int) -> list[int]:
    """One seed per system; an integer ``seed`` gives system ``s`` the seed derived from ``(seed, s)``.

    Pass explicit per-system seeds to reproduce a system's trajectory in another batch.
    """
    if isinstance(seeds, (int, np.integer)):
        return [int(np.random.SeedSequence([int(seeds), s]).generate_state(1, np.uint64)[0] >> 1) for s in range(n)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != n or any(s < 0 for s in seeds):
        raise ValueError(f"seeds: expected one integer or {n} non-negative integers, got {seeds}")
    return seeds


def _schedule(schedule: np.ndarray | None, n_steps: int, n_systems: int, integrator: str) -> np.ndarray | None:
    """The thermostat targets ``(n_steps + 1, n_systems)`` (K), or ``None`` for constant targets."""
    if schedule is None:
        return None
    if integrator != "langevin":
        raise ValueError(f"temperature_schedule: needs a thermostat (integrator 'langevin'), got {integrator!r}")
    values = np.asarray(schedule, dtype=np.float64)
    if values.ndim == 1:
        values = np.repeat(values[:, None], n_systems, axis=1)
    if values.shape != (n_steps + 1, n_systems):
        raise ValueError(
            f"temperature_schedule: expected shape ({n_steps + 1},) or ({n_steps + 1}, {n_systems}), "
            f"got {np.shape(schedule)}"
        )
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise ValueError("temperature_schedule: expected finite non-negative temperatures in K")
    return np.ascontiguousarray(values)


def _nonfinite_systems(state: MDState) -> torch.Tensor:
    """(S,) systems with a non-finite position, force or energy."""
    bad_atom = ~(torch.isfinite(state.positions).all(-1) & torch.isfinite(state.forces).all(-1))
    count = torch.zeros(state.n_systems, dtype=torch.long, device=bad_atom.device)
    return (count.index_add_(0, state.system_index, bad_atom.long()) > 0) | ~torch.isfinite(state.energy)


def _fingerprint(state: MDState, config: dict) -> str:
    """Hash of everything that must match for a checkpoint to continue this run."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for tensor in (state.numbers, state.masses, state.reference_positions, state.temperature, state.friction):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: Path, state: MDState, n_frames: int, fingerprint: str) -> None:
    """Atomically write everything needed to continue ``state`` bit for bit (see :func:`atomic_save`)."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "step": state.step,
        "n_frames": n_frames,
        "tensors": {name: t.detach().cpu() for name, t in state.tensors().items()},
        "generators": [g.get_state() for g in state.generators],
    }
    atomic_save(path, payload)


def atomic_save(path: Path, payload: dict) -> None:
    """``torch.save`` ``payload`` to a temporary file renamed over ``path``, so a checkpoint is always whole.

    A write that fails (a full disk) leaves the previous checkpoint as it was and no temporary
    file behind, and raises ``OSError`` naming ``path`` (also for ``torch.save``'s ``RuntimeError``
    that wraps one). Shared by :func:`run_md` and :func:`gemrepro.md.queue.run_queue`.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        cause = exc if isinstance(exc, OSError) else _os_error_behind(exc)
        code = (os_error_code(cause) if cause is not None else None) or errno.EIO
        reason = cause.strerror if cause is not None and cause.strerror else os.strerror(code)
        raise OSError(code, f"{reason} (checkpoint not written)", str(path)) from exc


def _os_error_behind(error: BaseException) -> OSError | None:
    """The ``OSError`` a ``RuntimeError`` of ``torch.save`` wraps (a failed write), if it kept one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def periodic_cells(systems: Sequence[Atoms], potential: Potential) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's cells (S, 3, 3) Å and periodic flags (S, 3), or None when no system is periodic.

    A periodic system needs a potential with ``set_cells``; any other gets a one-line error here.
    """
    pbc = np.array([a.pbc for a in systems], dtype=bool)
    if not pbc.any():
        return None
    if not hasattr(potential, "set_cells"):
        k = int(np.flatnonzero(pbc.any(axis=1))[0])
        raise ValueError(
            f"systems[{k}] ({systems[k].get_chemical_formula()}): periodic (pbc {systems[k].pbc.tolist()}), "
            f"but the potential ({type(potential).__name__}) is for isolated molecules and takes no cell"
        )
    return np.array([a.cell.array for a in systems], dtype=np.float64), pbc


def os_error_code(error: OSError) -> int | None:
    """The errno of ``error``, also of a bare ``OSError(errno.ENOSPC)`` (whose ``errno`` is None)."""
    if error.errno:
        return error.errno
    return error.args[0] if len(error.args) == 1 and isinstance(error.args[0], int) else None


def write_failed(error: OSError, path: Path, ckpt: Path, step: int, saved_step: int) -> OSError:
    """The one-line ``OSError`` for a frame or checkpoint that could not be written at ``step``.

    It names the file (``error``'s, else ``path``) and the step of ``ckpt``, the last whole
    checkpoint, so the user knows a rerun resumes from there (also used by the campaign queue).
    """
    code = os_error_code(error) or errno.EIO
    reason = error.strerror or os.strerror(code)
    where = error.filename or str(path)
    return OSError(
        code,
        f"{reason} (writing step {step}); the checkpoint {ckpt.name} of step {saved_step} is whole: "
        "make room and rerun the same command to resume",
        where,
    )


def load_checkpoint(path: Path, device: torch.device | str) -> tuple[MDState, int, str]:
    """The state, frame count and fingerprint stored in a checkpoint."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: expected checkpoint version {CHECKPOINT_VERSION}, got {payload.get('version')}")
    generators = []
    for rng_state in payload["generators"]:
        generator = new_generator(0, device)
        generator.set_state(rng_state)
        generators.append(generator)
    tensors = {name: t.to(device) for name, t in payload["tensors"].items()}
    state = MDState(**tensors, generators=generators, step=int(payload["step"]))
    return state, int(payload["n_frames"]), payload["fingerprint"]


def run_md(
    potential: Potential,
    systems: Sequence[Atoms],
    *,
    n_steps: int,
    path: str | Path,
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
    progress: bool = True,
    callback: Callable[[MDState], None] | None = None,
    stop: Callable[[MDState], MDState] | None = None,
    after_failure: str = "freeze",
    temperature_schedule: np.ndarray | None = None,
    store_last: bool = False,
) -> MDSummary:
    """Advance all ``systems`` together for ``n_steps`` steps, writing frames to HDF5 at ``path``.

    Temperatures (K), frictions (1/fs) and seeds are per system or one for all. When a checkpoint
    of the same run exists next to ``path`` the run resumes from it (also to extend ``n_steps``);
    otherwise any file at ``path`` is replaced. ``after_failure`` is ``"freeze"`` (a failed system
    is frozen at its failure step; the run stops early once every system has failed) or
    ``"continue"`` (the failure is recorded and the system goes on to ``n_steps``; only non-finite
    numbers freeze it; see the module docstring). ``callback(state)`` runs after every step.
    ``stop(state) -> state`` runs with every failure check and may mark more systems failed (a
    committee's :class:`~gemrepro.md.committee.UncertaintyStop`); its ``repr`` joins the checkpoint's
    fingerprint. The ``after_failure`` policy applies to its stops as well.
    ``temperature_schedule`` (K, shape ``(n_steps + 1,)`` or ``(n_steps + 1, systems)``) makes the
    thermostat target time-dependent: the step from ``k`` to ``k + 1`` is taken at target ``[k]``
    (MLIP Arena's heating ramp); ``temperatures`` still sets the initial velocities.
    ``store_last`` also stores the run's last step when it falls off the frame grid (what a user of
    ``gemrepro md`` expects); the cached studies keep to the grid, as their stored runs were made.
    """
    if after_failure not in AFTER_FAILURE_MODES:
        raise ValueError(f"after_failure: expected one of {AFTER_FAILURE_MODES}, got {after_failure!r}")
    freeze = after_failure == "freeze"
    systems = list(systems)
    if not systems or not all(isinstance(a, Atoms) and len(a) > 0 for a in systems):
        raise ValueError("systems: expected a non-empty list of non-empty ase.Atoms")
    for k, atoms in enumerate(systems):  # bad geometry is the input's fault, not a model failure at 0 ps
        check_geometry(atoms.numbers, atoms.positions, f"systems[{k}] ({atoms.get_chemical_formula()})")
    n = len(systems)
    if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 0):
        raise ValueError(f"n_steps: expected a non-negative integer, got {n_steps!r}")
    for name, value in (
        ("frame_interval", frame_interval),
        ("checkpoint_interval", checkpoint_interval),
        ("check_interval", check_interval),
    ):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not (np.isfinite(dt_fs) and dt_fs > 0):
        raise ValueError(f"dt_fs: expected a positive time step in fs, got {dt_fs!r}")
    device = resolve_device(device)  # "auto" -> cuda when present, else cpu
    step_fn = get_integrator(integrator)
    criteria = criteria or StabilityCriteria()
    temps = _per_system(temperatures, n, "temperatures")
    frictions = _per_system(friction, n, "friction")
    seed_list = system_seeds(seeds, n)
    schedule = _schedule(temperature_schedule, n_steps, n, integrator)
    path = Path(path)
    ckpt = checkpoint_path_for(path)
    cells = periodic_cells(systems, potential)
    if hasattr(potential, "set_cells"):  # also without periodic systems, so one run's cells never reach the next
        potential.set_cells(np.array([a.cell.array for a in systems]), np.array([a.pbc for a in systems]))

    state = build_state(
        [a.positions for a in systems],
        [a.numbers for a in systems],
        [a.get_masses() for a in systems],
        temps,
        frictions,
        seed_list,
        remove_com_dof=integrator == "verlet",
        dtype=dtype,
        device=device,
    )
    config = dict(
        dt_fs=dt_fs,
        integrator=integrator,
        frame_interval=frame_interval,
        check_interval=check_interval,
        criteria=repr(criteria),
        seeds=seed_list,
        dtype=str(dtype),
    )
    if stop is not None:  # absent otherwise, so runs without a stop keep their fingerprints
        config["stop"] = repr(stop)
    if not freeze:  # likewise: frozen runs keep their fingerprints
        config["after_failure"] = after_failure
    if schedule is not None:  # likewise: runs at a constant target keep theirs
        config["temperature_schedule"] = hashlib.sha256(schedule.tobytes()).hexdigest()
    if cells is not None:  # likewise: molecular runs keep theirs
        config["cells"] = hashlib.sha256(cells[0].tobytes() + cells[1].tobytes()).hexdigest()
    fingerprint = _fingerprint(state, config)
    geometric = FailureDetector(state, criteria)

    def detector(current: MDState) -> MDState:
        checked = geometric(current)
        if stop is not None:
            checked = stop(checked)
        if freeze:
            return checked
        # continue: failures stay recorded, but only non-finite systems stop being integrated
        bad = _nonfinite_systems(checked)
        checked = mark_failed(checked, bad, "nonfinite")  # the first failure of a system not failed before
        return checked.replace(alive=current.alive & ~bad)

    resumed_from: int | None = None
    if ckpt.exists():
        if not path.exists():
            raise ValueError(
                f"path: checkpoint {ckpt} exists but its trajectory {path} does not; delete the checkpoint"
            )
        state, n_frames, stored = load_checkpoint(ckpt, device)
        if stored != fingerprint:
            raise ValueError(f"path: {ckpt} belongs to a different run (systems or settings differ); use another path")
        writer = TrajectoryWriter(path, "a")
        if state.step < n_steps and state.step % frame_interval and writer.frame_step(n_frames - 1) == state.step:
            # the last frame of a shorter run, off the frame grid: extended, the run keeps to the grid
            # (checkpoint first: killed in between, the next resume still cuts the file to its count)
            n_frames -= 1
            save_checkpoint(ckpt, state, n_frames, fingerprint)
        writer.truncate(n_frames, state)
        resumed_from = state.step
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        energy, forces = evaluate(state, potential, state.positions)
        state = detector(state.replace(energy=energy, forces=forces))
        writer = TrajectoryWriter.create(
            path,
            state,
            dt_fs=dt_fs,
            integrator=integrator,
            frame_interval=frame_interval,
            seeds=seed_list,
            formulas=[a.get_chemical_formula() for a in systems],
            after_failure=after_failure,
            cells=cells,
        )
        writer.append(state, dt_fs)
        save_checkpoint(ckpt, state, writer.n_frames, fingerprint)

    targets = None if schedule is None else torch.as_tensor(schedule, dtype=dtype, device=device)
    start_step, start_time = state.step, time.perf_counter()
    saved_step, write_error = state.step, False
    try:
        with tqdm(total=n_steps, initial=min(state.step, n_steps), disable=not progress, unit="step") as bar:
            while state.step < n_steps:
                if targets is not None:
                    state = state.replace(temperature=targets[state.step])
                state = step_fn(state, potential, dt_fs)
                checked = state.step % check_interval == 0
                if checked:
                    state = detector(state)
                all_dead = freeze and checked and not bool(state.alive.any())
                try:
                    last = store_last and (state.step == n_steps or all_dead)
                    if state.step % frame_interval == 0 or last:
                        writer.append(state, dt_fs)
                    if state.step % checkpoint_interval == 0 or state.step == n_steps or all_dead:
                        save_checkpoint(ckpt, state, writer.n_frames, fingerprint)
                        saved_step = state.step
                except OSError as exc:
                    write_error = True
                    raise write_failed(exc, path, ckpt, state.step, saved_step) from exc
                bar.update(1)
                if callback is not None:
                    callback(state)
                if all_dead:
                    break
        try:
            writer.write_failures(state)  # a failure after the last stored frame reaches the file too
        except OSError as exc:
            write_error = True
            raise write_failed(exc, path, ckpt, state.step, saved_step) from exc
        n_frames = writer.n_frames
    finally:
        try:
            writer.close()
        except OSError:
            if not write_error:  # after a failed write, that failure is the one to report
                raise
    wall = time.perf_counter() - start_time
    return MDSummary(
        path=path,
        checkpoint_path=ckpt,
        step=state.step,
        n_frames=n_frames,
        alive=state.alive.cpu().tolist(),
        failures=failure_records(state, dt_fs),
        resumed_from_step=resumed_from,
        wall_time_s=wall,
        steps_per_second=(state.step - start_step) / wall if wall > 0 else float("nan"),
    )
