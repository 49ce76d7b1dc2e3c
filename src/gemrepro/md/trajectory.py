"""Batched trajectories on disk: one HDF5 file per run, frames appended with resizable datasets.

Layout (``S`` systems, ``N`` atoms in all, ``F`` frames; system ``s`` owns atoms
``atom_offset[s]:atom_offset[s+1]``)::

    /                 attrs: format_version, dt_fs, integrator, frame_interval[, after_failure]
    /systems/         atom_offset (S+1,), numbers (N,), masses (N,) amu, reference_positions (N, 3) Å,
                      temperature_K (S,), friction_per_fs (S,), seed (S,), formula (S,)
                      [, cell (S, 3, 3) Å, pbc (S, 3): only in a run with a periodic system]
    /frames/          step (F,), time_ps (F,), positions (F, N, 3) Å, forces (F, N, 3) eV/Å,
                      energy (F, S) eV, temperature_kin (F, S) K, alive (F, S)
    /failure/         step (S,) (-1 while alive), rule (S,) ("" while alive), atoms (S, 2) (-1 padded)

``frames/alive`` says whether a system was still being integrated. In a run with
``after_failure="freeze"`` (the default; no ``after_failure`` attribute) a system stops at its
failure, so its later frames repeat the geometry it failed in and "failed" is ``~alive``. A run
with ``after_failure="continue"`` (the root attribute ``after_failure`` says so) integrates failed
systems on; only a system that turned non-finite is frozen. In both, a frame is after its
system's failure when its step is at or after ``failure/step`` (:func:`failed_frames`; what
:func:`read_system` returns as ``failed``), so files of either kind and of either age read the
same way. Frames are only ever appended; :meth:`TrajectoryWriter.truncate` cuts them back to what
a checkpoint has seen.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from gemrepro.md.failures import STOP_RULES
from gemrepro.md.state import MDState, kinetic_temperature

FORMAT_VERSION = 1
_FRAME_FIELDS = ("step", "time_ps", "positions", "forces", "energy", "temperature_kin", "alive")


class TrajectoryWriter:
    """Appends frames of one batched run to an HDF5 file it keeps open."""

    def __init__(self, path: str | Path, mode: str = "a") -> None:
        self.path = Path(path)
        self.file = h5py.File(self.path, mode)

    @classmethod
    def create(
        cls,
        path: str | Path,
        state: MDState,
        *,
        dt_fs: float,
        integrator: str,
        frame_interval: int,
        seeds: list[int],
        formulas: list[str],
        after_failure: str = "freeze",
        cells: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> TrajectoryWriter:
        """A new file (replacing any old one) with the run's metadata and no frames; ``cells`` are
        the periodic systems' cells (S, 3, 3) Å and flags (S, 3) (absent in molecular runs)."""
        writer = cls(path, "w")
        try:
            f = writer.file
            f.attrs.update(
                format_version=FORMAT_VERSION, dt_fs=dt_fs, integrator=integrator, frame_interval=frame_interval
            )
            if after_failure != "freeze":  # absent in frozen runs, whose files stay as they were
                f.attrs["after_failure"] = after_failure
            systems = f.create_group("systems")
            systems["atom_offset"] = state.atom_offsets().cpu().numpy()
            systems["numbers"] = state.numbers.cpu().numpy()
            systems["masses"] = state.masses.cpu().double().numpy()
            systems["reference_positions"] = state.reference_positions.cpu().double().numpy()
            systems["temperature_K"] = state.temperature.cpu().double().numpy()
            systems["friction_per_fs"] = state.friction.cpu().double().numpy()
            systems["seed"] = np.asarray(seeds, dtype=np.int64)
            systems["formula"] = np.asarray(formulas, dtype=h5py.string_dtype())
            if cells is not None:
                systems["cell"] = np.asarray(cells[0], dtype=np.float64)
                systems["pbc"] = np.asarray(cells[1], dtype=np.bool_)
            n_atoms, n_systems = len(state.numbers), state.n_systems
            frames = f.create_group("frames")
            shapes = {
                "step": ((), np.int64),
                "time_ps": ((), np.float64),
                "positions": ((n_atoms, 3), np.float64),
                "forces": ((n_atoms, 3), np.float64),
                "energy": ((n_systems,), np.float64),
                "temperature_kin": ((n_systems,), np.float64),
                "alive": ((n_systems,), np.bool_),
            }
            for name, (shape, dtype) in shapes.items():
                frames.create_dataset(
                    name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(16, *shape)
                )
            failure = f.create_group("failure")
            failure.create_dataset("step", data=np.full(n_systems, -1, dtype=np.int64))
            failure.create_dataset("rule", data=np.full(n_systems, "", dtype=object), dtype=h5py.string_dtype())
            failure.create_dataset("atoms", data=np.full((n_systems, 2), -1, dtype=np.int64))
            f.flush()
        except BaseException:
            with suppress(OSError):  # a full disk: the write that failed is the error to report
                writer.close()
            raise
        return writer

    @property
    def n_frames(self) -> int:
        return len(self.file["frames/step"])

    def frame_step(self, index: int) -> int | None:
        """The MD step of frame ``index`` (``None`` when the file holds no such frame)."""
        steps = self.file["frames/step"]
        return int(steps[index]) if 0 <= index < len(steps) else None

    def append(self, state: MDState, dt_fs: float) -> None:
        """Append the frame of ``state`` and update the failure records; flushed to disk."""
        values = {
            "step": np.int64(state.step),
            "time_ps": state.step * dt_fs / 1000.0,
            "positions": state.positions.detach().cpu().double().numpy(),
            "forces": state.forces.detach().cpu().double().numpy(),
            "energy": state.energy.detach().cpu().double().numpy(),
            "temperature_kin": kinetic_temperature(state).detach().cpu().double().numpy(),
            "alive": state.alive.cpu().numpy(),
        }
        n = self.n_frames
        for name in _FRAME_FIELDS:
            dataset = self.file["frames"][name]
            dataset.resize(n + 1, axis=0)
            dataset[n] = values[name]
        self.write_failures(state)
        self.file.flush()

    def write_failures(self, state: MDState) -> None:
        failure = self.file["failure"]
        failure["step"][...] = state.failure_step.cpu().numpy()
        failure["rule"][...] = np.asarray(
            ["" if r == 0 else STOP_RULES[r - 1] for r in state.failure_rule.tolist()], dtype=object
        )
        failure["atoms"][...] = state.failure_atoms.cpu().numpy()

    def truncate(self, n_frames: int, state: MDState) -> None:
        """Drop frames past ``n_frames`` (written after the last checkpoint) and restore its failures."""
        if n_frames > self.n_frames:
            raise ValueError(
                f"{self.path}: the checkpoint counts {n_frames} frames but the file holds only {self.n_frames}"
            )
        for name in _FRAME_FIELDS:
            self.file["frames"][name].resize(n_frames, axis=0)
        self.write_failures(state)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def failed_frames(steps: np.ndarray, failure_steps: np.ndarray) -> np.ndarray:
    """(F, S) whether each stored frame is at or after its system's failure.

    ``steps`` (F,) are the frames' steps, ``failure_steps`` (S,) each system's failure step
    (-1 while it has not failed): the ``frames/step`` and ``failure/step`` datasets.
    """
    steps, failure_steps = np.asarray(steps), np.asarray(failure_steps)
    return (failure_steps[None, :] >= 0) & (steps[:, None] >= failure_steps[None, :])


def open_trajectory(path: str | Path) -> h5py.File:
    """The HDF5 file of a trajectory written by :func:`gemrepro.md.run_md`, or a one-line error saying what it is not."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory {str(path)!r} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise ValueError(f"{path}: not an HDF5 file; expected a trajectory written by gemrepro md") from None
    missing = [name for name in ("systems/atom_offset", "frames/step") if name not in handle]
    if missing:
        handle.close()
        raise ValueError(f"{path}: an HDF5 file but not a gemrepro md trajectory (no {missing[0]!r})")
    return handle


def stable_positions(path: str | Path) -> np.ndarray:
    """Positions (frames, atoms, 3) of every stored frame in which its system was still stable,
    every system of the file in turn (all systems of a stability run hold the same molecule)."""
    with open_trajectory(path) as f:
        offsets = f["systems/atom_offset"][()]
        positions, alive = f["frames/positions"][()], f["frames/alive"][()]
        stable = alive & ~failed_frames(f["frames/step"][()], f["failure/step"][()])  # == alive in a frozen run
    chunks = [positions[stable[:, s], offsets[s] : offsets[s + 1]] for s in range(len(offsets) - 1)]
    return np.concatenate(chunks) if chunks else np.empty((0, 0, 3))


def read_system(path: str | Path, system: int) -> dict[str, np.ndarray]:
    """All frames of one system as numpy arrays, plus its numbers, masses and failure record.

    ``failed`` (frames,) marks the frames at or after the failure (:func:`failed_frames`);
    ``cell`` (3, 3) Å and ``pbc`` (3,) are the system's (zero and all false for a molecular run).
    """
    with open_trajectory(path) as f:
        offsets = f["systems/atom_offset"][()]
        if not 0 <= system < len(offsets) - 1:
            raise ValueError(f"system: expected an index in [0, {len(offsets) - 1}), got {system}")
        start, stop = int(offsets[system]), int(offsets[system + 1])
        frames = f["frames"]
        periodic = "systems/cell" in f
        return {
            "cell": f["systems/cell"][system] if periodic else np.zeros((3, 3)),
            "pbc": f["systems/pbc"][system] if periodic else np.zeros(3, dtype=bool),
            "numbers": f["systems/numbers"][start:stop],
            "masses": f["systems/masses"][start:stop],
            "reference_positions": f["systems/reference_positions"][start:stop],
            "step": frames["step"][()],
            "time_ps": frames["time_ps"][()],
            "positions": frames["positions"][:, start:stop],
            "forces": frames["forces"][:, start:stop],
            "energy": frames["energy"][:, system],
            "temperature_kin": frames["temperature_kin"][:, system],
            "alive": frames["alive"][:, system],
            "failed": failed_frames(frames["step"][()], f["failure/step"][system : system + 1])[:, 0],
            "failure_step": int(f["failure/step"][system]),
            "failure_rule": f["failure/rule"].asstr()[system],
            "failure_atoms": f["failure/atoms"][system],
        }


def export_extxyz(path: str | Path, system: int, out_path: str | Path) -> int:
    """Write one system's frames as extended XYZ (energy, forces, step, time); returns the frame count.

    Frames after the system stopped being integrated are frozen copies; only the first of them
    (the geometry it stopped in) is written. In a run that continued failed systems that is every
    frame, unless the system turned non-finite; ``info["failed"]`` marks the frames at or after
    the failure.
    """
    data = read_system(path, system)
    alive = data["alive"]
    n_alive = int(np.argmin(alive)) if not alive.all() else len(alive)
    keep = min(n_alive + 1, len(alive))
    images = []
    for k in range(keep):
        atoms = Atoms(
            numbers=data["numbers"],
            positions=data["positions"][k],
            masses=data["masses"],
            cell=data["cell"],
            pbc=data["pbc"],
        )
        atoms.info.update(
            step=int(data["step"][k]),
            time_ps=float(data["time_ps"][k]),
            alive=bool(alive[k]),
            failed=bool(data["failed"][k]),
        )
        atoms.info["temperature_kin"] = float(data["temperature_kin"][k])
        atoms.calc = SinglePointCalculator(atoms, energy=float(data["energy"][k]), forces=data["forces"][k])
        images.append(atoms)
    write(out_path, images, format="extxyz")
    return len(images)
