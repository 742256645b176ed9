"""``map_two_stages`` (minirn/experiments/workers.py): second-stage jobs start as their inputs are ready,
and the results are those of running everything in order in this process."""
import operator
import os

import pytest

from minirn.experiments.workers import map_jobs, map_two_stages

FIRST = {("a", 0): (2, 3), ("a", 1): (4, 5), ("b", 0): (6, 7)}    # operator.mul: 6, 20, 42
# second stage: operator.add of one result and another's (like a model and its transfer source)
SECOND = [([("a", 0), ("a", 1)], lambda r: (r[("a", 0)], r[("a", 1)])),
          ([("b", 0)], lambda r: (r[("b", 0)], 100)),
          ([("a", 1), ("b", 0)], lambda r: (r[("a", 1)], -r[("b", 0)]))]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_two_stages_give_the_sequential_results_in_order(workers):
    seen = []
    first, second = map_two_stages(operator.mul, FIRST, operator.add, SECOND, workers,
                                   on_first=lambda key, result: seen.append((key, result)))
    assert first == {("a", 0): 6, ("a", 1): 20, ("b", 0): 42}
    assert second == [26, 142, -22]
    assert sorted(seen) == sorted(first.items())   # reported once per first-stage job


def test_a_second_stage_job_needing_an_unknown_result_is_refused():
    with pytest.raises(ValueError, match="unknown first-stage jobs"):
        map_two_stages(operator.mul, FIRST, operator.add, [([("c", 0)], lambda r: (1, 2))], 2)


def _blas_threads_and_pid():
    return os.environ.get("OPENBLAS_NUM_THREADS"), os.getpid()


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_count_runs_jobs_in_worker_processes_with_one_blas_thread(workers):
    """So that --workers 1 and 2 give the same float bits; only workers=0 stays in this process."""
    for threads, pid in map_jobs(_blas_threads_and_pid, [()] * 3, workers):
        assert threads == "1" and pid != os.getpid()
    first, _ = map_two_stages(_blas_threads_and_pid, {"a": ()}, operator.add, [], workers)
    threads, pid = first["a"]
    assert threads == "1" and pid != os.getpid()
    assert map_jobs(_blas_threads_and_pid, [()], 0) == [_blas_threads_and_pid()]
