"""Profile one minirn training (or attack) step: where does the time go?

    python benchmarks/profile_step.py                      # ResNet-20, BatchNorm, training step, cProfile
    python benchmarks/profile_step.py --norm rn --attack
    python benchmarks/profile_step.py --by-layer --steps 10   # wall time per operation (Function) and direction
    python benchmarks/profile_step.py --products --steps 11   # its products and im2col copies alone, against PyTorch

Prints the median of the timed steps, then either the functions that took the most time over two
profiled steps (cProfile) or, with ``--by-layer``, the wall time of each operation's forward and
backward per step (each ``Function`` subclass timed where it runs, convolutions split into their
im2col / row-offset copies, matrix products and padding).  `python -m minirn bench` compares
against PyTorch; this script explains, with the benchmark's own steps (`minirn.bench.minirn_steps`).

``--products`` asks how fast the step could be with its algorithm: it records every matrix product
(``matmul``) and every im2col copy one step makes, replays each kind alone on fresh operands of the same
shapes and memory orders, and times the two replays, the whole minirn step and PyTorch's step in turn, each
after the benchmark's untimed settle; then one write and one read pass over the normalisation layers'
inputs, the unit of BatchNorm's cost in array code.  Whatever else changes, a step that keeps these
products and copies takes at least their time.
"""
import argparse
import collections
import contextlib
import cProfile
import pstats
import statistics
import time

import numpy as np

from minirn import backend, bench
from minirn.autograd.tensor import Function
from minirn.nn.functional import conv, normalization

SHAPES = {"resnet20": (3, 32, 32), "small_cnn": (1, 28, 28)}


def timed_steps(step, steps):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def by_layer(step, steps):
    """Wall time per step of every Function's forward and backward, and of the convolution's parts."""
    totals = collections.defaultdict(float)

    def timer(key, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - start
        return timed

    for cls in set(_subclasses(Function)):
        for method in ("forward", "backward"):
            if method in cls.__dict__:
                setattr(cls, method, timer(f"{cls.__name__}.{method}", cls.__dict__[method]))
    conv._pad_hw = timer("conv: zero padding (part of Conv2d)", conv._pad_hw)
    backend.im2col = timer("conv: im2col copies, X_col and X_row (part of Conv2d)", backend.im2col)
    step()
    step()
    totals.clear()
    times = timed_steps(step, steps)
    return statistics.median(times), {k: v / steps for k, v in totals.items()}, sum(times) / steps


@contextlib.contextmanager
def recording(holder, name, record):
    """Inside the block, ``holder.name`` calls ``record(*args)`` and then what it was; afterwards it is what
    it was again (an inherited attribute is inherited again)."""
    own = name in vars(holder)
    original = getattr(holder, name)

    def recorded(*args, **kwargs):
        record(*args)
        return original(*args, **kwargs)

    setattr(holder, name, recorded)
    try:
        yield
    finally:
        if own:
            setattr(holder, name, original)
        else:
            delattr(holder, name)


def recorded_normalised_shapes(shapes):
    """Record the shape of every input to BatchNorm / RobustNorm's forward pass inside the block."""
    return recording(normalization._BatchStatisticsNorm, "__call__",
                     lambda self, x, *rest: shapes.append(tuple(x.shape)))


def passes_over(shapes, steps):
    """Median seconds of one write pass (y = x * v, one value per channel) and one read pass (per-channel
    sums) over fresh channels-last float32 arrays of the given (N, C, H, W) shapes: the unit of BatchNorm's
    cost in array code, where every operation reads and writes whole arrays."""
    rng = np.random.default_rng(0)
    xs = [np.permute_dims(rng.standard_normal((n, h, w, c), dtype=np.float32), (0, 3, 1, 2)) for n, c, h, w in shapes]
    ys = [np.empty_like(x) for x in xs]
    vs = [rng.standard_normal(x.shape[1], dtype=np.float32) for x in xs]

    def write_pass():
        for x, y, v in zip(xs, ys, vs):
            backend.channelwise(np.multiply, x, v, out=y)

    def read_pass():
        for x in xs:
            backend.channel_sums(x)

    return [statistics.median(timed_steps(f, steps)) for f in (write_pass, read_pass)]


def recorded_products(calls):
    """Record (a, b) of every ``matmul`` call inside the block: NumPy's, which the array-API namespace's
    ``matmul`` calls too (each product once)."""
    return recording(np, "matmul", lambda a, b, *rest: calls.append((a, b)))


def _like(a, rng):
    """A fresh array of a's shape and dtype, Fortran-ordered where a is a transposed view."""
    fresh = rng.standard_normal(a.shape).astype(a.dtype)
    return np.asfortranarray(fresh) if a.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous else fresh


def recorded_copies(calls):
    """Record (x, kernel, stride) of every ``backend.im2col`` call (X_col and X_row) inside the block."""
    return recording(backend, "im2col", lambda x, kernel, stride: calls.append((x, kernel, stride)))


def floor(step, torch_step, steps):
    """What one step costs against what its parts cost alone: a dict of median seconds for ``products``
    (the step's matrix products replayed alone on fresh operands of the same shapes and memory orders),
    ``copies`` (its im2col copies, X_col and X_row, replayed alone), ``step`` and ``torch`` (PyTorch's step,
    or None), timed in turn, each after the bench's settle; the number of products and their ``gflop``; and
    one ``write_pass`` and one ``read_pass`` over the inputs of its ``norm_layers`` (:func:`passes_over`)."""
    products, copies, shapes = [], [], []
    step()  # warm-up
    with recorded_products(products), recorded_copies(copies), recorded_normalised_shapes(shapes):
        step()
    rng = np.random.default_rng(0)
    operands = []
    for a, b in products:
        out = np.empty((*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1]), dtype=a.dtype)
        operands.append((_like(a, rng), _like(b, rng), out))
    windows = [(_like(x, rng), kernel, stride) for x, kernel, stride in copies]

    def replay_products():
        for a, b, out in operands:
            np.matmul(a, b, out=out)

    def replay_copies():
        for x, kernel, stride in windows:
            backend.im2col(x, kernel, stride)

    timed = {"products": replay_products, "copies": replay_copies, "step": step, "torch": torch_step}
    result = bench.time_alternating({name: f for name, f in timed.items() if f is not None}, repeats=steps,
                                    warmup=1, settle=bench.SETTLE_SECONDS)  # as minirn bench times its steps
    result.setdefault("torch", None)
    result["write_pass"], result["read_pass"] = passes_over(shapes, steps)
    result.update(count=len(operands), gflop=sum(2 * out.size * a.shape[-1] for a, b, out in operands) / 1e9,
                  norm_layers=len(shapes))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=list(SHAPES))
    parser.add_argument("--norm", default="bn", choices=["bn", "rn", "none", "gn"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack", action="store_true", help="profile the attack gradient step instead")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--by-layer", action="store_true", help="wall time per operation instead of cProfile")
    parser.add_argument("--products", action="store_true",
                        help="time the step's matrix products and im2col copies alone, the step, and PyTorch's step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default %(default)s)")
    args = parser.parse_args()

    backend.retain_freed_memory()  # as minirn bench and every minirn command do
    train_step, attack_step = bench.minirn_steps(args.model, args.norm, SHAPES[args.model], args.batch, "cpu")
    step = attack_step if args.attack else train_step
    name = f"{args.model} {args.norm} {'attack' if args.attack else 'train'} step"
    if args.products:
        try:
            torch_train, torch_attack = bench.torch_steps(args.model, args.norm, SHAPES[args.model], args.batch, "cpu")
            torch_step = torch_attack if args.attack else torch_train
        except ImportError:
            torch_step = None
        r = floor(step, torch_step, args.steps)
        ms = {k: 1000 * v for k, v in r.items() if k in ("products", "copies", "step", "torch", "write_pass", "read_pass")
              and v is not None}
        print(f"{name} (medians of {args.steps}): the whole step {ms['step']:.0f} ms; its {r['count']} matrix products "
              f"({r['gflop']:.1f} GFLOP) alone {ms['products']:.0f} ms; its im2col copies alone {ms['copies']:.0f} ms")
        print(f"one pass over the {r['norm_layers']} normalisation layers' inputs: writing {ms['write_pass']:.1f} ms, "
              f"reading {ms['read_pass']:.1f} ms")
        if r["torch"] is not None:
            print(f"PyTorch's step {ms['torch']:.0f} ms; against it: the whole step {r['step'] / r['torch']:.2f}x, "
                  f"the products alone {r['products'] / r['torch']:.2f}x, products and copies "
                  f"{(r['products'] + r['copies']) / r['torch']:.2f}x")
        return
    if args.by_layer:
        median, per_step, mean = by_layer(step, args.steps)
        print(f"{name}: {1000 * median:.0f} ms (median of {args.steps}; mean {1000 * mean:.0f} ms)")
        print("| where | ms per step | share |\n|---|---|---|")
        layers = {k: v for k, v in per_step.items() if not k.startswith("conv:")}
        for key, seconds in sorted(per_step.items(), key=lambda kv: -kv[1]):
            if seconds >= 0.0005:
                print(f"| {key} | {1000 * seconds:.1f} | {100 * seconds / mean:.0f} % |")
        rest = mean - sum(layers.values())
        print(f"| the rest (autograd bookkeeping, loss, optimizer) | {1000 * rest:.1f} | {100 * rest / mean:.0f} % |")
        return
    step()  # warm-up
    times = timed_steps(step, args.steps)
    print(f"{name}: {1000 * statistics.median(times):.0f} ms (median of {args.steps})")
    profiler = cProfile.Profile()
    profiler.enable()
    step()
    step()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
