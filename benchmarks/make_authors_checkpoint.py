"""Write a SYNTHETIC checkpoint in the authors' layout: their ResNet with random weights, saved as their scripts save it.

    .venv/bin/python benchmarks/make_authors_checkpoint.py --model resnet8 --norm BN --out authors-bn.pth.tar

Random weights and running statistics (seeded), not a trained model: a model converted from it
classifies at chance.  It exists so that docs/pytorch_bridge.md's path "their checkpoint -> minirn
convert -> minirn attack" can be run where their data, their training and a GPU are not at hand.
The network is :mod:`minirn.bench.authors_network` (their module layout and key names, written from
their equations), the one the tests of minirn.bridge convert.  Needs PyTorch.
"""
from __future__ import annotations

import argparse
import sys

from minirn.bridge import AUTHORS_NORMS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8", help="resnet8 (their MNIST ResNet, 1 channel) or resnetN "
                                                          "(their CIFAR ResNet, 3 channels); default resnet8")
    parser.add_argument("--norm", choices=tuple(AUTHORS_NORMS), default="BN", help="their --norm (default BN)")
    parser.add_argument("--p", type=float, default=0.2, help="their --norm_power for RobustNorm (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--out", required=True, help="the .pth.tar to write")
    args = parser.parse_args(argv)
    try:
        from minirn.bench import authors_network  # noqa: PLC0415  (needs torch)
    except ImportError:
        print("make_authors_checkpoint: needs PyTorch: pip install torch", file=sys.stderr)
        return 2
    authors_network.synthetic_checkpoint(args.out, args.model, args.norm, args.p, args.seed)
    print(f"make_authors_checkpoint: wrote {args.out} (SYNTHETIC: their {args.model} with {args.norm}, "
          f"random weights, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
