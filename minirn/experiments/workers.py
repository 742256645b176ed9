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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from minirn import backend

#: Set in the workers (before they import NumPy): one BLAS/OpenMP thread per worker process.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def default_workers(device: str = "cpu") -> int:
    """Two processes on a CPU with at least two cores, else one (a GPU runs one job at a time)."""
    return 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def map_jobs(function, jobs, workers: int = 1) -> list:
    """``[function(*job) for job in jobs]``, in ``workers`` worker processes (same order).

    function must be a module-level function and its arguments picklable (spawned processes).
    ``workers=0`` runs the jobs in this process instead (for tests that replace functions in it, and for
    debugging): its BLAS may use several threads, so the last float bits can differ from a worker's.
    """
    jobs = list(jobs)
    if workers == 0 or not jobs:
        return [function(*job) for job in jobs]
    # even with workers=1 the jobs run in a worker process: with one BLAS thread there, their float
    # arithmetic, and so their results, are the same whatever the worker count (two BLAS threads in
    # this process may sum in another order, and on some CPUs do)
    with _pool(min(max(workers, 1), len(jobs))) as pool:
        return list(pool.map(_call, [(function, job) for job in jobs]))


def map_two_stages(first, first_jobs: dict, second, second_jobs: list, workers: int = 1, on_first=None):
    """Run ``first`` on every job of ``first_jobs``, then ``second`` on every job of ``second_jobs``, where a
    second-stage job starts as soon as the first-stage results it needs exist (so no core waits for the
    slowest first-stage job).

    first_jobs: ``{key: args}``; second_jobs: ``[(needs, make_args)]``, ``needs`` the first-stage keys whose
    results ``make_args(results)`` turns into the job's args (``results``: ``{key: result}``).  A free
    worker takes the next first-stage job (in order) while any is left, else the first second-stage job (in
    the order given) whose needs are met: put the longest second-stage jobs first.  Returns
    ``({key: first result}, [second result, in the order of second_jobs])``.  Even ``workers=1`` runs
    the jobs in one worker process, so that every worker count gives the same float arithmetic (see
    :func:`map_jobs`); ``workers=0`` runs everything in this process, first stage then second, in order.
    ``on_first(key, result)``, if given, is called here as each first-stage result arrives (to report
    progress).
    """
    unknown = {key for needs, _ in second_jobs for key in needs} - set(first_jobs)
    if unknown:
        raise ValueError(f"map_two_stages: second-stage jobs need results of unknown first-stage jobs {sorted(map(str, unknown))}")
    results, outputs = {}, [None] * len(second_jobs)
    if workers == 0:
        for key, args in first_jobs.items():
            results[key] = first(*args)
            if on_first is not None:
                on_first(key, results[key])
        return results, [second(*make_args(results)) for _, make_args in second_jobs]
    todo, waiting, running = list(first_jobs), list(range(len(second_jobs))), {}
    with _pool(workers) as pool:
        while todo or waiting or running:
            while len(running) < workers:
                if todo:
                    key = todo.pop(0)
                    running[pool.submit(_call, (first, first_jobs[key]))] = ("first", key)
                    continue
                ready = next((i for i in waiting if all(k in results for k in second_jobs[i][0])), None)
                if ready is None:
                    break
                waiting.remove(ready)
                running[pool.submit(_call, (second, second_jobs[ready][1](results)))] = ("second", ready)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                stage, key = running.pop(future)
                if stage == "first":
                    results[key] = future.result()
                    if on_first is not None:
                        on_first(key, results[key])
                else:
                    outputs[key] = future.result()
    return results, outputs


@contextlib.contextmanager
def _pool(workers):
    """``workers`` spawned processes with one BLAS thread each (set before they import NumPy)."""
    with _environment(ONE_THREAD), ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=backend.retain_freed_memory
    ) as pool:
        yield pool


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
