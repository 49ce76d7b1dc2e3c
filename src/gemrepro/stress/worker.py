"""A killable subprocess that evaluates one ASE calculator, so a hanging calculator costs one timeout.

A calculator that loops forever inside a C extension cannot be interrupted from Python in the
same process; a child process can simply be killed. The worker builds its calculator once from a
picklable factory, then answers ``(numbers, positions)`` requests over a pipe. Only numpy and ASE
are imported here, so a (re)start takes well under a second.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import Connection

import numpy as np
from ase import Atoms

DEFAULT_STARTUP_TIMEOUT_S = 120.0


class CalculatorTimeout(RuntimeError):
    """The calculator did not answer within the per-call time limit (its worker was killed)."""


class CalculatorFailure(RuntimeError):
    """The calculator raised; the message is its exception, in one line."""


def one_line(error: BaseException) -> str:
    """``"TypeName: message"`` cut to its first line (reports and JSON stay readable)."""
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0] if text.strip() else type(error).__name__


def resolve_factory(factory: str | Callable[[], object]) -> Callable[[], object]:
    """The callable behind ``"package.module:function"`` (or ``factory`` itself when callable)."""
    if callable(factory):
        return factory
    module_name, sep, attribute = str(factory).partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--calculator: expected MODULE:FACTORY (e.g. tblite.ase:TBLite), got {factory!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--calculator: cannot import module {module_name!r} ({one_line(exc)})") from exc
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"--calculator: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"--calculator: {factory!r} is not callable (expected a function returning an ASE calculator)")
    return target


def single_point(
    calculator,
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/Å) of one structure with an ASE calculator: a molecule (no cell)
    unless ``cell`` (3, 3) Å and ``pbc`` (3,) say otherwise."""
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=False if pbc is None else pbc)
    atoms.calc = calculator
    energy = float(atoms.get_potential_energy())
    forces = np.asarray(atoms.get_forces(), dtype=np.float64)
    if forces.shape != (len(numbers), 3):
        raise ValueError(f"calculator returned forces of shape {forces.shape}, expected {(len(numbers), 3)}")
    return energy, forces


def _serve(connection: Connection, factory: str | Callable[[], object]) -> None:
    """Worker loop: build the calculator, report readiness, answer requests until ``None``."""
    try:
        calculator = resolve_factory(factory)()
    except BaseException as exc:  # noqa: BLE001 - the parent turns this into a one-line error
        connection.send(("error", one_line(exc)))
        return
    connection.send(("ready", None))
    while True:
        request = connection.recv()
        if request is None:
            return
        try:
            connection.send(("ok", single_point(calculator, *request)))
        except Exception as exc:  # noqa: BLE001 - any calculator error fails this call only
            connection.send(("error", one_line(exc)))


class CalculatorWorker:
    """One calculator in a child process with a wall-clock limit per call.

    After a timeout the child is killed and the next call starts a fresh one, so one hang costs
    one trajectory, not the audit. ``factory`` must be picklable: a ``"module:function"`` string
    or a module-level function or class.
    """

    def __init__(
        self,
        factory: str | Callable[[], object],
        timeout_s: float,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
    ) -> None:
        if not (np.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s: expected a positive time limit per call in s, got {timeout_s!r}")
        self.factory, self.timeout_s, self.startup_timeout_s = factory, float(timeout_s), float(startup_timeout_s)
        self._context = mp.get_context("spawn")  # fork would copy torch's thread pools into the child
        self._process: mp.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self.factory), daemon=True)
        process.start()
        child.close()
        if not parent.poll(self.startup_timeout_s):
            process.kill()
            process.join()
            raise ValueError(f"--calculator: the calculator factory did not return within {self.startup_timeout_s:g} s")
        try:
            status, message = parent.recv()
        except EOFError:
            status, message = "error", f"worker exited with code {process.exitcode}"
        if status != "ready":
            process.join()
            raise ValueError(f"--calculator: building the calculator failed ({message})")
        self._process, self._connection = process, parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None

    def __call__(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray | None = None,
        pbc: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """Energy and forces of one structure (:func:`single_point`); :class:`CalculatorTimeout` /
        :class:`CalculatorFailure` otherwise."""
        if self._process is None or not self._process.is_alive():
            if self._process is not None:
                self.restarts += 1
                self._kill()
            self._start()
        assert self._connection is not None
        self._connection.send((np.asarray(numbers), np.asarray(positions, dtype=np.float64), cell, pbc))
        if not self._connection.poll(self.timeout_s):
            self._kill()
            self.restarts += 1
            raise CalculatorTimeout(f"no answer within {self.timeout_s:g} s (worker killed)")
        try:
            status, payload = self._connection.recv()
        except EOFError:
            self._kill()
            raise CalculatorFailure("the calculator process died") from None
        if status != "ok":
            raise CalculatorFailure(payload)
        return payload

    def close(self) -> None:
        """Stop the child process (politely, then by force)."""
        if self._connection is not None and self._process is not None and self._process.is_alive():
            try:
                self._connection.send(None)
                self._process.join(timeout=5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()

    def __enter__(self) -> CalculatorWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
