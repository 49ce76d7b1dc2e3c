"""Dask clusters for labelling and campaigns: local by default, any scheduler by address, or SLURM.

A SLURM cluster is described by a YAML file (see ``configs/slurm.example.yaml``): a ``cluster``
mapping of ``dask_jobqueue.SLURMCluster`` keyword arguments and either ``jobs`` (a fixed number
of batch jobs) or ``adapt`` (``minimum_jobs``/``maximum_jobs``), so the job script lives next to
the project instead of in a shell history.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    import distributed

# Reference codes use OpenMP/BLAS: one thread per worker, one worker per core.
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

_SLURM_SECTIONS = ("cluster", "jobs", "adapt")
_ADAPT_KEYS = ("minimum_jobs", "maximum_jobs")


@dataclass(frozen=True)
class SlurmConfig:
    """What a SLURM campaign asks for: the ``SLURMCluster`` arguments and how many jobs."""

    cluster: dict
    jobs: int | None = None
    adapt: dict = field(default_factory=dict)
    source: str = "<dict>"


def load_slurm_config(config: str | os.PathLike | dict) -> SlurmConfig:
    """Read and check a SLURM cluster description (a YAML file or the same mapping).

    Errors are one line naming the file and the offending entry: a typo in a batch-system option
    should stop the campaign before any job is queued.
    """
    if isinstance(config, dict):
        data, source = config, "<dict>"
    else:
        path = Path(config)
        if not path.is_file():
            raise ValueError(
                f"SLURM config {str(path)!r}: no such file; expected a YAML file like configs/slurm.example.yaml"
            )
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"SLURM config {str(path)!r}: not valid YAML ({str(exc).splitlines()[0]})") from None
        source = str(path)
    if not isinstance(data, dict):
        raise ValueError(
            f"SLURM config {source!r}: expected a mapping with a 'cluster' section, got {type(data).__name__}"
        )
    unknown = sorted(set(data) - set(_SLURM_SECTIONS))
    if unknown:
        raise ValueError(f"SLURM config {source!r}: unknown section(s) {unknown}; expected {list(_SLURM_SECTIONS)}")
    cluster = data.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"SLURM config {source!r}: expected a non-empty 'cluster' mapping of SLURMCluster arguments")
    jobs, adapt = data.get("jobs"), data.get("adapt") or {}
    if jobs is not None and adapt:
        raise ValueError(f"SLURM config {source!r}: expected either 'jobs' or 'adapt', not both")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"SLURM config {source!r}: 'jobs' must be a positive integer, got {jobs!r}")
    if not isinstance(adapt, dict) or set(adapt) - set(_ADAPT_KEYS):
        raise ValueError(f"SLURM config {source!r}: 'adapt' accepts only {list(_ADAPT_KEYS)}, got {adapt!r}")
    if jobs is None and not adapt:
        jobs = 1
    return SlurmConfig(dict(cluster), jobs, dict(adapt), source)


def slurm_cluster(config: str | os.PathLike | dict | SlurmConfig):
    """A ``dask_jobqueue.SLURMCluster`` built from ``config``; no job is submitted yet.

    ``cluster.job_script()`` shows the batch script each job would run; ``dask_client(slurm=...)``
    scales it. Unknown ``SLURMCluster`` arguments become one-line errors naming the file.
    """
    # Imported here: dask_jobqueue is slow to import and only a SLURM run needs it.
    from dask_jobqueue import SLURMCluster

    spec = config if isinstance(config, SlurmConfig) else load_slurm_config(config)
    options = {"scheduler_options": {"dashboard_address": None}, **spec.cluster}
    try:
        return SLURMCluster(**options)
    except (TypeError, ValueError) as exc:  # dask-jobqueue reports unknown arguments as either
        raise ValueError(f"SLURM config {spec.source!r}: {str(exc).splitlines()[0]}") from None


@contextmanager
def dask_client(
    scheduler: str | None = None,
    n_workers: int | None = None,
    slurm: str | os.PathLike | dict | SlurmConfig | None = None,
    processes: bool = True,
) -> Iterator["distributed.Client"]:
    """A Dask client: connected to ``scheduler`` if given, to a SLURM cluster described by
    ``slurm`` (YAML path or mapping), else a LocalCluster of single-threaded workers
    (``n_workers`` defaults to the number of cores; ``processes=False`` keeps them as threads
    of this process, which starts in well under a second)."""
    # Imported here: dask.distributed is slow to import and only a cluster run needs it.
    from distributed import Client, LocalCluster

    if scheduler and slurm:
        raise ValueError("scheduler and slurm: expected at most one way to reach a cluster, got both")
    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    if slurm is not None:
        spec = slurm if isinstance(slurm, SlurmConfig) else load_slurm_config(slurm)
        with slurm_cluster(spec) as cluster, Client(cluster) as client:
            if spec.adapt:
                cluster.adapt(**spec.adapt)
            else:
                cluster.scale(jobs=spec.jobs)
            yield client
        return
    n_workers = n_workers or os.cpu_count() or 1
    worker_options = {"env": SINGLE_THREADED} if processes else {}  # threads share this process's settings
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            # Task errors reach the caller as exceptions; what the workers log themselves (e.g. a
            # heartbeat that races the scheduler's shutdown, with its traceback) would only clutter
            # the book's pages.
            silence_logs=logging.CRITICAL,
            **worker_options,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
