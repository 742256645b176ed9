"""Tests of minirn/bench/: the benchmark runs with and without PyTorch, and both sides time the same networks."""
import math

import numpy as np
import pytest

from minirn import bench


def test_time_alternating_calls_each_function_in_turn():
    calls = []
    candidates = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = bench.time_alternating(candidates, repeats=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up first, then alternating
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_time_alternating_settles_before_each_timed_call_without_timing_it(monkeypatch):
    """The wait for the other framework's spinning threads comes before every timed call and is not timed."""
    events = []
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    candidates = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    times = bench.time_alternating(candidates, repeats=2, warmup=1, settle=0.25)
    assert events == ["a", "b"] + [("sleep", 0.25), "a", ("sleep", 0.25), "b"] * 2
    clock = [0.0]  # a fake clock: the sleep advances it by its seconds, each call by 1 ms

    def sleep(seconds):
        clock[0] += seconds

    def call():
        clock[0] += 0.001

    monkeypatch.setattr(bench.time, "sleep", sleep)
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    times = bench.time_alternating({"a": call}, repeats=3, warmup=0, settle=0.25)
    assert times["a"] == pytest.approx(0.001) and clock[0] == pytest.approx(3 * 0.251)  # slept, not timed


def test_bench_rejects_a_negative_settle(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--settle", "-1", "--no-memory"])
    assert "--settle must be >= 0" in capsys.readouterr().err


def test_run_without_torch(monkeypatch):
    monkeypatch.setattr(bench, "torch_available", lambda device: False)
    logged = []
    results = bench.run(["small_cnn-bn"], batch=8, repeats=1, warmup=0, memory=False, log=logged.append)
    assert results["torch"] is False and results["batch"] == 8
    (row,) = results["rows"]
    assert row["workload"] == "small_cnn-bn"
    assert row["train_step_minirn_ms"] > 0 and row["attack_step_minirn_ms"] > 0
    assert not any("torch" in key or "ratio" in key for key in row)
    assert len(logged) == 2 and logged[0].startswith("NumPy BLAS:") and "small_cnn-bn" in logged[1]
    assert results["blas"]["variables"] == bench.blas_info()["variables"]
    table = bench.format_table(results).splitlines()
    assert table[0].startswith("| workload |") and table[1] == "|" + "---|" * 10
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert len(cells) == 10 and cells[0] == "small_cnn-bn"
    assert float(cells[1]) == pytest.approx(row["train_step_minirn_ms"], abs=0.05)
    assert cells[2] == cells[3] == "-"  # no PyTorch figures


def test_blas_info_names_the_kernel_and_the_variables_that_choose_it(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    info = bench.blas_info()
    assert info["variables"].get("OPENBLAS_CORETYPE") == "Haswell" and "OPENBLAS_L2_SIZE" not in info["variables"]
    assert "OPENBLAS_CORETYPE=Haswell" in bench.describe_blas(info)
    if "library" in info:  # threadpoolctl is there: it read NumPy's own BLAS
        assert info["threads"] >= 1 and bench.describe_blas(info).startswith(f"NumPy BLAS: {info['library']}, kernel ")
    monkeypatch.setitem(__import__("sys").modules, "threadpoolctl", None)  # not installed
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    bare = bench.blas_info()
    assert bare == {"variables": {}}
    assert bench.describe_blas(bare) == ("NumPy BLAS: unknown (install threadpoolctl to see the kernel) "
                                         "(no OpenBLAS variables set)")


def test_run_rejects_unknown_workloads(monkeypatch):
    monkeypatch.setattr(bench, "torch_available", lambda device: False)
    with pytest.raises(ValueError, match="unknown workload"):
        bench.run(["vgg-bn"], batch=8, repeats=1, warmup=0, memory=False, log=lambda line: None)


def test_run_with_torch():
    pytest.importorskip("torch")
    results = bench.run(["small_cnn-rn"], batch=8, repeats=1, warmup=0, memory=False, log=lambda line: None)
    assert results["torch"] is True
    (row,) = results["rows"]
    for measure in ("train_step", "attack_step"):
        assert row[f"{measure}_torch_ms"] > 0
        assert row[f"{measure}_ratio"] == pytest.approx(row[f"{measure}_minirn_ms"] / row[f"{measure}_torch_ms"])
        assert math.isfinite(row[f"{measure}_ratio"]) and row[f"{measure}_ratio"] > 0
    assert "-" not in bench.format_table(results).splitlines()[2].split("|")[2:8]


@pytest.mark.parametrize("workload", list(bench.WORKLOADS))
def test_torch_twins_have_the_same_parameters(workload):
    pytest.importorskip("torch")
    from minirn.bench.torch_twins import torch_model

    arch, norm, shape = bench.WORKLOADS[workload]
    ours = bench.minirn_model(arch, norm, shape, "cpu")
    theirs = torch_model(arch, norm, shape[0])
    our_shapes = sorted(tuple(p.shape) for p in ours.parameters())
    their_shapes = sorted(tuple(p.shape) for p in theirs.parameters())
    assert our_shapes == their_shapes
    assert sum(int(np.prod(s)) for s in our_shapes) == sum(p.numel() for p in theirs.parameters())
    our_buffers = sorted(tuple(b.shape) for b in ours.buffers())
    their_buffers = sorted(tuple(b.shape) for name, b in theirs.named_buffers() if "num_batches" not in name)
    assert our_buffers == their_buffers
    assert list(ours.state_dict()) == [k for k in theirs.state_dict() if "num_batches" not in k]  # same names
