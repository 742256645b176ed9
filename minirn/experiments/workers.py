"""Independent jobs in worker processes: on a 2-core CPU, two models train or are attacked at once.

NumPy's BLAS splits one matrix product over the cores, but most of a small network's time is
spent in single-threaded array code (im2col windows, element-wise ops), so one process leaves a
core idle.  Each job here is deterministic given its arguments (its own seeds), so running jobs in
``workers`` processes gives the same results as running them one after the other; the workers use
one BLAS thread each, so that two of them do not fight over the cores.  The thread count changes
the order of float sums inside a matrix product, so a job's result is bit-identical across runs
with the same ``workers`` setting (> 1: always one thread; 1: NumPy's default), not across the two.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

#: Set in the workers (before they import NumPy): one BLAS/OpenMP thread per worker process.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def default_workers(device: str = "cpu") -> int:
    """Two processes on a CPU with at least two cores, else one (a GPU runs one job at a time)."""
    return 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def map_jobs(function, jobs, workers: int = 1) -> list:
    """``[function(*job) for job in jobs]``, in ``workers`` processes when ``workers > 1`` (same order).

    function must be a module-level function and its arguments picklable (spawned processes).
    """
    jobs = list(jobs)
    if workers <= 1 or not jobs:
        return [function(*job) for job in jobs]
    # even a single job goes to a worker: with one BLAS thread its float arithmetic, and so its
    # result, is the same as when it runs beside others (two threads sum in another order)
    with _environment(ONE_THREAD), ProcessPoolExecutor(min(workers, len(jobs)),
                                                       mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_call, [(function, job) for job in jobs]))


def _call(function_and_job):
    function, job = function_and_job
    return function(*job)


@contextlib.contextmanager
def _environment(values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
