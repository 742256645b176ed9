"""Tests of minirn/cli.py: the train / attack / reproduce / bench subcommands and their error handling."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minirn
from minirn import bench, cli, models, runs
from minirn.data import load_dataset
from minirn.experiments import reproduce as reproduce_module
from minirn.train import Recipe, accuracy, train_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys):
    """(exit status, stdout, stderr) of ``minirn argv``."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, command, *words):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"minirn {command}".rstrip() + ": error: "), err
    for word in words:
        assert word in lines[0], err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A BatchNorm small_cnn trained one epoch on digits with ``minirn train``: (folder, model path)."""
    folder = tmp_path_factory.mktemp("train")
    path = folder / "bn.npz"
    status = cli.main(["train", "--dataset", "digits", "--norm", "bn", "--epochs", "1", "--lr", "0.2",
                       "--seed", "0", "--out", str(path), "--no-progress"])
    assert status == 0
    return folder, path


# --- the parser --------------------------------------------------------------------------------------------
def test_no_subcommand_prints_the_help_and_fails(capsys):
    status, _, err = run([], capsys)
    assert status == 2
    for command in ("reproduce", "train", "attack", "bench"):
        assert command in err


def test_train_and_attack_do_not_need_the_experiment_pipeline():
    code = "import sys, minirn.cli; print('minirn.experiments.reproduce' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "False"


def test_help_exits_zero(capsys):
    status, out, _ = run(["train", "--help"], capsys)
    assert status == 0 and "--adversarial-eps" in out and "else 128)" in out


def test_quick_keeps_explicit_options_even_when_they_equal_the_defaults(monkeypatch, tmp_path, capsys):
    seen = []
    monkeypatch.setattr(reproduce_module, "run", seen.append)
    defaults = reproduce_module.ReproduceConfig()
    assert run(["reproduce", "--quick", "--epochs", Recipe.epochs, "--out", tmp_path, "--no-progress"], capsys)[0] == 0
    assert run(["reproduce", "--norms", "bn,rn", "--eps", "0.05,0.2", "--out", tmp_path], capsys)[0] == 0
    quick, full = seen
    assert quick.quick and quick.dataset == "digits" and quick.epochs == Recipe.epochs and not quick.progress
    assert quick.seeds == reproduce_module.quick_config().seeds
    assert not full.quick and full.dataset == defaults.dataset and full.epochs == defaults.epochs
    assert full.norms == ("bn", "rn") and full.eps == (0.05, 0.2) and full.out == str(tmp_path)


def test_interrupt_is_one_line_and_status_130(monkeypatch, tmp_path, capsys):
    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce_module, "run", interrupted)
    status, _, err = run(["reproduce", "--quick", "--out", tmp_path], capsys)
    assert status == 130 and "--resume" in err and "Traceback" not in err


# --- bad input: one line, exit status 2, for every subcommand ---------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["reproduce", "--dataset", "imagenet"], ["unknown dataset", "imagenet"]),
    (["reproduce", "--model", "vgg16"], ["unknown model", "vgg16"]),
    (["reproduce", "--model", "resnet21"], ["6n+2"]),
    (["reproduce", "--norms", "bn,batchnorm"], ["unknown norm", "batchnorm"]),
    (["reproduce", "--attacks", "fgsm,deepfool"], ["unknown attack", "deepfool"]),
    (["reproduce", "--eps", "0.1,0"], ["--eps", "positive"]),
    (["reproduce", "--eps", "0.1,-0.2"], ["--eps", "positive"]),
    (["reproduce", "--eps", "8"], ["--eps 8", "whole input range", "did you mean 8/255"]),  # 0-255 units
    (["reproduce", "--eps", "1"], ["--eps 1", "whole input range"]),
    (["reproduce", "--suite", "huge"], ["--suite", "invalid choice"]),
    (["reproduce", "--eval-variants", "running,median"], ["unknown eval statistics", "median"]),
    (["reproduce", "--epochs", "0"], ["--epochs", "positive"]),
    (["reproduce", "--seeds", "two"], ["--seeds"]),
    (["reproduce", "--device", "tpu"], ["unknown device", "tpu"]),
    (["train", "--dataset", "imagenet"], ["unknown dataset"]),
    (["train", "--model", "mlp"], ["unknown model", "mlp"]),
    (["train", "--norm", "xn"], ["unknown norm", "xn"]),
    (["train", "--epochs", "0"], ["--epochs", "positive"]),
    (["train", "--epochs", "-3"], ["--epochs"]),
    (["train", "--lr", "0"], ["--lr", "positive"]),
    (["train", "--p", "-1"], ["--p", "positive"]),
    (["train", "--adversarial-eps", "0"], ["--adversarial-eps", "positive"]),
    (["train", "--attack-mode", "train"], ["--attack-mode", "--adversarial-eps"]),
    (["train", "--adversarial-eps", "0.1", "--attack-mode", "test"], ["--attack-mode", "invalid choice"]),
    (["frobnicate"], ["invalid choice"]),
    (["bench", "--workloads", "vgg-bn", "--no-memory"], ["unknown workload", "vgg-bn"]),
    (["bench", "--device", "tpu"], ["unknown device"]),
])
def test_bad_input_is_one_clear_line(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "torch_available", lambda device: False)  # spare the bench cases importing torch
    if argv[0] == "train":
        argv = [*argv, "--out", tmp_path / "model.npz"]
    if argv[0] == "reproduce":
        argv = [*argv, "--out", tmp_path / "out"]
    status, _, err = run(argv, capsys)
    assert_one_line_error(status, err, "" if argv[0] == "frobnicate" else argv[0], *words)
    assert not (tmp_path / "model.npz").exists()


@pytest.mark.parametrize("command", ["reproduce", "train", "attack"])
def test_missing_dataset_without_download(command, trained, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [command, "--dataset", "mnist", "--data-root", empty]
    argv += {"reproduce": ["--out", tmp_path / "out"], "train": ["--out", tmp_path / "m.npz"],
             "attack": ["--checkpoint", trained[1]]}[command]
    status, _, err = run(argv, capsys)
    assert_one_line_error(status, err, command, "mnist", "not on disk", "--download")


def test_unreadable_checkpoints(trained, tmp_path, capsys):
    folder, path = trained
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    no_meta = tmp_path / "no_meta.npz"
    minirn.save({"model": {"w": np.zeros(2)}}, no_meta)
    old_checkpoint = tmp_path / "old_checkpoint.npz"  # a training checkpoint from before checkpoints had a 'meta'
    minirn.save({"model": minirn.load(path)["model"], "optimizer": {}, "epoch": 1, "seed": 0}, old_checkpoint)
    bad_meta = tmp_path / "bad_meta.npz"
    meta = dict(minirn.load(path)["meta"], in_channels="one")
    minirn.save({"model": minirn.load(path)["model"], "meta": meta}, bad_meta)
    wrong_weights = tmp_path / "wrong_weights.npz"
    minirn.save({"model": {"w": np.zeros(2)}, "meta": minirn.load(path)["meta"]}, wrong_weights)
    cases = [
        (tmp_path / "missing.npz", ["does not exist"]),
        (garbage, ["not a readable minirn checkpoint"]),
        (foreign, ["not a minirn checkpoint"]),
        (no_meta, ["not a model checkpoint"]),
        (old_checkpoint, ["training checkpoint of an older minirn"]),
        (bad_meta, ["in_channels"]),
        (wrong_weights, ["does not fit"]),
    ]
    for checkpoint, words in cases:
        status, _, err = run(["attack", "--checkpoint", checkpoint], capsys)
        assert_one_line_error(status, err, "attack", *words)


@pytest.mark.parametrize("argv, words", [
    (["--eps", "0"], ["--eps"]),
    (["--eps", "8"], ["--eps 8", "did you mean 8/255"]),
    (["--attacks", "pgd,boundary"], ["unknown attack", "boundary"]),
    (["--eval-stats", "population"], ["--eval-stats", "invalid choice"]),
    (["--examples", "0"], ["--examples"]),
    (["--dataset", "imagenet"], ["unknown dataset"]),
    (["--dataset", "mnist-5k"], ["(1, 28, 28)", "(1, 8, 8)"]),  # trained on 8x8 digits
])
def test_attack_bad_input(argv, words, trained, capsys):
    status, _, err = run(["attack", "--checkpoint", trained[1], *argv], capsys)
    assert_one_line_error(status, err, "attack", *words)


def test_errors_from_a_real_process(tmp_path):
    """``python -m minirn``: exit status 2 and a one-line message, no traceback."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    for argv in (["train", "--epochs", "0", "--out", "m.npz"], ["attack", "--checkpoint", "garbage.npz"]):
        done = subprocess.run([sys.executable, "-m", "minirn", *argv], capture_output=True, text=True, cwd=tmp_path,
                              env=env, timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith(f"minirn {argv[0]}: error: ")


# --- train and attack, end to end ----------------------------------------------------------------------------
def test_train_saves_a_model_with_its_metadata(trained, capsys):
    folder, path = trained
    saved = minirn.load(path)
    meta = saved["meta"]
    for key, value in {"dataset": "digits", "model": "small-cnn", "norm": "bn", "p": 0.2, "in_channels": 1,
                       "num_classes": 10, "epochs": 1, "seed": 0, "lr": 0.2,
                       "minirn_version": minirn.__version__}.items():
        assert meta[key] == value, key
    assert len(meta["history"]) == 1 and meta["history"][0]["test_acc"] == meta["test_accuracy"]
    # the saved weights are the trained model: they give the recorded test accuracy
    data = load_dataset("digits")
    model = models.small_cnn(norm="bn")
    model.load_state_dict(saved["model"])
    assert accuracy(model, data.x_test, data.y_test) == meta["test_accuracy"]
    assert meta["test_accuracy"] > 0.5
    assert os.path.exists(folder / "bn.ckpt.npz")  # the per-epoch training checkpoint, for --resume


def test_train_resume_reuses_the_checkpoint(trained, tmp_path, capsys):
    folder, path = trained
    again = tmp_path / "again.npz"
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--lr", "0.2", "--out", again,
            "--checkpoint", folder / "bn.ckpt.npz", "--resume", "--no-progress"]
    status, out, _ = run(argv, capsys)
    assert status == 0 and "| 1 |" in out
    first, second = minirn.load(path), minirn.load(again)
    assert first["meta"]["history"] == second["meta"]["history"]  # seconds included: nothing was retrained
    for key, value in first["model"].items():
        np.testing.assert_array_equal(second["model"][key], value)
    status, _, err = run([*argv[:-1], "--seed", "1"], capsys)  # another seed cannot continue this run
    assert_one_line_error(status, err, "train", "seed")


def test_train_passes_adversarial_training_to_fit(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_fit(model, train_data, epochs, optimizer, scheduler, adversarial, seed, **kwargs):
        calls.append((epochs, scheduler.T_max, adversarial, seed, kwargs))
        return [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.25, "lr": 0.1, "seconds": 0.0}]

    monkeypatch.setattr("minirn.train.fit", fake_fit)  # what train_model calls after seed, model, SGD, schedule
    out = tmp_path / "sub" / "adv.npz"
    status, out_text, err = run(["train", "--dataset", "digits", "--norm", "rn", "--p", "0.5", "--epochs", "3",
                                 "--adversarial-eps", "0.1", "--adversarial-steps", "2", "--attack-mode", "train",
                                 "--seed", "4", "--batch-size", "32", "--out", out], capsys)
    assert status == 0, err
    ((epochs, t_max, adversarial, seed, kwargs),) = calls
    assert (epochs, t_max, seed) == (3, 3, 4)
    assert (adversarial.eps, adversarial.steps, adversarial.attack_mode) == (0.1, 2, "train")
    assert kwargs["batch_size"] == 32 and kwargs["checkpoint"] == str(tmp_path / "sub" / "adv.ckpt.npz")
    assert "| 1 | 1.0000 | 50.0 | 25.0 |" in out_text
    meta = minirn.load(out)["meta"]
    expected = {"eps": 0.1, "alpha": 0.025, "steps": 2, "attack_mode": "train", "random_start": True}
    assert {key: meta["adversarial"][key] for key in expected} == expected  # every field of AdversarialTraining
    assert meta["norm"] == "rn" and meta["p"] == 0.5 and meta["test_accuracy"] == 0.25
    status, _, err = run(["train", "--dataset", "digits", "--out", out, "--checkpoint", out], capsys)
    assert_one_line_error(status, err, "train", "--checkpoint must differ from --out")


def test_attack_prints_a_table_and_writes_json(trained, tmp_path, capsys):
    _, path = trained
    report = tmp_path / "attack.json"
    status, out, err = run(["attack", "--checkpoint", path, "--attacks", "fgsm,pgd", "--eps", "0.05,0.3",
                            "--pgd-steps", "3", "--eval-stats", "running-mean", "--examples", "40",
                            "--batch-size", "20", "--json", report, "--no-progress"], capsys)
    assert status == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| attack")]
    assert [r.split("|")[1].strip() for r in rows] == ["clean", "fgsm", "fgsm", "pgd", "pgd", "worst case", "worst case"]
    result = json.loads(report.read_text())
    evaluation = result["evaluation"]
    assert result["eval_stats"] == "running-mean" and result["meta"]["norm"] == "bn"
    assert evaluation["config"]["norm_eval_stats"] == ["running", "batch"]
    assert evaluation["config"]["batch_size"] == 20 and evaluation["config"]["n_examples"] == 40
    assert evaluation["eps"] == [0.05, 0.3]
    assert evaluation["config"]["attacks"]["pgd"]["steps"] == 3
    assert f"| clean | 0 | {100 * evaluation['clean_accuracy']:.1f} |" in out
    assert evaluation["accuracy"]["pgd"][1] < evaluation["clean_accuracy"]  # ε = 0.3 on 8x8 digits hurts


def test_bench_is_forwarded(capsys):
    status, out, _ = run(["bench", "--help"], capsys)
    assert status == 0 and "minirn bench" in out and "--workloads" in out


def test_attack_runs_the_suite(trained, capsys):
    """``--attacks suite`` expands to AutoAttack's three attacks, whose worst case is never above PGD's."""
    _, path = trained
    status, out, err = run(["attack", "--checkpoint", path, "--attacks", "pgd,suite", "--eps", "0.2", "--pgd-steps", "3",
                            "--examples", "24", "--batch-size", "24", "--no-progress"], capsys)
    assert status == 0, err
    rows = {line.split("|")[1].strip(): float(line.split("|")[3]) for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| attack")}
    assert {"pgd", "apgd-ce", "apgd-t", "square", "worst case"} <= set(rows)
    assert rows["worst case"] <= min(rows["pgd"], rows["apgd-ce"], rows["apgd-t"], rows["square"])


# --- one configuration per output, one checkpoint format ------------------------------------------------------
def test_quick_and_full_runs_default_to_their_own_folders(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(reproduce_module, "run", seen.append)
    for argv in (["reproduce", "--quick"], ["reproduce"], ["reproduce", "--quick", "--out", "mine"]):
        assert run(argv, capsys)[0] == 0
    assert [config.out for config in seen] == ["results-quick", "results", "mine"]
    status, out, _ = run(["reproduce", "--help"], capsys)
    assert "results-quick" in out


def test_default_outputs_are_ignored_by_git(tmp_path):
    if not os.path.isdir(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    paths = ["results/run.json", "results-quick/results.md", cli.TRAIN_OUT.format(norm="bn", seed=0)]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.stdout.split() == paths


def test_train_writes_only_into_its_default_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(["train", "--dataset", "digits", "--epochs", "1", "--seed", "2", "--no-progress"], capsys)
    assert status == 0, err
    assert sorted(os.listdir(tmp_path)) == ["results-train"]
    assert sorted(os.listdir(tmp_path / "results-train")) == ["bn-seed2.ckpt.npz", "bn-seed2.npz"]


def test_train_refuses_to_overwrite_a_model_of_another_configuration(trained, tmp_path, capsys):
    folder, path = trained
    before = path.read_bytes()
    status, _, err = run(["train", "--dataset", "digits", "--epochs", "1", "--lr", "0.3", "--out", path,
                          "--no-progress"], capsys)
    assert_one_line_error(status, err, "train", str(path), "lr 0.2 there, 0.3 here", "--out")
    assert path.read_bytes() == before


def test_resume_with_another_configuration_names_the_difference(trained, tmp_path, capsys):
    folder, _ = trained
    status, _, err = run(["train", "--dataset", "digits", "--epochs", "2", "--lr", "0.2", "--out", tmp_path / "m.npz",
                          "--checkpoint", folder / "bn.ckpt.npz", "--resume", "--no-progress"], capsys)
    assert_one_line_error(status, err, "train", "another configuration", "epochs 1 there, 2 here")


def test_attack_reads_training_and_reproduce_checkpoints(trained, tmp_path, capsys):
    folder, path = trained
    data = load_dataset("digits")
    # a checkpoint as minirn reproduce writes it: train_model with a checkpoint that records the run
    checkpoint = tmp_path / "results" / "checkpoints" / "rn-seed0.npz"
    checkpoint.parent.mkdir(parents=True)
    recipe = Recipe(epochs=1, batch_size=64, lr=0.2)
    meta = runs.model_meta(data, recipe, model="small-cnn", norm="rn", p=0.2, seed=0)
    train_model(lambda: models.small_cnn(norm="rn", p=0.2), recipe, (data.x_train[:256], data.y_train[:256]),
                checkpoint=checkpoint, checkpoint_meta=meta, progress=False)
    for model_file, norm in ((checkpoint, "rn"), (folder / "bn.ckpt.npz", "bn")):
        status, out, err = run(["attack", "--checkpoint", model_file, "--attacks", "fgsm", "--eps", "0.1",
                                "--examples", "16", "--no-progress"], capsys)
        assert status == 0, err
        assert f"norm {norm}, trained on digits" in out and "| fgsm | 0.1 |" in out


def test_load_model_round_trip(trained):
    folder, path = trained
    meta = minirn.load(path)["meta"]
    data = load_dataset("digits")
    for model_file in (path, folder / "bn.ckpt.npz"):  # the saved model and the last training checkpoint
        model = minirn.load_model(model_file)
        assert not model.training
        assert accuracy(model, data.x_test, data.y_test) == meta["test_accuracy"]


# --- messages ------------------------------------------------------------------------------------------------
def test_missing_dataset_names_the_command_line_flags(tmp_path, capsys):
    status, _, err = run(["reproduce", "--dataset", "mnist", "--data-root", tmp_path, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(status, err, "reproduce", "--data-root", "--download", str(tmp_path / "mnist"))
    assert "root=..." not in err and not (tmp_path / "out").exists()


def test_train_norm_error_asks_for_one_norm(tmp_path, capsys):
    status, _, err = run(["train", "--norm", "bn,rn", "--out", tmp_path / "m.npz"], capsys)
    assert_one_line_error(status, err, "train", "unknown norm 'bn,rn'", "expected one of none, bn, rn")
    assert "comma-separated" not in err


def test_attack_help_shows_one_default_for_the_dataset(capsys):
    status, out, _ = run(["attack", "--help"], capsys)
    dataset_help = " ".join(out.split("options:", 1)[1].split("--dataset DATASET", 1)[1].split("--data-root", 1)[0].split())
    assert status == 0 and dataset_help.count("default") == 1 and "trained on" in dataset_help


def test_tune_records_the_command_line_as_given(monkeypatch, tmp_path):
    from minirn.experiments import tune

    seen = {}
    monkeypatch.setattr(tune, "tune", lambda norms, **kwargs: seen.update(norms=norms, **kwargs))
    out = str(tmp_path / "recipes.json")
    assert cli.main(["tune", "--dataset", "digits", "--norms", "bn,rn", "--seeds", "2", "--out", out, "--fresh"]) == 0
    assert seen["command"] == f"python -m minirn tune --dataset digits --norms bn,rn --seeds 2 --out {out} --fresh"
    assert seen["norms"] == ("bn", "rn") and seen["seeds"] == 2 and seen["out"] == out and seen["reuse"] is None


@pytest.mark.parametrize("argv, suite, batch_suite", [
    ([], "medium", "fast"),                                         # the defaults: a cheaper suite for 'batch' rows
    (["--suite", "standard"], "standard", None),                    # --suite alone: every row
    (["--suite", "medium", "--batch-suite", "smoke"], "medium", "smoke"),
    (["--full"], "standard", None),
])
def test_reproduce_suite_options(argv, suite, batch_suite):
    config = cli._config(cli.build_parser().parse_args(["reproduce", *argv]))
    assert (config.suite, config.batch_suite) == (suite, batch_suite)


# --- --preset authors-mnist -------------------------------------------------------------------------------------
def test_the_authors_preset_is_their_mnist_network_and_options_override_it(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(reproduce_module, "run", seen.append)
    assert run(["reproduce", "--preset", "authors-mnist"], capsys)[0] == 0
    assert run(["reproduce", "--preset", "authors-mnist", "--seeds", "2", "--out", "mine"], capsys)[0] == 0
    preset, overridden = seen
    assert (preset.model, preset.dataset, preset.out, preset.preset) == ("resnet8", "mnist-5k", "results-authors-mnist",
                                                                         "authors-mnist")
    assert preset.input_normalization_values() == {"mean": [0.1307], "std": [0.3081]}
    assert preset.expected_clean_accuracy == 0.95 and preset.recipe("bn")[1].endswith("(recipes-resnet8.json)")
    assert preset.suite_budgets() == list(cli.DEFAULTS.suite_budgets()) and preset.eval_examples == 500  # same evaluation
    assert (overridden.seeds, overridden.out, overridden.model) == (2, "mine", "resnet8")
    full = cli._config(cli.build_parser().parse_args(["reproduce", "--preset", "authors-mnist", "--full"]))
    assert (full.preset, full.model, full.full, full.suite) == ("authors-mnist", "resnet8", True, "standard")


def test_preset_with_quick_is_refused_in_one_line(capsys):
    status, _, err = run(["reproduce", "--preset", "authors-mnist", "--quick"], capsys)
    assert status == 2 and "--quick and --preset authors-mnist contradict" in err


def test_tune_with_the_preset_searches_resnet8_on_standardised_pixels(monkeypatch):
    from minirn.experiments import tune

    seen = {}
    monkeypatch.setattr(tune, "tune", lambda norms, **kwargs: seen.update(norms=norms, **kwargs))
    assert cli.main(["tune", "--preset", "authors-mnist"]) == 0
    assert seen["model"] == "resnet8" and seen["input_normalization"] == {"mean": [0.1307], "std": [0.3081]}
    assert seen["out"] == tune.recipes_path("resnet8") and seen["out"].endswith("recipes-resnet8.json")
