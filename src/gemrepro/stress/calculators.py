"""Any ASE calculator as a batched MD potential, with calculator failures confined to one system.

The MD engine (:func:`gemrepro.md.run_md`) advances many systems through one batched callable
``(positions, numbers, system_index) -> (energy per system, forces)``. An ASE calculator knows one
structure at a time, so :class:`CalculatorPotential` loops over the systems. A call that raises,
returns a non-finite number or (with a worker) exceeds its time limit gives that system NaN
energy and forces: the engine's ``nonfinite`` rule then marks exactly that trajectory as failed,
and the reason is kept in :attr:`CalculatorPotential.errors`. A calculator that cannot evaluate a
start structure at all is a setup problem, not an unstable trajectory:
:meth:`CalculatorPotential.check_start` reports it as one error before any MD. Periodic systems
keep their cells: the engine hands them over through :meth:`CalculatorPotential.set_cells`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from ase import Atoms

from gemrepro.stress.worker import (
    CalculatorFailure,
    CalculatorTimeout,
    CalculatorWorker,
    one_line,
    resolve_factory,
    single_point,
)


class CalculatorPotential:
    """Batched potential over an ASE calculator built by ``factory`` (``"module:function"`` or a callable).

    With ``timeout_s`` the calculator runs in a killable :class:`~gemrepro.stress.worker.CalculatorWorker`
    (``factory`` must then be picklable); without, it runs in this process, which is faster but
    cannot survive a hang. Once a system has failed it is never evaluated again: the engine
    freezes it, and feeding a broken calculator the same input again would only cost time.
    """

    def __init__(self, factory: str | Callable[[], object], timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        self.name = factory if isinstance(factory, str) else f"{factory.__module__}:{factory.__qualname__}"
        if timeout_s is None:
            calculator = resolve_factory(factory)()
            self._evaluate: Callable = lambda numbers, positions, cell=None, pbc=None: single_point(
                calculator, numbers, positions, cell, pbc
            )
            self._worker: CalculatorWorker | None = None
        else:
            self._worker = CalculatorWorker(factory, timeout_s)
            self._evaluate = self._worker
        self.errors: dict[int, str] = {}  # system -> why its calculator failed
        self.n_calls = 0
        # system -> (its first input, energy, forces): the engine feeds a dead system its start
        # structure at every step, and that answer is already known
        self._first: dict[int, tuple[np.ndarray, float, np.ndarray]] = {}
        self._cells: tuple[np.ndarray, np.ndarray] | None = None  # per system: cell (3, 3) Å, pbc (3,)

    def set_cells(self, cells: np.ndarray, pbc: np.ndarray) -> None:
        """The cells (S, 3, 3) Å and periodic flags (S, 3) of the next run's systems, by batch position."""
        cells, pbc = np.asarray(cells, dtype=np.float64), np.asarray(pbc, dtype=bool)
        if cells.ndim != 3 or cells.shape[1:] != (3, 3) or pbc.shape != (len(cells), 3):
            raise ValueError(f"cells/pbc: expected shapes (S, 3, 3) and (S, 3), got {cells.shape} and {pbc.shape}")
        self._cells = (cells, pbc)

    def _cell_of(self, system: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._cells is None or system >= len(self._cells[0]):
            return None, None
        return self._cells[0][system], self._cells[1][system]

    def check_start(self, structures: Mapping[str, Atoms]) -> None:
        """Evaluate every start structure once; a calculator that fails there is a one-line ``ValueError``
        naming it, the structure and its exception (before any MD, where it would fail every trajectory
        of that structure at 0 ps)."""
        for name, atoms in structures.items():
            try:
                energy, forces = self._evaluate(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
                if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
                    raise FloatingPointError("calculator returned a non-finite energy or force")
            except Exception as exc:  # noqa: BLE001 - any failure here is the calculator's setup, reported once
                reason = str(exc) if isinstance(exc, (CalculatorFailure, CalculatorTimeout)) else one_line(exc)
                hint = "" if atoms.pbc.any() else "; if it needs a periodic cell, put the molecule in a box (--box L)"
                raise ValueError(
                    f"--calculator {self.name}: fails at its first call, on the start structure of {name} "
                    f"({reason}); no MD was run{hint}"
                ) from None

    def __call__(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() != 2 or positions.shape[1] != 3 or numbers.shape != positions.shape[:1]:
            raise ValueError(
                f"positions/numbers: expected shapes (N, 3) and (N,), got "
                f"{tuple(positions.shape)} and {tuple(numbers.shape)}"
            )
        x = positions.detach().cpu().double().numpy()
        z = numbers.detach().cpu().numpy()
        counts = torch.bincount(system_index.detach().cpu()).tolist()
        energy = np.full(len(counts), np.nan)
        forces = np.full_like(x, np.nan)
        start = 0
        for s, n in enumerate(counts):
            stop = start + n
            first = self._first.get(s)
            if first is not None and np.array_equal(first[0], x[start:stop]):
                energy[s], forces[start:stop] = first[1], first[2]
            elif s not in self.errors:
                try:
                    e, f = self._evaluate(z[start:stop], x[start:stop], *self._cell_of(s))
                    self.n_calls += 1
                    if not (np.isfinite(e) and np.all(np.isfinite(f))):
                        raise FloatingPointError("calculator returned a non-finite energy or force")
                    energy[s], forces[start:stop] = e, f
                except Exception as exc:  # noqa: BLE001 - a calculator failure fails this system only
                    self.errors[s] = one_line(exc)
                self._first.setdefault(s, (x[start:stop].copy(), float(energy[s]), forces[start:stop].copy()))
            start = stop
        out: dict[str, Any] = dict(dtype=positions.dtype, device=positions.device)
        return torch.as_tensor(energy, **out), torch.as_tensor(forces, **out)

    def reset(self) -> None:
        """Forget the failures and start structures of the last run, before a run of another batch."""
        self.errors.clear()
        self._first.clear()

    def close(self) -> None:
        """Stop the worker process, if any."""
        if self._worker is not None:
            self._worker.close()

    def __enter__(self) -> CalculatorPotential:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
