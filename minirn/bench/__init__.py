"""``minirn bench``: minirn against PyTorch on the same networks, in one process.

Workloads (batch 128, float32): ``small_cnn`` on 1×28×28 and ``resnet20`` on
3×32×32, each with BatchNorm and RobustNorm.  Measures

* **train step**: forward, cross-entropy, backward, SGD-momentum update;
* **attack step**: eval mode, the gradient of the loss w.r.t. the input;
* **peak memory** of a training step, each framework in a fresh subprocess
  (peak resident memory minus the process's resident memory before the model is built).

minirn and PyTorch run alternately after a warm-up, with the same thread
count, and the table reports medians and the ratio minirn / PyTorch: ratios
survive a noisy machine, absolute times do not.  Each timed call waits
:data:`SETTLE_SECONDS` first (untimed), so that the worker threads the other
framework left spinning have gone to sleep (see there).  Without PyTorch only
minirn's figures are printed.

The PyTorch networks are :mod:`minirn.bench.torch_twins`, which the oracle
tests use as well; ``python -m minirn.bench`` runs :func:`main` (see ``__main__.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import minirn
from minirn import backend, models, optim
from minirn.attacks.objective import input_gradient, model_untouched
from minirn.nn import functional as F

WORKLOADS = {
    "small_cnn-bn": ("small_cnn", "bn", (1, 28, 28)),
    "small_cnn-rn": ("small_cnn", "rn", (1, 28, 28)),
    "resnet20-bn": ("resnet20", "bn", (3, 32, 32)),
    "resnet20-rn": ("resnet20", "rn", (3, 32, 32)),
}


# --- minirn side ------------------------------------------------------------------------
def minirn_model(arch, norm, shape, device):
    minirn.manual_seed(0)
    if arch == "small_cnn":
        model = models.small_cnn(norm=norm, in_channels=shape[0])
    else:
        model = models.resnet(20, norm=norm, in_channels=shape[0])
    return model.to(device)


def minirn_steps(arch, norm, shape, batch, device):
    """(train_step, attack_step) closures for minirn; each returns after the device finished."""
    model = minirn_model(arch, norm, shape, device)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = np.random.default_rng(0)
    x = backend.to_device(generator.random((batch, *shape), dtype=np.float32), device)
    y = backend.to_device(generator.integers(0, 10, batch), device)

    def train_step():
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        backend.synchronize(loss.data)

    def attack_step():
        model.eval()
        with model_untouched(model):  # no parameter gradients, like torch.autograd.grad w.r.t. the input
            grad, _, _ = input_gradient(model, x, y, targeted=False)
        backend.synchronize(grad)

    return train_step, attack_step


# --- PyTorch side ------------------------------------------------------------------------------
def torch_steps(arch, norm, shape, batch, device):
    import torch  # noqa: PLC0415  (optional dependency)

    from minirn.bench.torch_twins import torch_model  # noqa: PLC0415  (needs torch)

    torch.manual_seed(0)
    torch_device = "cuda" if device == "gpu" else "cpu"
    model = torch_model(arch, norm, shape[0]).to(torch_device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = np.random.default_rng(0)
    x = torch.tensor(generator.random((batch, *shape), dtype=np.float32), device=torch_device)
    y = torch.tensor(generator.integers(0, 10, batch), device=torch_device)
    sync = torch.cuda.synchronize if torch_device == "cuda" else (lambda: None)

    def train_step():
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync()

    def attack_step():
        model.eval()
        x_adv = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        sync()

    return train_step, attack_step


# --- measurement -----------------------------------------------------------------------------------
#: Seconds to wait (untimed) before each timed call.  After each matrix product OpenBLAS's worker threads
#: spin for about 2^28 cycles (0.1 s at 2.6 GHz; ``OPENBLAS_THREAD_TIMEOUT``) before they sleep, and
#: PyTorch's OpenMP threads briefly too.  On a 2-core machine a PyTorch step timed right after a minirn
#: step shares the cores with a spinning OpenBLAS thread: ResNet-20's BatchNorm training step took 201 ms
#: without the wait and 139-154 ms with 0.1-0.5 s (as when PyTorch runs alone), so without it every
#: ratio flattered minirn (docs/BENCHMARKS.md).
SETTLE_SECONDS = 0.2


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_alternating(candidates: dict, repeats: int, warmup: int, settle: float = 0.0) -> dict:
    """Median seconds per call of each function, calling them in turn (a, b, a, b, ...) after a warm-up;
    ``settle`` seconds of (untimed) sleep before each timed call."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            time.sleep(settle)
            samples[name].append(_time(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    import resource  # noqa: PLC0415  (POSIX only)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_worker(framework, workload, batch, device):
    """Run in a subprocess: peak memory (bytes) of a few training steps above the starting footprint."""
    arch, norm, shape = WORKLOADS[workload]
    if framework == "torch":
        import torch  # noqa: F401, PLC0415  (import before the baseline so that its own footprint is excluded)
    baseline = _rss_bytes()
    steps = (minirn_steps if framework == "minirn" else torch_steps)(arch, norm, shape, batch, device)
    for _ in range(3):
        steps[0]()
    return max(0, _peak_rss_bytes() - baseline)


def measure_memory(framework, workload, batch, device) -> int | None:
    command = [sys.executable, "-m", "minirn.bench", "--memory-worker", framework, workload, str(batch), device]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return int(done.stdout.strip().splitlines()[-1])


def torch_available(device) -> bool:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return False
    return device != "gpu" or torch.cuda.is_available()


OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")


def blas_info() -> dict:
    """NumPy's BLAS as threadpoolctl sees it (library, the kernel it runs, threads), and the OpenBLAS
    variables set in the environment.  The kernel decides the speed of every im2col product: some
    machines set ``OPENBLAS_CORETYPE=Haswell``, which halves an AVX-512 processor's float32 products
    (docs/BENCHMARKS.md).  Without threadpoolctl (an optional helper) only the variables are known."""
    info = {"variables": {k: os.environ[k] for k in OPENBLAS_VARIABLES if k in os.environ}}
    try:
        import threadpoolctl  # noqa: PLC0415  (optional: scikit-learn, a dependency of mlxtend, brings it)
    except ImportError:
        return info
    for library in threadpoolctl.threadpool_info():
        if library.get("user_api") == "blas" and "numpy" in library.get("filepath", ""):
            info.update(library=library.get("internal_api"), kernel=library.get("architecture"),
                        threads=library.get("num_threads"))
            break
    return info


def describe_blas(info) -> str:
    """One line for the log: 'NumPy BLAS: openblas, kernel SkylakeX, 2 threads (no OpenBLAS variables set)'."""
    what = (f"{info['library']}, kernel {info.get('kernel')}, {info.get('threads')} threads" if "library" in info
            else "unknown (install threadpoolctl to see the kernel)")
    variables = ", ".join(f"{k}={v}" for k, v in info["variables"].items()) or "no OpenBLAS variables set"
    return f"NumPy BLAS: {what} ({variables})"


def run(workloads, batch=128, repeats=7, warmup=2, device="cpu", memory=True, threads=None, log=print,
        settle=SETTLE_SECONDS) -> dict:
    """Benchmark ``workloads``; return the results (printed as a table by :func:`format_table`)."""
    backend.check_device(device)
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {', '.join(unknown)}; expected some of {', '.join(WORKLOADS)}")
    have_torch = torch_available(device)
    if have_torch:
        import torch  # noqa: PLC0415

        if threads:
            torch.set_num_threads(threads)
    blas = blas_info()
    log(describe_blas(blas))
    rows = []
    for workload in workloads:
        arch, norm, shape = WORKLOADS[workload]
        ours = minirn_steps(arch, norm, shape, batch, device)
        theirs = torch_steps(arch, norm, shape, batch, device) if have_torch else None
        row = {"workload": workload}
        for i, measure in enumerate(("train_step", "attack_step")):
            candidates = {"minirn": ours[i]}
            if theirs:
                candidates["torch"] = theirs[i]
            times = time_alternating(candidates, repeats, warmup, settle)
            row[f"{measure}_minirn_ms"] = 1000 * times["minirn"]
            if theirs:
                row[f"{measure}_torch_ms"] = 1000 * times["torch"]
                row[f"{measure}_ratio"] = times["minirn"] / times["torch"]
        if memory:
            for framework in ("minirn", "torch") if have_torch else ("minirn",):
                peak = measure_memory(framework, workload, batch, device)
                row[f"peak_memory_{framework}_mb"] = None if peak is None else peak / 2**20
            if have_torch and row.get("peak_memory_torch_mb"):
                row["peak_memory_ratio"] = row["peak_memory_minirn_mb"] / row["peak_memory_torch_mb"]
        rows.append(row)
        log(format_row(row))
    return {
        "batch": batch, "repeats": repeats, "warmup": warmup, "settle_s": settle, "device": device, "torch": have_torch,
        "threads": threads or (torch.get_num_threads() if have_torch else os.cpu_count()),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "blas": blas,
        "versions": {"minirn": minirn.__version__, "numpy": np.__version__,
                     "torch": __import__("torch").__version__ if have_torch else None},
        "rows": rows,
    }


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def format_row(row) -> str:
    parts = [f"{row['workload']:<14}"]
    for measure in ("train_step", "attack_step"):
        parts.append(f"{measure.replace('_', ' ')}: {_fmt(row.get(f'{measure}_minirn_ms'), '7.1f')} ms"
                     f" vs torch {_fmt(row.get(f'{measure}_torch_ms'), '7.1f')} ms"
                     f" (x{_fmt(row.get(f'{measure}_ratio'), '.2f')})")
    if "peak_memory_minirn_mb" in row:
        parts.append(f"peak memory: {_fmt(row.get('peak_memory_minirn_mb'), '.0f')} MB"
                     f" vs {_fmt(row.get('peak_memory_torch_mb'), '.0f')} MB (x{_fmt(row.get('peak_memory_ratio'), '.2f')})")
    return " | ".join(parts)


def format_table(results) -> str:
    header = ("| workload | train step minirn (ms) | train step torch (ms) | ratio | attack step minirn (ms) "
              "| attack step torch (ms) | ratio | peak mem minirn (MB) | peak mem torch (MB) | ratio |")
    lines = [header, "|" + "---|" * 10]
    for r in results["rows"]:
        cells = [r["workload"]]
        for measure in ("train_step", "attack_step"):
            cells += [_fmt(r.get(f"{measure}_minirn_ms"), ".1f"), _fmt(r.get(f"{measure}_torch_ms"), ".1f"),
                      _fmt(r.get(f"{measure}_ratio"), ".2f")]
        cells += [_fmt(r.get("peak_memory_minirn_mb"), ".0f"), _fmt(r.get("peak_memory_torch_mb"), ".0f"),
                  _fmt(r.get("peak_memory_ratio"), ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minirn bench", description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: " + ", ".join(WORKLOADS))
    parser.add_argument("--batch", type=int, default=128, help="images per step (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per step; the median is reported (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu (NumPy) or gpu (CuPy; PyTorch on CUDA) (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: its own default)")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="seconds to wait (untimed) before each timed call, for the other framework's "
                             "spinning worker threads to sleep (default %(default)s)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement (one subprocess per framework)")
    parser.add_argument("--json", default=os.path.join("results-bench", "bench.json"),
                        help="where to write the results (default %(default)s)")
    parser.add_argument("--memory-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.settle < 0:
        parser.error(f"--settle must be >= 0 seconds, got {args.settle}")
    backend.retain_freed_memory()  # as every minirn command does (minirn.backend.memory); PyTorch shares the process
    if args.memory_worker:
        framework, workload, batch, device = args.memory_worker
        print(memory_worker(framework, workload, int(batch), device))
        return 0
    results = run(args.workloads.split(","), args.batch, args.repeats, args.warmup, args.device,
                  memory=not args.no_memory, threads=args.threads, settle=args.settle)
    print()
    print(format_table(results))
    if not results["torch"]:
        print("\n(no PyTorch here: install torch to compare: pip install torch)")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.json}")
    return 0

