"""Tests of minirn/experiments/figures.py: legends that cover no data, titles that say what was measured, every norm shown."""
import numpy as np
import pytest

from minirn.experiments import figures

EPS = [0.05, 0.1]
VARIANTS = ["none / -", "bn / running", "bn / batch", "rn / running"]


def summary_row(variant, seeds=3, base=0.9):
    row = {"model": "small-cnn", "variant": variant, "seeds": seeds, "clean": [base, 0.02]}
    for attack in ("fgsm", "pgd", "suite"):
        for k, eps in enumerate(EPS):
            # identical means for every variant: lines that would hide each other without the offsets
            row[f"{attack}@{eps:g}"] = [0.5 / (k + 1), 0.05 * (k + 1)]
    return row


SUMMARY = [summary_row(v) for v in VARIANTS]


def shift_rows(scale=1.0):
    return [{"layer": name, "kind": "var", "clean_mean_shift": 0.01 * scale, "adversarial_mean_shift": 0.3 * i * scale,
             "clean_scale_ratio": 1.0, "adversarial_scale_ratio": 0.8 * scale} for i, name in enumerate(["1", "4", "7"])]


def boxes(fig):
    """The figure's legends' and axes' window extents, after a layout pass."""
    fig.draw_without_rendering()
    legends = [legend.get_window_extent() for legend in fig.legends]
    axes = [ax.get_window_extent() for ax in fig.get_axes()]
    return legends, axes, fig.bbox


def assert_legends_cover_nothing(fig):
    legends, axes, figure_box = boxes(fig)
    assert legends, "the figure has no legend"
    for legend in legends:
        assert not any(legend.overlaps(ax) for ax in axes), "a legend covers a data area"
        # inside the figure (not cut off at the border), with a pixel of tolerance
        assert legend.x0 >= figure_box.x0 - 1 and legend.x1 <= figure_box.x1 + 1
        assert legend.y0 >= figure_box.y0 - 1 and legend.y1 <= figure_box.y1 + 1


@pytest.mark.parametrize("attacks", [["pgd"], ["fgsm", "pgd", "suite"]])
def test_accuracy_vs_eps_has_one_legend_outside_every_panel(attacks):
    fig = figures.accuracy_vs_eps(SUMMARY, attacks, EPS, seeds=3, examples=250)
    assert_legends_cover_nothing(fig)
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == VARIANTS
    assert all(ax.get_legend() is None for ax in fig.get_axes())


def test_accuracy_vs_eps_title_gives_seeds_and_images():
    fig = figures.accuracy_vs_eps(SUMMARY, ["pgd"], EPS, seeds=5, examples=400, title="mnist-5k, small-cnn")
    title = fig.get_suptitle()
    assert "5 seeds" in title and "400 test images" in title and "mnist-5k, small-cnn" in title
    assert "std" in title
    # the seed count defaults to the summary's
    default = figures.accuracy_vs_eps([summary_row(v, seeds=2) for v in VARIANTS], ["pgd"], EPS).get_suptitle()
    assert "2 seeds" in default
    one = figures.accuracy_vs_eps([summary_row("bn / running", seeds=1)], ["pgd"], EPS).get_suptitle()
    assert "1 seed;" in one and "no spread" in one


def test_accuracy_vs_eps_lines_do_not_coincide_and_show_the_spread():
    fig = figures.accuracy_vs_eps(SUMMARY, ["fgsm", "pgd"], EPS)
    for ax in fig.get_axes():
        containers = ax.containers
        assert len(containers) == len(VARIANTS)  # every variant on every panel
        xs = [container.lines[0].get_xdata() for container in containers]
        for i in range(len(xs)):
            for j in range(i + 1, len(xs)):
                assert np.all(np.abs(np.asarray(xs[i]) - np.asarray(xs[j])) > 1e-4)  # offset along ε
        markers = {(c.lines[0].get_marker(), c.lines[0].get_color()) for c in containers}
        assert len(markers) == len(VARIANTS)  # each variant its own look
        # points only: no line suggests accuracies between two budgets, which were never measured
        assert all(c.lines[0].get_linestyle() == "None" for c in containers)
        # the budgets sit at equal spacing, labelled with their ε
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", *(f"{e:g}" for e in EPS)]
        assert list(ax.get_xticks()) == list(range(len(EPS) + 1))
        # the error bars span ±std (in %) around the mean: 0.5 ± 0.05 at the first ε
        segments = containers[1].lines[2][0].get_segments()
        low, high = segments[1][0][1], segments[1][1][1]
        assert (low, high) == pytest.approx((45.0, 55.0))


def test_statistics_shift_labels_layers_and_keeps_the_legend_off_the_bars():
    fig = figures.statistics_shift(shift_rows(), title="clean vs PGD", channels=[16, 32, 64])
    assert_legends_cover_nothing(fig)
    for ax in fig.get_axes():
        assert ax.get_legend() is None
        ticks = ax.get_xticklabels()
        assert [t.get_text() for t in ticks] == ["norm 1\n(16 ch)", "norm 2\n(32 ch)", "norm 3\n(64 ch)"]
        assert all(t.get_rotation() == 0 for t in ticks)
    # without channel counts: still numbered in forward order, not by module index
    plain = figures.statistics_shift(shift_rows())
    assert [t.get_text() for t in plain.get_axes()[0].get_xticklabels()] == ["norm 1", "norm 2", "norm 3"]


def test_statistics_shift_over_seeds_draws_the_mean_and_each_seed():
    fig = figures.statistics_shift(shift_rows(), title="t", per_seed=[shift_rows(1.0), shift_rows(3.0)])
    shift_ax = fig.get_axes()[0]
    adversarial_bars = shift_ax.containers[1]
    heights = [bar.get_height() for bar in adversarial_bars]
    assert heights == pytest.approx([0.0, 0.6, 1.2])  # mean of 0.3 i and 0.9 i
    assert "2 seeds" in fig.get_suptitle()
    assert_legends_cover_nothing(fig)


def test_examples_by_norm_shows_a_clean_and_an_adversarial_row_per_norm():
    rng = np.random.default_rng(0)
    k = 4
    labels = np.array([0, 1, 2, 3])
    panels = [
        {"name": name, "clean": rng.random((k, 1, 8, 8)), "adversarial": rng.random((k, 1, 8, 8)), "labels": labels,
         "clean_predictions": labels, "adversarial_predictions": np.array([0, 9, 9, 9])}
        for name in ["none / -", "bn / running", "rn / running"]
    ]
    fig = figures.examples_by_norm(panels, eps=0.1)
    assert len(fig.subfigs) == 3
    for subfig, panel in zip(fig.subfigs, panels):
        title = subfig._suptitle.get_text()
        assert panel["name"] in title and "clean 4/4 correct" in title and "PGD ε=0.1 1/4 correct" in title
        assert len(subfig.axes) == 2 * k
        assert subfig.axes[0].get_ylabel() == "clean" and subfig.axes[k].get_ylabel() == "PGD ε=0.1"
    # a wrong prediction is red and names the true class
    adversarial_title = fig.subfigs[0].axes[k + 1].title
    assert adversarial_title.get_text() == "pred. 9 (≠1)" and adversarial_title.get_color() == "red"


def test_training_curves_legend_outside(tmp_path):
    runs = [{"norm": norm, "seed": seed,
             "history": [{"epoch": e, "train_loss": 1.0 / e + seed, "test_acc": 0.1 * e} for e in (1, 2, 3)]}
            for norm in ("bn", "rn") for seed in (0, 1)]
    fig = figures.training_curves(runs, path=tmp_path / "curves.png")
    assert_legends_cover_nothing(fig)
    assert "2 seeds" in fig.get_suptitle()
    assert (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.parametrize("keys, title", [(("test_acc", "val_acc"), "clean accuracy: test (solid), validation (dotted)"),
                                         (("val_acc",), "clean accuracy: validation")])
def test_training_curves_draw_validation_solid_without_per_epoch_test_accuracy(keys, title):
    """reproduce records test accuracy once, after training: validation is then the solid curve, with its band."""
    runs = [{"norm": norm, "seed": seed,
             "history": [{"epoch": e, "train_loss": 1.0 / e, **{k: 0.1 * e + 0.01 * seed for k in keys}} for e in (1, 2)]}
            for norm in ("bn", "rn") for seed in (0, 1)]
    fig = figures.training_curves(runs)
    acc_ax = fig.get_axes()[1]
    assert acc_ax.get_title() == title
    styles = sorted(line.get_linestyle() for line in acc_ax.get_lines())
    assert styles == sorted(["-", "-"] + ([":", ":"] if len(keys) == 2 else []))
    assert len(acc_ax.collections) == 2  # one min-max band per norm, on the solid curve


# ---- clean_vs_robust: robustness at matched clean accuracy --------------------------------------------------------

def curve_run(norm, epochs=6, lead=0.0):
    history = [{"epoch": e, "train_loss": 1.0 / e, "curve_clean_acc": 0.5 + 0.07 * e,
                "curve_robust_acc": 0.02 * e + lead, "curve_eps": 0.3} for e in range(1, epochs + 1)]
    return {"norm": norm, "seed": 0, "history": history}


def test_clean_vs_robust_has_one_line_per_norm_through_every_epoch(tmp_path):
    runs = [curve_run("bn"), curve_run("rn", lead=0.1)]
    fig = figures.clean_vs_robust(runs, path=tmp_path / "curve.png", title="mnist-5k, small-cnn", examples=500)
    curve_ax, epoch_ax = fig.get_axes()
    lines = [line for line in curve_ax.get_lines() if line.get_label() in ("bn", "rn")]
    assert [line.get_label() for line in lines] == ["bn", "rn"]
    for line, run in zip(lines, runs):
        # x: clean %, y: robust %, in epoch order, one point per epoch
        assert np.asarray(line.get_xdata()) == pytest.approx([100 * h["curve_clean_acc"] for h in run["history"]])
        assert np.asarray(line.get_ydata()) == pytest.approx([100 * h["curve_robust_acc"] for h in run["history"]])
        assert line.get_color() == figures.NORM_COLORS[run["norm"]]
    # the last epoch is marked, and a few (not all) epochs are written beside their points
    stars = [line for line in curve_ax.get_lines() if line.get_marker() == "*"]
    assert [float(s.get_xdata()[0]) for s in stars] == pytest.approx([92.0, 92.0])
    assert [float(s.get_ydata()[0]) for s in stars] == pytest.approx([12.0, 22.0])
    numbers = [t.get_text() for t in curve_ax.texts]
    assert "1" in numbers and "6" in numbers and len(numbers) < 2 * 6
    assert len(epoch_ax.get_lines()) == 4  # clean and robust per norm
    title = fig.get_suptitle()
    assert "seed 0" in title and "validation" in title and "500" in title and "PGD-margin ε=0.3" in title
    assert "mnist-5k, small-cnn" in title
    assert "%" in curve_ax.get_xlabel() and "%" in curve_ax.get_ylabel()
    assert_legends_cover_nothing(fig)
    assert (tmp_path / "curve.png").stat().st_size > 0


# ---- statistics_shift_control: the attack's shift next to random noise's -----------------------------------------

def control_record(norm, seed, scale):
    """A statistics_shift_with_control output whose values encode (norm, seed, layer, source, key)."""
    base = {"bn": 1.0, "rn": 2.0}[norm]
    layers = []
    for i, channels in enumerate((16, 32, 32)):
        row = {"layer": str(3 * i + 1), "kind": "BatchNorm2d" if norm == "bn" else "RobustNorm2d"}
        for source, factor in (("attack", 1.0), ("noise", 0.25)):
            values = {"mean_shift": 0.1 * base * (i + 1) * factor * scale,
                      "std_change": 0.05 * base * (i + 1) * factor * scale, "own_scale_change": 0.01}
            row[source] = {**values, "per_channel": {k: [v] * channels for k, v in values.items()}}
        layers.append(row)
    return {"norm": norm, "seed": seed, "statistics_shift": {"eps": 0.1, "layers": layers, "summary": {}}}


CONTROL_RUNS = [control_record(norm, seed, scale) for norm in ("bn", "rn") for seed, scale in ((0, 1.0), (1, 3.0))]


def test_statistics_shift_control_bars_are_the_means_over_seeds_and_dots_each_seed():
    fig = figures.statistics_shift_control(CONTROL_RUNS, title="mnist-5k, small-cnn", examples=128)
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax, key in zip(axes, ("mean_shift", "std_change")):
        assert [c.get_label() for c in ax.containers] == [
            "bn: PGD-margin", "bn: random ±ε noise", "rn: PGD-margin", "rn: random ±ε noise"]
        groups = [(norm, source) for norm in ("bn", "rn") for source in ("attack", "noise")]
        for container, (norm, source) in zip(ax.containers, groups):
            given = [[layer[source][key] for layer in r["statistics_shift"]["layers"]]
                     for r in CONTROL_RUNS if r["norm"] == norm]
            assert [bar.get_height() for bar in container] == pytest.approx(np.mean(given, axis=0))
        # two seeds: one dot per seed, group and layer
        dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert len(dots) == 2 * 4 and all(len(d.get_xdata()) == 3 for d in dots)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["norm 1\n(16 ch)", "norm 2\n(32 ch)", "norm 3\n(32 ch)"]
        assert "clean-batch std" in ax.get_ylabel()
    # the attack's and the noise's bars of one layer sit side by side, not on top of each other
    xs = [bar.get_x() for container in axes[0].containers for bar in container[:1]]
    assert len(set(np.round(xs, 6))) == 4
    title = fig.get_suptitle()
    assert "2 seeds" in title and "ε=0.1" in title and "128 test images" in title and "noise" in title
    assert_legends_cover_nothing(fig)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend.count("one seed") == 1 and legend[-1] == "one seed"


def test_statistics_shift_control_with_one_seed_draws_no_dots():
    fig = figures.statistics_shift_control([r for r in CONTROL_RUNS if r["seed"] == 0])
    assert not [line for ax in fig.get_axes() for line in ax.get_lines() if line.get_marker() == "o"]
    assert "1 seed" in fig.get_suptitle()
    heights = [bar.get_height() for bar in fig.get_axes()[0].containers[2]]  # rn, attack
    assert heights == pytest.approx([0.2, 0.4, 0.6])


# ---- accuracy_vs_eps: a row attacked at fewer budgets --------------------------------------------------------------

def test_accuracy_vs_eps_draws_the_suite_at_the_budgets_it_was_run_at():
    # the default run attacks the suite at one ε only: "suite@0.1" exists, "suite@0.05" does not
    summary = [{k: v for k, v in row.items() if k != "suite@0.05"} for row in SUMMARY]
    fig = figures.accuracy_vs_eps(summary, ["pgd", "suite"], EPS, seeds=3, examples=250)
    pgd_ax, suite_ax = fig.get_axes()
    assert len(suite_ax.containers) == len(VARIANTS)  # every variant on the suite panel
    for container in suite_ax.containers:
        x, y = container.lines[0].get_xdata(), container.lines[0].get_ydata()
        offset = x[0]  # the variant's shift along ε
        assert np.asarray(x) - offset == pytest.approx([0.0, EPS.index(0.1) + 1])  # clean and the one suite ε's slot
        assert np.asarray(y) == pytest.approx([90.0, 25.0])  # clean 0.9, suite@0.1 = 0.5 / 2
    assert "0.1 only" in suite_ax.get_title()
    # the other panels keep every ε, and their titles say nothing about missing budgets
    assert all(len(c.lines[0].get_xdata()) == 3 for c in pgd_ax.containers)
    assert "only" not in pgd_ax.get_title()
    # a row without any column for an attack is left off that panel, and still in the legend
    partial = [summary[0], {k: v for k, v in summary[1].items() if not k.startswith("suite@")}]
    fig = figures.accuracy_vs_eps(partial, ["suite", "pgd"], EPS)
    assert len(fig.get_axes()[0].containers) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == VARIANTS[:2]
