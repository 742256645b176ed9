"""The ``minirn`` command line: ``reproduce``, ``train``, ``attack``.

Bad input (an unknown name, a non-positive number, a missing file) ends with
one clear line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from minirn import backend, serialization
from minirn.data import DatasetNotFoundError
from minirn.experiments import reproduce as reproduce_module


def _floats(text):
    try:
        return tuple(float(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text):
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _add_common(parser, defaults):
    parser.add_argument("--dataset", default=defaults.dataset, help="mnist-5k (embedded), digits, mnist, fashion-mnist, cifar10")
    parser.add_argument("--model", default=defaults.model, help="small-cnn, resnet20 or resnetN (N = 6n+2)")
    parser.add_argument("--p", type=float, default=defaults.p, help="RobustNorm's power p (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--device", default=defaults.device, help="cpu (NumPy) or gpu (CuPy)")
    parser.add_argument("--download", action="store_true", help="download mnist / fashion-mnist / cifar10 if missing")
    parser.add_argument("--data-root", default=None, help="dataset folder (default $MINIRN_DATA or ~/.cache/minirn)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    defaults = reproduce_module.ReproduceConfig()
    parser = argparse.ArgumentParser(prog="minirn", description="BatchNorm vs RobustNorm under adversarial attack, from scratch.")
    commands = parser.add_subparsers(dest="command", required=True)

    rep = commands.add_parser("reproduce", help="train, attack and report the paper-style table and figures")
    _add_common(rep, defaults)
    rep.add_argument("--norms", type=_names, default=defaults.norms, help="comma-separated: none,bn,rn,gn,ln")
    rep.add_argument("--seeds", type=int, default=defaults.seeds)
    rep.add_argument("--attacks", type=_names, default=defaults.attacks, help="comma-separated: fgsm,pgd,bim,mim,cw")
    rep.add_argument("--eps", type=_floats, default=defaults.eps, help="comma-separated L∞ budgets for images in [0, 1]")
    rep.add_argument("--pgd-steps", type=int, default=defaults.pgd_steps)
    rep.add_argument("--eval-examples", type=int, default=defaults.eval_examples)
    rep.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)
    rep.add_argument("--out", default=defaults.out, help="output folder (default %(default)s)")
    rep.add_argument("--quick", action="store_true", help="a tiny smoke-test run on the 8x8 digits")
    rep.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    return parser


def _reproduce(args):
    options = {
        "dataset": args.dataset, "model": args.model, "norms": args.norms, "p": args.p, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "seeds": args.seeds, "attacks": args.attacks, "eps": args.eps,
        "pgd_steps": args.pgd_steps, "eval_examples": args.eval_examples, "eval_batch_size": args.eval_batch_size,
        "device": args.device, "out": args.out, "resume": args.resume, "download": args.download,
        "data_root": args.data_root, "progress": not args.no_progress,
    }
    if args.quick:
        defaults = reproduce_module.ReproduceConfig()
        explicit = {k: v for k, v in options.items() if v != getattr(defaults, k)}
        config = reproduce_module.quick_config(**explicit)
    else:
        config = reproduce_module.ReproduceConfig(**options)
    reproduce_module.run(config)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "reproduce":
            _reproduce(args)
    except (ValueError, DatasetNotFoundError, serialization.CheckpointError, backend.DeviceError, OSError) as exc:
        print(f"minirn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minirn {args.command}: interrupted (rerun with --resume to continue from the last checkpoint)", file=sys.stderr)
        return 130
    return 0
