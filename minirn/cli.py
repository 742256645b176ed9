"""The ``minirn`` command line (also ``python -m minirn``)::

    minirn reproduce [--quick] [--out results]        # the paper's findings, end to end (--quick: results-quick)
    minirn tune                                        # choose each norm's recipe on validation data
    minirn train --norm bn --epochs 6                  # train one model: results-train/bn-seed0.npz
    minirn attack --checkpoint results-train/bn-seed0.npz --attacks fgsm,pgd --eps 0.05,0.1 --eval-stats batch
    minirn bench [--device gpu]                        # minirn against PyTorch (see minirn.bench)
    minirn convert --from authors ckpt.pth.tar --model resnet20 --norm RNT --out model.safetensors

Every setting of ``reproduce``, ``train`` and ``attack`` lives in one place,
:class:`~minirn.experiments.config.ReproduceConfig`: its defaults are the
options' defaults (the training recipe's are :class:`minirn.train.Recipe`'s),
and its ``validate`` checks the names and numbers.  ``train`` and ``attack``
build their model with :func:`minirn.models.build` and train it with
:func:`minirn.train.train_model`; only ``reproduce`` runs the experiment
pipeline, :mod:`minirn.experiments.reproduce`.

Every command writes only where ``--out`` points, by default into a
``results*/`` folder that ``.gitignore`` covers; a folder or file that holds
another configuration's results is never overwritten (:mod:`minirn.runs`).
Every model file is a model checkpoint (:func:`minirn.serialization.read_model`),
so ``attack`` reads those of ``train`` and ``reproduce`` alike.

Bad input (an unknown name, a non-positive number, a missing dataset, an
unreadable checkpoint) ends with one line ``minirn <command>: error: ...`` on
stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys

from minirn import backend, bridge, models, runs, serialization
from minirn.attacks import SUITES, evaluate
from minirn.bridge import AUTHORS_NORMS
from minirn.data import DatasetNotFoundError, load_dataset
from minirn.data.download import ENV_VAR, REMOTE_FILES, data_root, dataset_files
from minirn.experiments.config import (
    PRESETS,
    RECIPE_FIELDS,
    ReproduceConfig,
    attack_settings,
    full_config,
    quick_config,
)
from minirn.nn import EVAL_STATISTICS, norm_layers, set_norm_eval_stats
from minirn.train import ATTACK_MODES, AdversarialTraining, Recipe, train_model

#: ``--eval-stats`` of ``minirn attack``: name -> (mean, scale) for :func:`minirn.nn.set_norm_eval_stats`,
#: from the table :data:`minirn.nn.EVAL_STATISTICS`.
EVAL_STATS = {variant.name: variant.setting for variant in EVAL_STATISTICS}

#: Errors that mean "bad input", reported in one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, DatasetNotFoundError, serialization.CheckpointError, backend.DeviceError, OSError)

#: Where ``minirn train`` saves its model without ``--out`` (``.gitignore`` covers ``results*/``).
TRAIN_OUT = os.path.join("results-train", "{norm}-seed{seed}.npz")


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


def _input_normalization(text):
    """``--input-normalization``: "authors", "none" (None) or "MEANS/STDS", e.g. "0.1307/0.3081"."""
    if text in ("authors", "none"):
        return None if text == "none" else text
    if text.count("/") != 1:
        raise argparse.ArgumentTypeError(f"expected authors, none or MEANS/STDS (e.g. 0.1307/0.3081), got {text!r}")
    means, stds = text.split("/")
    try:
        mean = [float(v) for v in means.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers before the '/', got {means!r}") from None
    return {"mean": mean, "std": list(_positive_floats(stds))}


def _names(text):
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _norm(text):
    if text not in models.NORMS:
        raise argparse.ArgumentTypeError(f"unknown norm {text!r}; expected one of {', '.join(models.NORMS)}")
    return text


# --- option groups shared by the subcommands --------------------------------------------------------
# Options whose value is a ReproduceConfig field default to None ("not given"), so that the config's own
# default applies (or quick_config's, with --quick); the help shows the config's default.
DEFAULTS = ReproduceConfig()


def _option(parser, flag, field=None, text="", **kwargs):
    field = field or flag.lstrip("-").replace("-", "_")
    default = getattr(DEFAULTS, field)
    if default is None and field in RECIPE_FIELDS:
        shown = f"the norm's tuned recipe, else {getattr(Recipe, field)}"
    elif isinstance(default, tuple):
        shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    else:
        shown = default
    parser.add_argument(flag, dest=field, default=None, help=f"{text} (default {shown})".strip(), **kwargs)


def _add_data_options(parser, dataset_help=None):
    if dataset_help is None:
        _option(parser, "--dataset", text="mnist-5k (embedded), digits, mnist, fashion-mnist, cifar10")
    else:
        parser.add_argument("--dataset", default=None, help=dataset_help)
    parser.add_argument("--data-root", default=None, help="dataset folder (default $MINIRN_DATA or ~/.cache/minirn)")
    parser.add_argument("--download", action="store_true", help="download mnist / fashion-mnist / cifar10 if missing")


def _add_model_options(parser):
    _option(parser, "--model", text=models.MODEL_NAMES)
    _option(parser, "--p", type=_positive_float, text="RobustNorm's power p")
    parser.add_argument("--input-normalization", type=_input_normalization, default=None,
                        help="a Normalize first layer: authors (their (x - mean)/std for the dataset), none, or "
                             "MEANS/STDS such as 0.1307/0.3081 (default none; budgets stay in pixel units)")


def _add_preset_option(parser):
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="named settings that other options override: authors-mnist = --model resnet8 "
                             "--input-normalization authors --dataset mnist-5k (the authors' MNIST network)"
                             f", --out {PRESETS['authors-mnist']['out']}")


def _add_training_options(parser):
    _option(parser, "--epochs", type=_positive_int)
    _option(parser, "--batch-size", type=_positive_int, text="training batch size")
    _option(parser, "--lr", type=_positive_float, text=f"SGD learning rate (momentum {Recipe.momentum:g}, weight decay {Recipe.weight_decay:g}, cosine)")
    _option(parser, "--init", choices=models.INITS, text="weight initialisation: torch (PyTorch's default) or he (He-normal fan-out, the authors')")


def _add_attack_options(parser):
    _option(parser, "--attacks", type=_names, text="comma-separated: fgsm,pgd,bim,mim,cw,apgd-ce,apgd-dlr,apgd-t,square; suite = apgd-ce,apgd-t,square")
    _option(parser, "--eps", type=_positive_floats, text="comma-separated L∞ budgets for images in [0, 1]")
    _option(parser, "--pgd-steps", type=_positive_int, text="steps of PGD/BIM/MIM (step size 2.5 ε / steps)")


def _add_run_options(parser):
    _option(parser, "--device", text="cpu (NumPy) or gpu (CuPy)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minirn", description="BatchNorm vs RobustNorm under adversarial attack, from scratch.")
    commands = parser.add_subparsers(dest="command", metavar="{reproduce,tune,train,attack,bench}")

    rep = commands.add_parser("reproduce", help="train, attack and report the paper-style table and figures")
    _add_preset_option(rep)
    _add_data_options(rep)
    _add_model_options(rep)
    _option(rep, "--norms", type=_names, text="comma-separated: none,bn,rn,gn,ln")
    _add_training_options(rep)
    _option(rep, "--seeds", type=_positive_int, text="models per norm")
    _add_attack_options(rep)
    _option(rep, "--eval-examples", type=_positive_int, text="test examples attacked")
    _option(rep, "--eval-batch-size", type=_positive_int, text="batch size of the evaluation (matters for batch statistics)")
    _option(rep, "--suite", choices=tuple(SUITES),
            text="the attack ensemble of the 'suite' column: medium, fast, standard (AutoAttack's full budgets: "
                 "slow); for every row unless --batch-suite is given too")
    _option(rep, "--batch-suite", choices=tuple(SUITES),
            text="the ensemble for the 'batch' rows, whose attacks perturb whole batches")
    _option(rep, "--eval-variants", type=_names, text="eval-statistics variants of bn/rn: running,batch,running-mean")
    _option(rep, "--suite-eps", type=_positive_floats,
            text="the budgets (a subset of --eps) the suite attacks too; with --eps alone: every ε given")
    _option(rep, "--batch-suite-eps", type=_positive_floats,
            text="the budgets the suite attacks the 'batch' rows at (holding the headline budget); with "
                 "--eps or --suite-eps alone: the same as --suite-eps")
    _option(rep, "--sanity-examples", type=_positive_int, text="test examples of the sanity checks (every model)")
    _option(rep, "--validation", type=_positive_int, text="training images held out for validation")
    _option(rep, "--workers", type=_positive_int, text="processes training and attacking models in parallel")
    _add_run_options(rep)
    rep.add_argument("--out", default=None, help=f"output folder, one per configuration (default {DEFAULTS.out}; "
                                                 f"with --quick {quick_config().out})")
    rep.add_argument("--quick", action="store_true", help="a tiny smoke-test run on the 8x8 digits")
    rep.add_argument("--full", action="store_true",
                     help="the whole protocol: all 1,000 test images, 5 budgets, the standard suite at each, every "
                          "eval-statistics variant, larger sanity checks (slow: see the README)")
    rep.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")

    train = commands.add_parser("train", help="train one model and save it (weights and metadata) to --out")
    _add_data_options(train)
    _add_model_options(train)
    train.add_argument("--norm", type=_norm, default="bn", help="none, bn, rn, gn or ln (default bn)")
    _add_training_options(train)
    train.add_argument("--seed", type=_seed, default=0, help="initialisation and batch order (default 0)")
    train.add_argument("--adversarial-eps", type=_positive_float, default=None,
                       help="PGD adversarial training with this L∞ budget (default: clean training)")
    train.add_argument("--adversarial-steps", type=_positive_int, default=10, help="PGD steps of step size ε/4 (default 10)")
    train.add_argument("--attack-mode", choices=ATTACK_MODES, default=None,
                       help="mode of the model while the training attack is computed (default eval)")
    _add_run_options(train)
    train.add_argument("--out", default=None,
                       help="where to save the trained model (.npz; default " + TRAIN_OUT.format(norm="NORM", seed="SEED") + ")")
    train.add_argument("--checkpoint", default=None,
                       help="the per-epoch training checkpoint (default: --out with .ckpt.npz)")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")

    attack = commands.add_parser("attack", help="evaluate a model saved by 'minirn train' or 'minirn reproduce' under attack")
    attack.add_argument("--checkpoint", required=True,
                        help="a model of 'minirn train' or a checkpoint of 'minirn train' or 'minirn reproduce' (.npz), "
                             "or the .safetensors of 'minirn convert'")
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

    tune = commands.add_parser("tune", help="choose each norm's training recipe on validation data (writes recipes.json)")
    _add_preset_option(tune)
    _add_data_options(tune)
    _add_model_options(tune)
    _option(tune, "--norms", type=_names, text="comma-separated: none,bn,rn,gn,ln")
    tune.add_argument("--seeds", type=_positive_int, default=3, help="seeds per recipe (at least 2; default 3, the run's)")
    _option(tune, "--validation", type=_positive_int, text="training images held out for validation")
    _option(tune, "--workers", type=_positive_int, text="processes training in parallel")
    tune.add_argument("--out", default=None, help="the recipes file (default: minirn/experiments/recipes.json, which "
                                                  "reproduce reads)")
    tune.add_argument("--fresh", action="store_true",
                      help="train every trial again (default: read the trials the recipes file already holds)")

    convert = commands.add_parser("convert", help="write a model's weights as .safetensors in PyTorch's layout: "
                                                  "the authors' checkpoints (--from authors) or a minirn model")
    convert.add_argument("checkpoint", help="--from authors: their .pth/.pth.tar (needs PyTorch); "
                                            "--from minirn: a model of 'minirn train' or 'minirn reproduce' (.npz)")
    convert.add_argument("--from", dest="source", choices=("authors", "minirn"), required=True,
                         help="who wrote CHECKPOINT: the authors' code (github.com/awaisrauf/RobustNorm) or minirn")
    convert.add_argument("--model", default=None,
                         help="--from authors: their network, resnet20 (CIFAR-10) or resnet8 (their MNIST default)")
    convert.add_argument("--norm", choices=tuple(AUTHORS_NORMS), default=None,
                         help="--from authors: their --norm (" + ", ".join(AUTHORS_NORMS) + "); see docs/pytorch_bridge.md")
    convert.add_argument("--p", type=_positive_float, default=None,
                         help="--from authors: their --norm_power for RobustNorm (default 0.2, theirs)")
    convert.add_argument("--dataset", default=None,
                         help="--from authors: recorded in the description (default mnist for 1 channel, cifar10 for 3)")
    convert.add_argument("--input-normalization", type=_input_normalization, default="authors",
                         help="--from authors: the (x - mean)/std their model was trained on, which becomes the "
                              "converted model's first layer so that it takes pixels in [0, 1]: authors (default: "
                              "their script's for --dataset, MNIST 0.1307/0.3081), MEANS/STDS (comma-separated, one "
                              "per channel) or none")
    convert.add_argument("--out", required=True, help="the .safetensors file to write")

    commands.add_parser("bench", help="time minirn against PyTorch (options: minirn bench --help)", add_help=False)
    return parser


def _config(args, **fields) -> ReproduceConfig:
    """A validated ReproduceConfig from the options given on the command line (others keep their defaults)."""
    names = {f.name for f in dataclasses.fields(ReproduceConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    given.update(fields)
    if getattr(args, "no_progress", False):
        given["progress"] = False
    if "suite" in given and "batch_suite" not in given:
        given["batch_suite"] = None  # --suite alone: the same ensemble for every row
    if "eps" in given and "suite_eps" not in given:
        given["suite_eps"] = None  # the budgets asked for are attacked at full strength
    if ("eps" in given or "suite_eps" in given) and "batch_suite_eps" not in given:
        given["batch_suite_eps"] = None  # the batch rows too
    if ("eps" in given or "suite_eps" in given) and "headline" not in given:
        given["headline"] = None  # the middle of the suite's budgets
    if getattr(args, "quick", False) and getattr(args, "full", False):
        raise ValueError("--quick and --full contradict each other; pick one")
    if getattr(args, "preset", None) is not None:
        if getattr(args, "quick", False):
            raise ValueError(f"--quick and --preset {args.preset} contradict each other; pick one")
        given = {**PRESETS[args.preset], "preset": args.preset, **given}  # the options given override the preset
    if getattr(args, "quick", False):
        return quick_config(**given).validate()
    if getattr(args, "full", False):
        return full_config(**given).validate()
    return ReproduceConfig(**given).validate()


def _require_dataset(config):
    """Refuse, in the command line's words, a downloadable dataset that is not on disk (before any work starts)."""
    if config.dataset in REMOTE_FILES and not config.download:
        try:
            dataset_files(config.dataset, config.data_root)
        except DatasetNotFoundError:
            raise DatasetNotFoundError(
                f"dataset {config.dataset!r} is not on disk in {data_root(config.data_root) / config.dataset}; "
                f"pass --download to fetch it, or --data-root DIR (or ${ENV_VAR}) for the folder that holds it"
            ) from None


def _load_data(config):
    _require_dataset(config)
    return load_dataset(config.dataset, root=config.data_root, download=config.download)


# --- the subcommands -----------------------------------------------------------------------------------------
def _reproduce(args):
    from minirn.experiments import reproduce  # noqa: PLC0415  (only this subcommand runs the experiment pipeline)

    config = _config(args)
    _require_dataset(config)
    reproduce.run(config)


def _train(args):
    if args.attack_mode is not None and args.adversarial_eps is None:
        raise ValueError("--attack-mode needs --adversarial-eps (it only applies to adversarial training)")
    config = _config(args, norms=(args.norm,))
    recipe, recipe_source = config.recipe(args.norm)
    adversarial = None
    if args.adversarial_eps is not None:
        adversarial = AdversarialTraining(eps=args.adversarial_eps, steps=args.adversarial_steps,
                                          attack_mode=args.attack_mode or "eval")
    out = args.out or TRAIN_OUT.format(norm=args.norm, seed=args.seed)
    checkpoint = args.checkpoint or (out[:-4] if out.endswith(".npz") else out) + ".ckpt.npz"
    if os.path.abspath(checkpoint) == os.path.abspath(out):
        raise ValueError("--checkpoint must differ from --out (one is overwritten every epoch, the other is the result)")
    data = _load_data(config)
    meta = runs.model_meta(data, recipe, model=config.model, norm=args.norm, p=config.p, seed=args.seed,
                           adversarial=adversarial, **config.model_settings())
    runs.check_output_file(out, meta)
    if not args.resume:
        runs.check_output_file(checkpoint, meta)
    for path in (out, checkpoint):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print(f"minirn train: {config.model} with norm {args.norm} on {config.dataset} ({len(data.x_train)} train / "
          f"{len(data.x_test)} test), {recipe.epochs} epochs, lr {recipe.lr:g}, batch {recipe.batch_size}, "
          f"seed {args.seed} (recipe: {recipe_source})"
          + (f", PGD adversarial training ε={adversarial.eps:g} ({adversarial.attack_mode} mode)" if adversarial else ""))
    model, history = train_model(
        lambda: config.build_model(args.norm, meta["in_channels"], meta["num_classes"]), recipe,
        (data.x_train, data.y_train), args.seed, adversarial, test_data=(data.x_test, data.y_test),
        augment="cifar" if data.name == "cifar10" else None, checkpoint=checkpoint, checkpoint_meta=meta,
        resume=args.resume, progress=config.progress, description=f"{args.norm} seed {args.seed}",
    )
    print("| epoch | train loss | train acc (%) | test acc (%) | lr | seconds |\n|---|---|---|---|---|---|")
    for h in history:
        print(f"| {h['epoch']} | {h['train_loss']:.4f} | {100 * h['train_acc']:.1f} | {100 * h['test_acc']:.1f} "
              f"| {h['lr']:.4g} | {h['seconds']:.1f} |")
    result = {**meta, "test_accuracy": history[-1]["test_acc"], "history": history}
    serialization.save({"model": dict(model.state_dict()), "meta": result}, out)
    print(f"saved {out} (test accuracy {100 * result['test_accuracy']:.1f}%; training checkpoint {checkpoint})")


def _attack(args):
    _, meta = serialization.read_model(args.checkpoint)
    config = _config(args, model=meta["model"], norms=(meta["norm"],), p=float(meta["p"]),
                     dataset=args.dataset or meta["dataset"], suite_eps=None)  # attack has no suite column: every ε
    model = serialization.load_model(args.checkpoint, device=config.device)
    data = _load_data(config)
    shape = tuple(meta.get("shape") or (meta["in_channels"],) + tuple(data.shape[1:]))
    if tuple(data.shape) != shape or data.num_classes != meta["num_classes"]:
        raise ValueError(f"--dataset {config.dataset} has images {data.shape} and {data.num_classes} classes; the model "
                         f"was trained on {meta['dataset']} with images {shape} and {meta['num_classes']} classes")
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


def _tune(args):
    from minirn.experiments import tune  # noqa: PLC0415  (the experiment pipeline, as for reproduce)

    config = _config(args, seeds=3)  # checks --model, --p, --norms, --workers like reproduce does
    _require_dataset(config)
    out = args.out or tune.recipes_path(config.model)
    tune.tune(config.norms, data=_load_data(config), model=config.model, p=config.p, seeds=args.seeds,
              validation=config.validation, workers=config.workers, out=out, reuse=None if args.fresh else out,
              input_normalization=config.input_normalization_values(),
              command="python -m minirn " + shlex.join(args.argv))


def _convert(args):
    if not args.out.endswith(serialization.SAFETENSORS_SUFFIX):
        raise ValueError(f"--out must be a {serialization.SAFETENSORS_SUFFIX} file, got {args.out!r}")
    if os.path.abspath(args.out) == os.path.abspath(args.checkpoint):
        raise ValueError("--out must differ from CHECKPOINT")
    if args.source == "minirn":
        given = [flag for flag in ("model", "norm", "p", "dataset") if getattr(args, flag) is not None]
        given += ["input-normalization"] * (args.input_normalization != "authors")
        if given:
            raise ValueError(f"--{given[0]} applies to --from authors only (a minirn model records its own)")
        _, meta = serialization.read_model(args.checkpoint)
        model = serialization.load_model(args.checkpoint)
        source = f"{meta['model']}, norm {meta['norm']}"
    else:
        missing = [flag for flag in ("model", "norm") if getattr(args, flag) is None]
        if missing:
            raise ValueError(f"--from authors needs --{' and --'.join(missing)} (their checkpoints do not record them)")
        model, meta = bridge.convert_authors(args.checkpoint, args.model, args.norm,
                                             0.2 if args.p is None else args.p, args.dataset, args.input_normalization)
        source = f"their {args.model} with {args.norm}"
    bridge.save_weights(model, args.out, meta)
    stats = "-" if not norm_layers(model) else f"mean {meta.get('eval_mean')}, scale {meta.get('eval_scale')}"
    normalization = meta.get("input_normalization")
    print(f"minirn convert: wrote {args.out} ({source} -> minirn {meta['model']}, norm {meta['norm']}"
          + (f" p={meta['p']:g}" if meta["norm"] == "rn" else "")
          + (f" with the {meta.get('batch_norm_formula', 'standard')} formula" if meta["norm"] == "bn" else "")
          + f", eval statistics {stats}"
          + (f"; inputs (x - {normalization['mean']})/{normalization['std']}" if normalization else "") + ")")


COMMANDS = {"reproduce": _reproduce, "train": _train, "attack": _attack, "tune": _tune, "convert": _convert}


def _one_line(exc) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    backend.retain_freed_memory()  # minirn's own process: keep freed arrays for reuse (minirn.backend.memory)
    parser = build_parser()
    command = argv[0] if argv else None
    try:
        if command == "bench":  # minirn.bench has its own parser: forward the rest of the line
            return _bench(argv[1:])
        args = parser.parse_args(argv)
        args.argv = argv  # the command line as given, for the records that name it (tune's recipes file)
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
