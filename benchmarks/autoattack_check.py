"""Cross-check minirn's AutoAttack-style robust accuracy against torchattacks, on the models of a reproduce run.

For every complete training checkpoint ``<run>/checkpoints/<norm>-seed<seed>.npz`` of a
``python -m minirn reproduce`` run (small-cnn on mnist-5k, running statistics: ``model.eval()``),
on the run's evaluation images ``x_test[:examples]`` at each ε of the run (L∞):

* **minirn**: :func:`minirn.attacks.robust_accuracy` with ``suite=<--suite>`` and the run's extra
  attacks (FGSM; PGD, 10 steps of α = ε/4, random start), batches of 128 seeded ``seed + b`` as the
  run does; the per-example worst case.  Beside it, the run's own ``suite@ε`` from
  ``<run>/results.json`` (its ``--suite``: "medium" by default for these batch-independent models),
  where that file exists.
* **torchattacks** (independent code): the model copied into its PyTorch twin
  (:mod:`minirn.bench.torch_twins`), then AutoAttack's schedule: APGD-CE (100 steps, 1 restart),
  APGD-T (100 steps, 9 target classes) and Square (5000 queries, p_init 0.8), each run on the
  examples still robust; an example counts as robust only if it survives all three.

torchattacks' Square draws a window corner with ``random_int(0, h - s)``, which never returns
``h - s``: its windows never touch the last row and column.  ``ta`` is torchattacks as it is;
with ``--patched-square`` the script also runs Square with that draw covering ``[0, h - s]``
(minirn's draw), on the same survivors of APGD-CE and APGD-T, as ``ta_patched``.

Before attacking, the script checks that the twin works in float32 and predicts exactly minirn's
classes on these images (and that the logits agree to 1e-4).  It prints a table and the largest
|minirn − torchattacks| over the models, and writes the table as JSON to ``--out``
(default ``<run>/autoattack_check.json``).

    .venv/bin/python benchmarks/autoattack_check.py --run /tmp/run1 [--suite standard] [--examples 250]
        [--models none-seed0,bn-seed0] [--patched-square]

The standard suite is slow on a CPU (Square's 5000 queries on every robust example, in both
libraries): pick models with ``--models`` and watch the progress lines.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torchattacks

import minirn
from minirn import attacks, serialization
from minirn.bench import torch_twins
from minirn.data import load_dataset
from minirn.experiments.config import ReproduceConfig, attack_settings

CHECKPOINT = re.compile(r"^(?P<norm>[a-z]+)-seed(?P<seed>\d+)\.npz$")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_config(run):
    """The run's ReproduceConfig fields (from results.json if it exists, else the defaults) and its results."""
    path = os.path.join(run, "results.json")
    if not os.path.exists(path):
        return ReproduceConfig(), None
    with open(path) as f:
        results = json.load(f)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items()}
    return ReproduceConfig(**fields), results


def complete_checkpoints(run, epochs, wanted=None):
    """[(norm, seed, path)] of the checkpoints that hold all their epochs, sorted by norm then seed.

    epochs: ``{norm: epochs}`` (each norm trains with its own recipe)."""
    folder = os.path.join(run, "checkpoints")
    found = []
    for name in sorted(os.listdir(folder)):
        match = CHECKPOINT.match(name)
        if match is None or (wanted and name[: -len(".npz")] not in wanted):
            continue
        path = os.path.join(folder, name)
        try:
            epoch = serialization.load(path).get("epoch")
        except serialization.CheckpointError as exc:
            log(f"skip {name}: {exc}")
            continue
        if epoch != epochs[match["norm"]]:
            log(f"skip {name}: holds {epoch} of {epochs[match['norm']]} epochs (still training)")
            continue
        found.append((match["norm"], int(match["seed"]), path))
    order = {"none": 0, "bn": 1, "rn": 2}
    return sorted(found, key=lambda t: (order.get(t[0], 9), t[0], t[1]))


def load_model(path):
    return serialization.load_model(path).eval()   # the checkpoint describes its model; running statistics


def twin_of(model, norm, p, x):
    """The PyTorch twin of ``model`` in eval mode, after checking float32 and identical predictions on ``x``."""
    twin = torch_twins.load_minirn_state(torch_twins.small_cnn(norm, 1, 10, p), model).eval()
    dtypes = {str(t.dtype) for t in twin.state_dict().values() if t.is_floating_point()}
    assert dtypes == {"torch.float32"} and x.dtype == np.float32, (dtypes, x.dtype)
    with torch.no_grad(), minirn.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
        ours = np.asarray(model(minirn.tensor(x)).numpy())
    assert theirs.dtype == np.float32 and ours.dtype == np.float32, (theirs.dtype, ours.dtype)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
    disagree = int((theirs.argmax(1) != ours.argmax(1)).sum())
    assert disagree == 0, f"twin and minirn disagree on {disagree} clean predictions"
    return twin, float(np.abs(theirs - ours).max())


def with_every_window_corner(attack):
    """torchattacks' Square with its corner draw covering [low, high] instead of [low, high)."""
    attack.random_int = lambda low=0, high=1, shape=(1,): (low + (high - low + 1) * torch.rand(shape)).long()
    return attack


def survivors(twin, attack, x, y, alive):
    """``alive`` with the examples that ``attack`` (run on the alive ones only) misclassifies set False."""
    index = torch.nonzero(alive).flatten()
    if len(index) == 0:
        return alive.clone()
    x_adv = attack(x[index], y[index]).detach()
    assert float((x_adv - x[index]).abs().max()) <= attack.eps + 1e-6
    with torch.no_grad():
        ok = twin(x_adv).argmax(dim=1) == y[index]
    out = alive.clone()
    out[index] = ok
    return out


def torchattacks_worst_case(twin, x, y, eps, seed, patched):
    """{"ta": accuracy, "ta_patched": accuracy or None, "broken_by": {...}}: AutoAttack's schedule in torchattacks."""
    with torch.no_grad():
        alive = twin(x).argmax(dim=1) == y
    counts = {"clean": int(alive.sum())}
    schedule = [
        ("apgd-ce", torchattacks.APGD(twin, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed)),
        ("apgd-t", torchattacks.APGDT(twin, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=seed)),
    ]
    for name, attack in schedule:
        start = time.perf_counter()
        alive = survivors(twin, attack, x, y, alive)
        counts[name] = int(alive.sum())
        log(f"      torchattacks {name}: {counts[name]} robust ({time.perf_counter() - start:.0f} s)")
    before_square = alive
    start = time.perf_counter()
    square = torchattacks.Square(twin, norm="Linf", eps=eps, n_queries=5000, p_init=0.8, n_restarts=1, seed=seed)
    alive = survivors(twin, square, x, y, before_square)
    counts["square"] = int(alive.sum())
    log(f"      torchattacks square: {counts['square']} robust ({time.perf_counter() - start:.0f} s)")
    out = {"ta": counts["square"] / len(y), "ta_patched": None, "robust_after": counts}
    if patched:
        start = time.perf_counter()
        square = with_every_window_corner(torchattacks.Square(twin, norm="Linf", eps=eps, n_queries=5000, p_init=0.8,
                                                              n_restarts=1, seed=seed))
        patched_alive = survivors(twin, square, x, y, before_square)
        counts["square_patched"] = int(patched_alive.sum())
        out["ta_patched"] = counts["square_patched"] / len(y)
        log(f"      torchattacks square (patched): {counts['square_patched']} robust "
            f"({time.perf_counter() - start:.0f} s)")
    return out


def reported_suite(results, norm, seed, eps):
    """The run's own ``suite@eps`` (running statistics: its first variant), or None."""
    if results is None:
        return None
    for record in results["runs"]:
        if record["norm"] == norm and record["seed"] == seed:
            return record["variants"][0]["accuracy"].get(f"suite@{eps:g}")
    return None


def difference(a, b):
    return None if a is None or b is None else a - b


def print_table(rows, suite, run_suite):
    def pct(v):
        return "    -" if v is None else f"{100 * v:5.1f}"

    def diff(v):
        return "     -" if v is None else f"{100 * v:+6.1f}"

    print(f"\nrobust accuracy (%), running statistics. minirn: suite={suite} + FGSM + PGD-10 (this script); "
          f"run: the run's reported suite@eps (suite={run_suite}); ta: torchattacks APGD-CE + APGD-T + Square "
          "as released (Square never touches the last row/column); ta*: the same with Square's corner draw patched")
    head = (f"{'model':<12}{'eps':>6}{'clean':>7}{'minirn':>8}{'run':>7}{'ta':>7}{'ta*':>7}"
            f"{'mn-ta':>8}{'mn-ta*':>8}{'run-ta':>8}{'mn-run':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['norm'] + '-s' + str(r['seed']):<12}{r['eps']:>6g}{pct(r['clean']):>7}{pct(r['minirn']):>8}"
              f"{pct(r['run_reported']):>7}{pct(r['ta']):>7}{pct(r['ta_patched']):>7}"
              f"{diff(r['minirn_minus_ta']):>8}{diff(r['minirn_minus_ta_patched']):>8}"
              f"{diff(r['run_minus_ta']):>8}{diff(r['minirn_minus_run']):>8}")


def max_abs(rows, key):
    values = [abs(r[key]) for r in rows if r[key] is not None]
    return max(values) if values else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the reproduce run's output folder")
    parser.add_argument("--suite", default="standard", choices=tuple(attacks.SUITES))
    parser.add_argument("--examples", type=int, default=None, help="test images (default: the run's eval_examples)")
    parser.add_argument("--models", default="", help="comma-separated, e.g. none-seed0,bn-seed1 (default: all)")
    parser.add_argument("--patched-square", action="store_true", help="also run torchattacks' Square patched")
    parser.add_argument("--skip-torchattacks", action="store_true", help="minirn only (a quick look)")
    parser.add_argument("--skip-minirn", action="store_true", help="torchattacks only (run minirn separately)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="JSON output (default <run>/autoattack_check.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_path = args.out or os.path.join(args.run, "autoattack_check.json")

    config, results = run_config(args.run)
    wanted = {m.strip() for m in args.models.split(",") if m.strip()}
    epochs = {norm: (results["recipes"][norm]["epochs"] if results and "recipes" in results else config.recipe(norm)[0].epochs)
              for norm in config.norms}
    checkpoints = complete_checkpoints(args.run, epochs, wanted)
    args.examples = args.examples or config.eval_examples
    if not checkpoints:
        sys.exit(f"no complete checkpoint in {args.run}/checkpoints")
    data = load_dataset(config.dataset)
    x, y = data.x_test[: args.examples], data.y_test[: args.examples]
    tx, ty = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y)).long()
    eps_list = config.suite_budgets()  # the budgets the run attacked with its suite
    extra = attack_settings(config)  # FGSM; PGD 10 steps, α = ε/4, random start: what the run adds to its suite
    assert extra == {"fgsm": None, "pgd": {"steps": 10, "alpha_factor": 0.25, "random_start": True}}, extra
    log(f"{len(checkpoints)} model(s): {', '.join(f'{n}-seed{s}' for n, s, _ in checkpoints)}; "
        f"{len(y)} examples, eps {eps_list}, suite {args.suite}"
        + ("" if results else " (no results.json yet: the run's numbers are left out)"))

    rows, checks = [], {}
    for norm, seed, path in checkpoints:
        model = load_model(path)
        twin, logit_gap = twin_of(model, norm, config.p, x)
        checks[f"{norm}-seed{seed}"] = {"max_logit_difference": logit_gap, "predictions_equal": True}
        log(f"{norm}-seed{seed}: twin float32, same clean predictions, max |logit difference| {logit_gap:.2e}")
        start = time.perf_counter()
        if args.skip_minirn:
            clean = float(np.mean(np.asarray(twin(tx).argmax(dim=1) == ty)))
            nan = [None] * len(eps_list)
            ours = {"clean_accuracy": clean, "robust_accuracy": nan, "broken_by": nan}
        else:
            ours = attacks.robust_accuracy(model, x, y, eps_list, suite=args.suite, attacks=extra,
                                           batch_size=config.eval_batch_size, seed=seed, progress=True)
        log(f"  minirn: clean {ours['clean_accuracy']:.3f}, robust {ours['robust_accuracy']} "
            f"({time.perf_counter() - start:.0f} s)")
        for k, eps in enumerate(eps_list):
            theirs = {"ta": None, "ta_patched": None, "robust_after": None}
            if not args.skip_torchattacks:
                log(f"  torchattacks eps {eps:g}")
                theirs = torchattacks_worst_case(twin, tx, ty, eps, seed, args.patched_square)
            run_value = reported_suite(results, norm, seed, eps)
            mine = ours["robust_accuracy"][k]
            rows.append({
                "norm": norm, "seed": seed, "eps": eps, "clean": ours["clean_accuracy"], "minirn": mine,
                "run_reported": run_value, "ta": theirs["ta"], "ta_patched": theirs["ta_patched"],
                "minirn_minus_ta": difference(mine, theirs["ta"]),
                "minirn_minus_ta_patched": difference(mine, theirs["ta_patched"]),
                "run_minus_ta": difference(run_value, theirs["ta"]),
                "minirn_minus_run": difference(mine, run_value),
                "minirn_broken_by": ours["broken_by"][k], "ta_robust_after": theirs["robust_after"],
            })
        print_table(rows, args.suite, config.suite)   # the table so far, after each model
        _write(out_path, args, config, rows, checks)

    maxima = {key: max_abs(rows, key) for key in
              ("minirn_minus_ta", "minirn_minus_ta_patched", "run_minus_ta", "minirn_minus_run")}
    print("\nmax |difference| over models and eps (points): "
          + ", ".join(f"{k} {'-' if v is None else f'{100 * v:.1f}'}" for k, v in maxima.items()))
    _write(out_path, args, config, rows, checks, maxima)
    log(f"wrote {out_path}")


def _write(path, args, config, rows, checks, maxima=None):
    payload = {
        "command": " ".join(sys.argv), "suite": args.suite, "run_suite": config.suite, "examples": args.examples,
        "eps": config.suite_budgets(), "statistics": "running (model.eval())",
        "torchattacks": {"version": torchattacks.__version__, "apgd-ce": "APGD(loss='ce', steps=100, n_restarts=1)",
                         "apgd-t": "APGDT(steps=100, n_classes=10, 9 targets)",
                         "square": "Square(n_queries=5000, p_init=0.8)",
                         "ta": "as released: window corners in [0, h - s)",
                         "ta_patched": "Square corner draw patched to [0, h - s]" if args.patched_square else None},
        "twin_checks": checks, "rows": rows, "max_abs_difference": maxima,
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v))


if __name__ == "__main__":
    main()
