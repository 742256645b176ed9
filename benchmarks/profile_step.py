"""Profile one minirn training (or attack) step with cProfile: where does the time go?

    python benchmarks/profile_step.py                 # ResNet-20, BatchNorm, training step
    python benchmarks/profile_step.py --norm rn --attack

Prints the median of three timed steps, then the functions that took the most time over
two profiled steps.  `python -m minirn bench` compares against PyTorch; this script explains.
"""
import argparse
import cProfile
import pstats
import statistics
import time

import numpy as np

import minirn
from minirn import models, optim
from minirn.attacks.common import input_gradient, model_untouched
from minirn.nn import functional as F


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=["resnet20", "small_cnn"])
    parser.add_argument("--norm", default="bn", choices=["bn", "rn", "none", "gn"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack", action="store_true", help="profile the attack gradient step instead")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    minirn.manual_seed(0)
    if args.model == "resnet20":
        model, shape = models.resnet(20, norm=args.norm), (3, 32, 32)
    else:
        model, shape = models.small_cnn(norm=args.norm), (1, 28, 28)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = np.random.default_rng(0)
    x = generator.random((args.batch, *shape), dtype=np.float32)
    y = generator.integers(0, 10, args.batch)

    def train_step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def attack_step():
        with model_untouched(model):
            input_gradient(model, x, y, targeted=False)

    step = attack_step if args.attack else train_step
    (model.eval if args.attack else model.train)()
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
