"""Profile one minirn training (or attack) step with cProfile: where does the time go?

    python benchmarks/profile_step.py                 # ResNet-20, BatchNorm, training step
    python benchmarks/profile_step.py --norm rn --attack

Prints the median of three timed steps, then the functions that took the most time over
two profiled steps.  `python -m minirn bench` compares against PyTorch; this script explains,
with the benchmark's own steps (`minirn.bench.minirn_steps`).
"""
import argparse
import cProfile
import pstats
import statistics
import time

from minirn import backend, bench

SHAPES = {"resnet20": (3, 32, 32), "small_cnn": (1, 28, 28)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=list(SHAPES))
    parser.add_argument("--norm", default="bn", choices=["bn", "rn", "none", "gn"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack", action="store_true", help="profile the attack gradient step instead")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    backend.retain_freed_memory()  # as minirn bench and every minirn command do
    train_step, attack_step = bench.minirn_steps(args.model, args.norm, SHAPES[args.model], args.batch, "cpu")
    step = attack_step if args.attack else train_step
    step()  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(f"{args.model} {args.norm} {'attack' if args.attack else 'train'} step: "
          f"{1000 * statistics.median(times):.0f} ms (median of 3)")
    profiler = cProfile.Profile()
    profiler.enable()
    step()
    step()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
