"""The ``minirn`` command line (also ``python -m minirn``)::

    minirn reproduce [--quick] [--out results]        # the paper's findings, end to end
    minirn train --norm bn --epochs 6 --out bn.npz     # train one model, save it with its metadata
    minirn attack --checkpoint bn.npz --attacks fgsm,pgd --eps 0.05,0.1 --eval-stats batch
    minirn bench [--device gpu]                        # minirn against PyTorch (see minirn.bench)

Every setting of ``reproduce``, ``train`` and ``attack`` lives in one place,
:class:`~minirn.experiments.config.ReproduceConfig`: its defaults are the
options' defaults (the training recipe's are :class:`minirn.train.Recipe`'s),
and its ``validate`` checks the names and numbers.  ``train`` and ``attack``
build their model with :func:`minirn.models.build` and train it with
:func:`minirn.train.train_model`; only ``reproduce`` runs the experiment
pipeline, :mod:`minirn.experiments.reproduce`.

Bad input (an unknown name, a non-positive number, a missing dataset, an
unreadable checkpoint) ends with one line ``minirn <command>: error: ...`` on
stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import minirn
from minirn import backend, models, serialization
from minirn.attacks import evaluate
from minirn.data import DatasetNotFoundError, load_dataset
from minirn.experiments.config import ReproduceConfig, attack_settings, quick_config
from minirn.nn import EVAL_STATISTICS, norm_layers, set_norm_eval_stats
from minirn.train import ATTACK_MODES, AdversarialTraining, train_model

#: ``--eval-stats`` of ``minirn attack``: name -> (mean, scale) for :func:`minirn.nn.set_norm_eval_stats`,
#: from the table :data:`minirn.nn.EVAL_STATISTICS`.
EVAL_STATS = {variant.name: variant.setting for variant in EVAL_STATISTICS}

#: Errors that mean "bad input", reported in one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, DatasetNotFoundError, serialization.CheckpointError, backend.DeviceError, OSError)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), like the other errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- option types: each rejects bad values with a one-line message ------------------------------------
def _int_at_least(minimum, what):
    """An argparse type: an integer >= ``minimum``, else a one-line error naming ``what`` was expected."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_seed = _int_at_least(0, "a non-negative integer")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_floats(text):
    values = tuple(_positive_float(v) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def _names(text):
    return tuple(v.strip() for v in text.split(",") if v.strip())


# --- option groups shared by the subcommands --------------------------------------------------------
# Options whose value is a ReproduceConfig field default to None ("not given"), so that the config's own
# default applies (or quick_config's, with --quick); the help shows the config's default.
DEFAULTS = ReproduceConfig()


def _option(parser, flag, field=None, text="", **kwargs):
    field = field or flag.lstrip("-").replace("-", "_")
    default = getattr(DEFAULTS, field)
    shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) if isinstance(default, tuple) else default
    parser.add_argument(flag, dest=field, default=None, help=f"{text} (default {shown})".strip(), **kwargs)


def _add_data_options(parser, dataset_help="mnist-5k (embedded), digits, mnist, fashion-mnist, cifar10"):
    _option(parser, "--dataset", text=dataset_help)
    parser.add_argument("--data-root", default=None, help="dataset folder (default $MINIRN_DATA or ~/.cache/minirn)")
    parser.add_argument("--download", action="store_true", help="download mnist / fashion-mnist / cifar10 if missing")


def _add_model_options(parser):
    _option(parser, "--model", text=models.MODEL_NAMES)
    _option(parser, "--p", type=_positive_float, text="RobustNorm's power p")


def _add_training_options(parser):
    _option(parser, "--epochs", type=_positive_int)
    _option(parser, "--batch-size", type=_positive_int, text="training batch size")
    _option(parser, "--lr", type=_positive_float, text=f"SGD learning rate (momentum {DEFAULTS.momentum:g}, weight decay {DEFAULTS.weight_decay:g}, cosine)")


def _add_attack_options(parser):
    _option(parser, "--attacks", type=_names, text="comma-separated: fgsm,pgd,bim,mim,cw,apgd-ce,apgd-dlr,apgd-t,square; suite = apgd-ce,apgd-t,square")
    _option(parser, "--eps", type=_positive_floats, text="comma-separated L∞ budgets for images in [0, 1]")
    _option(parser, "--pgd-steps", type=_positive_int, text="steps of PGD/BIM/MIM (step size 2.5 ε / steps)")


def _add_run_options(parser):
    _option(parser, "--device", text="cpu (NumPy) or gpu (CuPy)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minirn", description="BatchNorm vs RobustNorm under adversarial attack, from scratch.")
    commands = parser.add_subparsers(dest="command", metavar="{reproduce,train,attack,bench}")

    rep = commands.add_parser("reproduce", help="train, attack and report the paper-style table and figures")
    _add_data_options(rep)
    _add_model_options(rep)
    _option(rep, "--norms", type=_names, text="comma-separated: none,bn,rn,gn,ln")
    _add_training_options(rep)
    _option(rep, "--seeds", type=_positive_int, text="models per norm")
    _add_attack_options(rep)
    _option(rep, "--eval-examples", type=_positive_int, text="test examples attacked")
    _option(rep, "--eval-batch-size", type=_positive_int, text="batch size of the evaluation (matters for batch statistics)")
    _option(rep, "--suite", choices=("fast", "standard", "smoke"),
            text="the attack ensemble of the 'suite' column: fast, or standard (AutoAttack's full budgets: slow)")
    _option(rep, "--eval-variants", type=_names, text="eval-statistics variants of bn/rn: running,batch,running-mean")
    _add_run_options(rep)
    _option(rep, "--out", text="output folder")
    rep.add_argument("--quick", action="store_true", help="a tiny smoke-test run on the 8x8 digits")
    rep.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")

    train = commands.add_parser("train", help="train one model and save it (weights and metadata) to --out")
    _add_data_options(train)
    _add_model_options(train)
    train.add_argument("--norm", default="bn", help="none, bn, rn, gn or ln (default bn)")
    _add_training_options(train)
    train.add_argument("--seed", type=_seed, default=0, help="initialisation and batch order (default 0)")
    train.add_argument("--adversarial-eps", type=_positive_float, default=None,
                       help="PGD adversarial training with this L∞ budget (default: clean training)")
    train.add_argument("--adversarial-steps", type=_positive_int, default=10, help="PGD steps of step size ε/4 (default 10)")
    train.add_argument("--attack-mode", choices=ATTACK_MODES, default=None,
                       help="mode of the model while the training attack is computed (default eval)")
    _add_run_options(train)
    train.add_argument("--out", required=True, help="where to save the trained model (.npz)")
    train.add_argument("--checkpoint", default=None,
                       help="the per-epoch training checkpoint (default: --out with .ckpt.npz)")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")

    attack = commands.add_parser("attack", help="evaluate a model saved by 'minirn train' under attack")
    attack.add_argument("--checkpoint", required=True, help="a model saved by 'minirn train' (.npz)")
    _add_data_options(attack, dataset_help="test set to attack (default: the dataset the model was trained on)")
    _add_attack_options(attack)
    attack.add_argument("--eval-stats", choices=tuple(EVAL_STATS), default=EVAL_STATISTICS[0].name,
                        help="statistics of the norm layers: "
                             + "; ".join(f"{v.name}, {v.description}" for v in EVAL_STATISTICS))
    _option(attack, "--examples", field="eval_examples", type=_positive_int, text="test examples attacked")
    _option(attack, "--batch-size", field="eval_batch_size", type=_positive_int,
            text="evaluation batch size (matters for batch statistics)")
    attack.add_argument("--seed", type=_seed, default=0, help="seed of the attacks' random starts (default 0)")
    attack.add_argument("--json", default=None, help="also write the full evaluation to this JSON file")
    _add_run_options(attack)

    commands.add_parser("bench", help="time minirn against PyTorch (options: minirn bench --help)", add_help=False)
    return parser


def _config(args, **fields) -> ReproduceConfig:
    """A validated ReproduceConfig from the options given on the command line (others keep their defaults)."""
    names = {f.name for f in dataclasses.fields(ReproduceConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    given.update(fields)
    if getattr(args, "no_progress", False):
        given["progress"] = False
    if getattr(args, "quick", False):
        return quick_config(**given).validate()
    return ReproduceConfig(**given).validate()


def _load_data(config):
    return load_dataset(config.dataset, root=config.data_root, download=config.download)


# --- the subcommands -----------------------------------------------------------------------------------------
def _reproduce(args):
    from minirn.experiments import reproduce  # noqa: PLC0415  (only this subcommand runs the experiment pipeline)

    reproduce.run(_config(args))


def _train(args):
    if args.attack_mode is not None and args.adversarial_eps is None:
        raise ValueError("--attack-mode needs --adversarial-eps (it only applies to adversarial training)")
    config = _config(args, norms=(args.norm,))
    adversarial = None
    if args.adversarial_eps is not None:
        adversarial = AdversarialTraining(eps=args.adversarial_eps, steps=args.adversarial_steps,
                                          attack_mode=args.attack_mode or "eval")
    checkpoint = args.checkpoint or (args.out[:-4] if args.out.endswith(".npz") else args.out) + ".ckpt.npz"
    if os.path.abspath(checkpoint) == os.path.abspath(args.out):
        raise ValueError("--checkpoint must differ from --out (one is overwritten every epoch, the other is the result)")
    data = _load_data(config)
    in_channels, num_classes = data.x_train.shape[1], data.num_classes
    for path in (args.out, checkpoint):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print(f"minirn train: {config.model} with norm {args.norm} on {config.dataset} ({len(data.x_train)} train / "
          f"{len(data.x_test)} test), {config.epochs} epochs, lr {config.lr:g}, batch {config.batch_size}, seed {args.seed}"
          + (f", PGD adversarial training ε={adversarial.eps:g} ({adversarial.attack_mode} mode)" if adversarial else ""))
    model, history = train_model(
        lambda: config.build_model(args.norm, in_channels, num_classes), config.recipe(),
        (data.x_train, data.y_train), args.seed, adversarial, test_data=(data.x_test, data.y_test),
        augment="cifar" if data.name == "cifar10" else None, checkpoint=checkpoint, resume=args.resume,
        progress=config.progress, description=f"{args.norm} seed {args.seed}",
    )
    print("| epoch | train loss | train acc (%) | test acc (%) | lr | seconds |\n|---|---|---|---|---|---|")
    for h in history:
        print(f"| {h['epoch']} | {h['train_loss']:.4f} | {100 * h['train_acc']:.1f} | {100 * h['test_acc']:.1f} "
              f"| {h['lr']:.4g} | {h['seconds']:.1f} |")
    meta = {
        "dataset": data.name, "model": config.model, "norm": args.norm, "p": config.p,
        "in_channels": in_channels, "num_classes": num_classes, "shape": list(data.shape),
        "epochs": config.epochs, "seed": args.seed, "lr": config.lr, "batch_size": config.batch_size,
        "momentum": config.momentum, "weight_decay": config.weight_decay,
        "adversarial": None if adversarial is None else {"eps": adversarial.eps, "alpha": adversarial.alpha,
                                                         "steps": adversarial.steps,
                                                         "attack_mode": adversarial.attack_mode},
        "test_accuracy": history[-1]["test_acc"], "history": history, "minirn_version": minirn.__version__,
    }
    serialization.save({"model": dict(model.state_dict()), "meta": meta}, args.out)
    print(f"saved {args.out} (test accuracy {100 * meta['test_accuracy']:.1f}%; training checkpoint {checkpoint})")


def _read_model_checkpoint(path) -> tuple:
    """(state_dict, meta) of a model saved by ``minirn train``; CheckpointError for anything else."""
    state = serialization.load(path)
    meta = state.get("meta")
    if not isinstance(meta, dict) or not isinstance(state.get("model"), dict):
        what = "a training checkpoint (for --resume)" if "optimizer" in state else "not a model saved by 'minirn train'"
        raise serialization.CheckpointError(f"{path!r} is {what}: it has no 'model' and 'meta' entries")
    types = {"dataset": str, "model": str, "norm": str, "p": (int, float), "in_channels": int, "num_classes": int}
    for key, kind in types.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise serialization.CheckpointError(f"{path!r} is damaged: meta[{key!r}] is {meta.get(key)!r}")
    return state["model"], meta


def _attack(args):
    weights, meta = _read_model_checkpoint(args.checkpoint)
    config = _config(args, model=meta["model"], norms=(meta["norm"],), p=float(meta["p"]),
                     dataset=args.dataset or meta["dataset"])
    model = config.build_model(meta["norm"], meta["in_channels"], meta["num_classes"])
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as exc:
        raise serialization.CheckpointError(f"{args.checkpoint!r} does not fit its own metadata: {exc}") from None
    data = _load_data(config)
    shape = tuple(meta.get("shape") or (meta["in_channels"],) + tuple(data.shape[1:]))
    if tuple(data.shape) != shape or data.num_classes != meta["num_classes"]:
        raise ValueError(f"--dataset {config.dataset} has images {data.shape} and {data.num_classes} classes; the model "
                         f"was trained on {meta['dataset']} with images {shape} and {meta['num_classes']} classes")
    model.eval()
    set_norm_eval_stats(model, *EVAL_STATS[args.eval_stats])
    x, y = data.x_test[: config.eval_examples], data.y_test[: config.eval_examples]
    stats = args.eval_stats if norm_layers(model) else "- (no BatchNorm/RobustNorm layers)"
    print(f"minirn attack: {args.checkpoint} ({meta['model']}, norm {meta['norm']}, trained on {meta['dataset']}); "
          f"{len(x)} test examples of {config.dataset}, eval statistics {stats}, batch {config.eval_batch_size}")
    result = evaluate(model, x, y, attack_settings(config), list(config.eps), batch_size=config.eval_batch_size,
                      seed=args.seed, progress=config.progress)
    print(format_evaluation(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "meta": meta, "dataset": config.dataset,
                       "eval_stats": args.eval_stats, "evaluation": result}, f, indent=1)
        print(f"wrote {args.json}")


def format_evaluation(result) -> str:
    """A Markdown table of an :func:`~minirn.attacks.evaluate` result: clean, each attack × ε, the worst case."""
    lines = ["| attack | ε | accuracy (%) |", "|---|---|---|", f"| clean | 0 | {100 * result['clean_accuracy']:.1f} |"]
    for name, accuracies in result["accuracy"].items():
        lines += [f"| {name} | {eps:g} | {100 * a:.1f} |" for eps, a in zip(result["eps"], accuracies)]
    if len(result["accuracy"]) > 1:
        lines += [f"| worst case | {eps:g} | {100 * a:.1f} |" for eps, a in zip(result["eps"], result["worst_case_accuracy"])]
    return "\n".join(lines)


def _bench(argv):
    from minirn import bench  # noqa: PLC0415  (only this subcommand needs it)

    return bench.main(argv)


COMMANDS = {"reproduce": _reproduce, "train": _train, "attack": _attack}


def _one_line(exc) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = argv[0] if argv else None
    try:
        if command == "bench":  # minirn.bench has its own parser: forward the rest of the line
            return _bench(argv[1:])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        COMMANDS[args.command](args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except USER_ERRORS as exc:
        print(f"minirn {command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " (rerun with --resume to continue from the last checkpoint)" if command in ("train", "reproduce") else ""
        print(f"minirn {command}: interrupted{hint}", file=sys.stderr)
        return 130
    return 0
