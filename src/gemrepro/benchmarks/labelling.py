"""How fast can this machine label configurations? One worker against all of them.

The same configurations are labelled twice through Dask, once on a single-worker cluster and
once on one worker per core, so the ratio shows how labelling scales here (ideal: the core
count). Cluster start-up is excluded: a campaign pays it once.
"""

from __future__ import annotations

import os
import time

import numpy as np
from ase import Atoms

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


def _labels_per_second(configurations: list[Atoms], reference: str, n_workers: int) -> float:
    items = [(a.numbers, a.positions) for a in configurations]
    n_chunks = 4 * n_workers
    chunks = [items[k::n_chunks] for k in range(n_chunks)]
    with dask_client(n_workers=n_workers) as client:
        # warm up every worker (imports, method set-up) outside the timed window
        client.run(_label_chunk, reference, chunks[0][:1])
        start = time.perf_counter()
        client.gather(client.map(_label_chunk, [reference] * len(chunks), chunks, pure=False))
        return len(items) / (time.perf_counter() - start)


def labelling_throughput(
    n_configurations: int = 2000, reference: str = "gfn2-xtb", n_workers: int | None = None
) -> dict:
    """Labels per second on one worker and on ``n_workers`` (default: all cores), and their ratio."""
    get_method(reference)  # one-line error for an unknown method
    n_workers = n_workers or os.cpu_count() or 1
    configurations = benchmark_configurations(n_configurations)
    single = _labels_per_second(configurations, reference, 1)
    parallel = _labels_per_second(configurations, reference, n_workers)
    return {
        "reference": reference,
        "n_configurations": n_configurations,
        "n_workers": n_workers,
        "single_worker_per_s": single,
        "all_workers_per_s": parallel,
        "ratio": parallel / single,
    }
