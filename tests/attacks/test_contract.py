"""The contract every attack keeps, tested for every attack on every device (tiny models, few steps)."""
from dataclasses import dataclass, field

import numpy as np
import pytest

import minirn
from minirn import attacks, backend
from tests.attacks import images, labels, tiny_cnn
from tests.conftest import to_numpy

EPS = 0.1


@dataclass
class Case:
    name: str
    function: object
    norm: str = "linf"
    kwargs: dict = field(default_factory=dict)
    step_name: str = None   # the step-size argument (None: the attack has none)
    has_steps: bool = True

    def __call__(self, model, x, y, eps=EPS, **overrides):
        return self.function(model, x, y, eps=eps, **{**self.kwargs, **overrides})


CASES = [
    Case("fgsm", attacks.fgsm, has_steps=False),
    Case("fgsm_l2", attacks.fgsm, "l2", {"norm": "l2"}, has_steps=False),
    Case("bim", attacks.bim, kwargs={"alpha": EPS / 4, "steps": 2}, step_name="alpha"),
    Case("mim", attacks.mim, kwargs={"alpha": EPS / 4, "steps": 2}, step_name="alpha"),
    Case("pgd", attacks.pgd, kwargs={"alpha": EPS / 4, "steps": 2, "restarts": 2, "seed": 3}, step_name="alpha"),
    Case("pgd_l2", attacks.pgd, "l2", {"alpha": EPS / 2, "steps": 2, "norm": "l2", "seed": 3}, step_name="alpha"),
    Case("pgd_l2_exact", attacks.pgd, "l2",
         {"alpha": 0.3, "steps": 2, "norm": "l2", "projection": "exact", "seed": 3}, step_name="alpha"),
    Case("cw", attacks.cw_l2, "l2", {"steps": 3, "binary_search_steps": 2, "lr": 0.1}, step_name="lr"),
    Case("cw_linf_budget", attacks.cw_l2, "linf", {"steps": 3, "binary_search_steps": 2, "lr": 0.1, "norm": "linf"},
         step_name="lr"),
    Case("pgd_margin", attacks.pgd, kwargs={"alpha": EPS / 4, "steps": 2, "loss": "margin", "seed": 3},
         step_name="alpha"),
    Case("mim_dlr", attacks.mim, kwargs={"alpha": EPS / 4, "steps": 2, "loss": "dlr"}, step_name="alpha"),
    Case("apgd_ce", attacks.apgd, kwargs={"steps": 3, "seed": 3}),
    Case("apgd_dlr_restarts", attacks.apgd, kwargs={"steps": 3, "loss": "dlr", "restarts": 2, "seed": 3}),
    Case("apgd_l2", attacks.apgd, "l2", {"steps": 3, "norm": "l2", "seed": 3}),
    Case("apgd_targeted", attacks.apgd_targeted, kwargs={"steps": 2, "n_targets": 2, "seed": 3}),
    Case("square", attacks.square, kwargs={"queries": 6, "seed": 3}, has_steps=False),   # steps: ``queries``
]
IDS = [c.name for c in CASES]


def setup(device, norm="bn", training=False, n=4):
    model = tiny_cnn(norm, device=device, num_classes=4)   # 4 classes: APGD-T's targeted DLR needs them
    model.train(training)
    return model, images(n, device=device), labels(n, device=device)


def snapshot(model):
    return {name: to_numpy(a).copy() for name, a in model.state_dict().items()}


# --- bad arguments ------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_arguments_raise_value_error(case, device):
    model, x, y = setup(device)
    with pytest.raises(ValueError, match="eps"):
        case(model, x, y, eps=-0.1)
    if case.step_name is not None:
        with pytest.raises(ValueError, match="step size"):
            case(model, x, y, **{case.step_name: -0.01})
    if case.has_steps:
        with pytest.raises(ValueError, match="steps"):
            case(model, x, y, steps=0)
    with pytest.raises(ValueError, match="norm"):
        case(model, x, y, norm="l3")
    with pytest.raises(ValueError, match="labels"):
        case(model, x, y[:3])
    outside = backend.to_device(to_numpy(x) + 0.5, device)
    with pytest.raises(ValueError, match="clip range"):
        case(model, outside, y)
    with pytest.raises(ValueError, match="integer labels"):
        case(model, x, backend.to_device(np.zeros(4, dtype="float32"), device))


def test_pgd_rejects_bad_restarts_and_projection():
    model, x, y = setup("cpu")
    with pytest.raises(ValueError, match="restarts"):
        attacks.pgd(model, x, y, EPS, EPS / 4, 2, restarts=0)
    with pytest.raises(ValueError, match="projection"):
        attacks.pgd(model, x, y, EPS, EPS / 4, 2, norm="l2", projection="nearest")


# --- the model is left as it was ----------------------------------------------------------
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_train_eval_mode_is_unchanged(case, device, training):
    model, x, y = setup(device, training=training)
    model[1].train(not training)   # a mixed model: one layer in the other mode
    before = [m.training for m in model.modules()]
    case(model, x, y)
    assert [m.training for m in model.modules()] == before


@pytest.mark.parametrize("norm", ["bn", "rn"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_running_statistics_unchanged_in_train_mode(case, device, norm):
    model, x, y = setup(device, norm=norm, training=True)
    before = snapshot(model)
    case(model, x, y)
    after = snapshot(model)
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parameter_gradients_restored(case, device):
    model, x, y = setup(device)
    params = list(model.parameters())
    case(model, x, y)
    assert all(p.grad is None for p in params)
    assert all(p.requires_grad for p in params)
    # an existing gradient (e.g. mid-training) survives untouched
    marker = params[0].data * 0.0 + 3.0
    params[0].grad = marker
    params[1].requires_grad = False
    case(model, x, y)
    assert params[0].grad is marker
    assert params[1].requires_grad is False and all(p.grad is None for p in params[1:])


# --- inputs and outputs ---------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_input_not_mutated_and_kind_shape_dtype_kept(case, device):
    model, x, y = setup(device)
    original = to_numpy(x).copy()
    out = case(model, x, y)
    np.testing.assert_array_equal(to_numpy(x), original)
    assert backend.is_array(out) and backend.device_of(out) == device
    assert tuple(out.shape) == tuple(x.shape) and out.dtype == x.dtype
    xt = minirn.tensor(x)
    out_t = case(model, xt, minirn.tensor(y))
    assert isinstance(out_t, minirn.Tensor) and not out_t.requires_grad
    assert out_t.shape == xt.shape and out_t.dtype == xt.dtype
    np.testing.assert_array_equal(xt.numpy(), original)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float64_in_float64_out(case, device):
    model, x, y = setup(device)
    model.double()
    x64 = backend.to_device(to_numpy(x).astype("float64"), device)
    out = case(model, x64, y)
    assert backend.dtype_name(out.dtype) == "float64"


@pytest.mark.parametrize("eps", [0.05, 0.3])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_perturbation_within_budget_and_box(case, device, eps):
    model, x, y = setup(device, training=True)   # batch statistics: the batch is attacked jointly
    x_np = to_numpy(x)
    delta = to_numpy(case(model, x, y, eps=eps)) - x_np
    flat = delta.reshape(len(delta), -1)
    size = np.abs(flat).max(axis=1) if case.norm == "linf" else np.linalg.norm(flat, axis=1)
    assert size.max() <= eps * (1 + 1e-6) + 1e-7
    adv = x_np + delta
    assert adv.min() >= 0.0 and adv.max() <= 1.0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_zero_eps_returns_x_exactly(case, device):
    model, x, y = setup(device)
    out = case(model, x, y, eps=0.0)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x))
    assert out is not x


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fixed_seed_is_reproducible(case, device):
    model, x, y = setup(device, training=True)
    first = to_numpy(case(model, x, y))
    second = to_numpy(case(model, x, y))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("case", [c for c in CASES if "seed" in c.kwargs], ids=[c.name for c in CASES if "seed" in c.kwargs])
def test_random_start_depends_on_seed(case):
    model, x, y = setup("cpu")
    a = case(model, x, y, seed=1)
    b = case(model, x, y, seed=2)
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_non_finite_images_are_refused(case, device, bad):
    """NaN compares false with everything, so a range check alone lets it through; prepare names it."""
    model, x, y = setup(device)
    x_np = to_numpy(x).copy()
    x_np[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) \(NaN or inf\)"):
        case(model, backend.to_device(x_np, device), y)


@pytest.mark.parametrize("run", [
    lambda m, x, y: attacks.evaluate(m, x, y, "fgsm", [EPS], batch_size=2, progress=False),
    lambda m, x, y: attacks.robust_accuracy(m, x, y, EPS, suite={"fgsm": {}}),
    lambda m, x, y: attacks.sanity_checks(m, x, y, EPS, steps=1, noise_draws=1),
], ids=["evaluate", "robust_accuracy", "sanity_checks"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_evaluations_refuse_non_finite_images(run, bad):
    model, x, y = setup("cpu")
    x = to_numpy(x).copy()
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"non-finite value\(s\) \(NaN or inf\)"):
        run(model, x, y)


@pytest.mark.parametrize("function", [attacks.fgsm, attacks.bim, attacks.mim, attacks.pgd, attacks.apgd])
def test_unknown_loss_is_refused(function):
    model, x, y = setup("cpu")
    kwargs = {"alpha": EPS / 4, "steps": 1} if function in (attacks.bim, attacks.mim, attacks.pgd) else {}
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        function(model, x, y, eps=EPS, loss="hinge", **kwargs)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_labels_as_a_list(case):
    model, x, y = setup("cpu")
    np.testing.assert_array_equal(case(model, x, list(to_numpy(y).tolist())), case(model, x, y))
