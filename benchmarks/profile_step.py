"""Profile one minirn training (or attack) step: where does the time go?

    python benchmarks/profile_step.py                      # ResNet-20, BatchNorm, training step, cProfile
    python benchmarks/profile_step.py --norm rn --attack
    python benchmarks/profile_step.py --by-layer --steps 10   # wall time per operation (Function) and direction

Prints the median of the timed steps, then either the functions that took the most time over two
profiled steps (cProfile) or, with ``--by-layer``, the wall time of each operation's forward and
backward per step (each ``Function`` subclass timed where it runs, convolutions split into their
im2col / row-offset copies, matrix products and padding).  `python -m minirn bench` compares
against PyTorch; this script explains, with the benchmark's own steps (`minirn.bench.minirn_steps`).
"""
import argparse
import collections
import cProfile
import pstats
import statistics
import time

from minirn import backend, bench
from minirn.autograd.tensor import Function
from minirn.nn.functional import conv

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=list(SHAPES))
    parser.add_argument("--norm", default="bn", choices=["bn", "rn", "none", "gn"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack", action="store_true", help="profile the attack gradient step instead")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--by-layer", action="store_true", help="wall time per operation instead of cProfile")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default %(default)s)")
    args = parser.parse_args()

    backend.retain_freed_memory()  # as minirn bench and every minirn command do
    train_step, attack_step = bench.minirn_steps(args.model, args.norm, SHAPES[args.model], args.batch, "cpu")
    step = attack_step if args.attack else train_step
    name = f"{args.model} {args.norm} {'attack' if args.attack else 'train'} step"
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
