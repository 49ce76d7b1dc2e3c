"""How fast can this machine label configurations? One worker against all of them.

The same configurations are labelled through Dask on a single-worker cluster and on one worker
per core (each worker single-threaded), so the ratio shows how labelling scales here (ideal: the
core count). Both clusters are started, and every worker has labelled one configuration, before any
clock runs: a campaign pays that once. Then the two take turns (one worker, all workers, one
worker, ...), and the median round is reported with the lowest and highest.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import numpy as np
from ase import Atoms

from gemrepro.benchmarks.timing import check_repeats, round_ratios, seconds_of, spread, take_turns
from gemrepro.cache.cluster import dask_client
from gemrepro.data.sampling import embed_conformers
from gemrepro.reference import get_method


def benchmark_configurations(n: int, seed: int = 0) -> list[Atoms]:
    """``n`` perturbed conformers of small catalog molecules (labelling cost of QM7-X size)."""
    smiles = ["CCO", "c1ccsc1", "CC(=O)N", "ClCC=O", "OCC1=CC=CS1", "CC(C)CN", "O=C1CCCO1"]
    rng = np.random.default_rng(seed)
    bases = [embed_conformers(s, 1, seed)[0] for s in smiles]
    configurations = []
    for i in range(n):
        base = bases[i % len(bases)]
        configurations.append(Atoms(base.numbers, base.positions + rng.normal(0, 0.05, base.positions.shape)))
    return configurations


def _label_chunk(reference: str, chunk: list[tuple[np.ndarray, np.ndarray]]) -> int:
    method = get_method(reference)
    return sum(method.compute(numbers, positions).converged for numbers, positions in chunk)


def _chunks(configurations: list[Atoms], n_workers: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """The configurations as (numbers, positions) in four chunks per worker (a late chunk cannot idle the rest long)."""
    items = [(a.numbers, a.positions) for a in configurations]
    n_chunks = 4 * n_workers
    return [items[k::n_chunks] for k in range(n_chunks)]


def _labelling_seconds(client, chunks: list, reference: str) -> float:
    """Wall time of labelling every chunk on ``client``'s workers."""
    return seconds_of(lambda: client.gather(client.map(_label_chunk, [reference] * len(chunks), chunks, pure=False)))


def labelling_throughput(
    n_configurations: int = 2000, reference: str = "gfn2-xtb", n_workers: int | None = None, repeats: int = 1
) -> dict:
    """Labels per second on one worker and on ``n_workers`` (default: all cores), and their ratio.

    Returns ``single_worker_per_s`` and ``all_workers_per_s`` (median rounds), ``ratio`` (all
    workers / one, the median over rounds), ``ratio_min``, ``ratio_max``, ``ratios``, and the
    context (``threads_per_worker`` is 1: the reference codes run one OpenMP thread per worker).
    """
    get_method(reference)  # one-line error for an unknown method
    repeats = check_repeats(repeats)
    n_workers = n_workers or os.cpu_count() or 1
    configurations = benchmark_configurations(n_configurations)
    with ExitStack() as stack:
        clients = {n: stack.enter_context(dask_client(n_workers=n)) for n in (1, n_workers)}
        chunks = {n: _chunks(configurations, n) for n in clients}
        for client in clients.values():  # imports and method set-up on every worker, off the clock
            client.run(_label_chunk, reference, chunks[1][0][:1])
        seconds = take_turns(
            {
                "single": lambda: _labelling_seconds(clients[1], chunks[1], reference),
                "all": lambda: _labelling_seconds(clients[n_workers], chunks[n_workers], reference),
            },
            repeats,
        )
    return {
        "reference": reference,
        "n_configurations": n_configurations,
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "single_worker_per_s": n_configurations / spread(seconds["single"])["median"],
        "all_workers_per_s": n_configurations / spread(seconds["all"])["median"],
        **round_ratios(seconds["single"], seconds["all"]),
        "repeats": repeats,
    }
