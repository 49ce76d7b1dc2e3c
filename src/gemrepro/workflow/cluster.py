"""Dask clusters for labelling and campaigns: local by default, any scheduler by address."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

# Reference codes use OpenMP/BLAS: one thread per worker, one worker per core.
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator["distributed.Client"]:
    """A Dask client: connected to ``scheduler`` if given, else a LocalCluster of single-threaded
    worker processes (``n_workers`` defaults to the number of cores)."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    n_workers = n_workers or os.cpu_count() or 1
    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env=SINGLE_THREADED,
        silence_logs=logging.ERROR,
    ) as cluster, Client(cluster) as client:
        yield client
