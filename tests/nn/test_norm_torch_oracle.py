"""PyTorch as an oracle for Conv2d, Linear, BatchNorm2d and RobustNorm2d (float64; skipped without torch).

BatchNorm2d is compared with ``torch.nn.BatchNorm2d``/``BatchNorm1d`` directly;
the paper's "batch statistics at inference" with ``track_running_stats=False``.
RobustNorm has no PyTorch layer, so it is compared with its twin in
:mod:`minirn.bench.torch_twins`, the equations written in torch and
differentiated by torch's autograd (whose ``amax``/``amin`` split the gradient
equally between ties, like minirn).
"""
import numpy as np
import pytest

import minirn
from minirn import nn
from minirn.nn import EVAL_STATISTICS
from tests.conftest import make_tensor, to_numpy

torch = pytest.importorskip("torch")
torch_twins = pytest.importorskip("minirn.bench.torch_twins")


def as_torch(a, requires_grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=requires_grad)


def copy_into_torch(minirn_module, torch_module):
    """Copy minirn parameters and buffers into the torch module by name (the names are the same)."""
    with torch.no_grad():
        for key, value in minirn_module.state_dict().items():
            torch_module.state_dict()[key].copy_(as_torch(to_numpy(value)))


def run_both(module, torch_module, x, u, device):
    """Forward and backward (upstream gradient u) through both; returns minirn and torch gradients."""
    t = make_tensor(x, device, requires_grad=True)
    y = module(t)
    y.backward(make_tensor(u, device))
    tx = as_torch(x, requires_grad=True)
    ty = torch_module(tx)
    ty.backward(as_torch(u))
    ours = {"y": to_numpy(y), "x": to_numpy(t.grad)}
    theirs = {"y": ty.detach().numpy(), "x": tx.grad.numpy()}
    for name, param in module.named_parameters():
        ours[name] = to_numpy(param.grad)
        theirs[name] = dict(torch_module.named_parameters())[name].grad.numpy()
    return ours, theirs


def assert_same(ours, theirs, rtol=1e-10, atol=1e-12):
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=atol, err_msg=key)


# --- Conv2d and Linear ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=3, stride=2, padding=1),
     dict(kernel_size=(2, 3), stride=2, padding=0), dict(kernel_size=1, stride=2, padding=0, bias=False)],
    ids=["3x3-s1", "3x3-s2", "2x3", "1x1-nobias"],
)
def test_conv2d_matches_torch(args, device, rng):
    ours = nn.Conv2d(3, 4, **args).double()
    theirs = torch.nn.Conv2d(3, 4, **args).double()
    copy_into_torch(ours, theirs)
    x = rng.normal(size=(2, 3, 7, 6))
    out_shape = tuple(theirs(as_torch(x)).shape)
    assert_same(*run_both(ours.to(device), theirs, x, rng.normal(size=out_shape), device))


def test_linear_matches_torch(device, rng):
    ours, theirs = nn.Linear(5, 3).double(), torch.nn.Linear(5, 3).double()
    copy_into_torch(ours, theirs)
    assert_same(*run_both(ours.to(device), theirs, rng.normal(size=(4, 5)), rng.normal(size=(4, 3)), device))


def test_default_init_distribution_matches_torch():
    """Same U(-b, b) with b = 1/sqrt(fan_in) for weight and bias: compare max and mean of |w| of big layers."""
    torch.manual_seed(0)
    minirn.manual_seed(0)
    for ours, theirs in [(nn.Conv2d(8, 64, 3), torch.nn.Conv2d(8, 64, 3)), (nn.Linear(50, 2000), torch.nn.Linear(50, 2000))]:
        for name in ("weight", "bias"):
            a, b = np.abs(getattr(ours, name).numpy()), getattr(theirs, name).detach().abs().numpy()
            np.testing.assert_allclose(a.max(), b.max(), rtol=0.05, err_msg=name)
            np.testing.assert_allclose(a.mean(), b.mean(), rtol=0.05 if a.size > 1000 else 0.25, err_msg=name)


# --- BatchNorm2d ---------------------------------------------------------------------------------------
def make_bn_pair(rng, c=3, ndim=4, **torch_kwargs):
    ours = nn.BatchNorm2d(c).double()
    theirs = (torch.nn.BatchNorm2d if ndim == 4 else torch.nn.BatchNorm1d)(c, **torch_kwargs).double()
    ours.load_state_dict({"weight": rng.uniform(0.5, 2.0, c), "bias": rng.normal(size=c)}, strict=False)
    with torch.no_grad():
        theirs.weight.copy_(as_torch(ours.weight.numpy()))
        theirs.bias.copy_(as_torch(ours.bias.numpy()))
    return ours, theirs


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (6, 3)], ids=["NCHW", "NC"])
def test_batchnorm_training_forward_backward_matches_torch(shape, device, rng):
    ours, theirs = make_bn_pair(rng, ndim=len(shape))
    x = rng.normal(size=shape) * 2.0 + 1.0
    assert_same(*run_both(ours.to(device), theirs, x, rng.normal(size=shape), device))


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batchnorm_running_stats_and_eval_match_torch(momentum, device, rng):
    ours, theirs = make_bn_pair(rng, momentum=momentum)
    ours.momentum = momentum
    ours.to(device)
    for step in range(5):
        x = rng.normal(size=(3, 3, 2, 4)) * (step + 1) + step
        ours(make_tensor(x, device))
        theirs(as_torch(x))
    np.testing.assert_allclose(to_numpy(ours.running_mean), theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(ours.running_var), theirs.running_var.numpy(), rtol=1e-12)
    ours.eval(), theirs.eval()
    x = rng.normal(size=(2, 3, 3, 3))
    assert_same(*run_both(ours, theirs, x, rng.normal(size=x.shape), device))


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (5, 3)], ids=["NCHW", "NC"])
def test_batch_statistics_in_eval_match_torch_without_tracking(shape, device, rng):
    ours, theirs = make_bn_pair(rng, ndim=len(shape), track_running_stats=False)
    nn.set_norm_eval_stats(ours, "batch", "batch").eval().to(device)
    theirs.eval()
    x = rng.normal(size=shape) * 3.0 - 1.0
    before = {k: to_numpy(v).copy() for k, v in ours.state_dict().items()}
    assert_same(*run_both(ours, theirs, x, rng.normal(size=shape), device))
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(to_numpy(value), before[key])


def test_state_dict_keys_match_torch_except_num_batches_tracked():
    ours = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(4, 2))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch_keys = [k for k in theirs.state_dict() if not k.endswith("num_batches_tracked")]
    assert list(ours.state_dict()) == torch_keys
    for key, value in theirs.state_dict().items():
        if key in ours.state_dict():
            assert tuple(ours.state_dict()[key].shape) == tuple(value.shape), key


# --- RobustNorm2d against its torch twin, the equations written in torch ------------------------------------
# the paper's three eval variants (minirn.nn.EVAL_STATISTICS) and the fourth mix, batch mean with running scale
EVAL_STATS = [*(variant.setting for variant in EVAL_STATISTICS), ("batch", "running")]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("p", [0.2, 1.0])
@pytest.mark.parametrize("eval_stats", [None, *EVAL_STATS], ids=["train", "rr", "bb", "rb", "br"])
def test_robust_norm_matches_torch_reference(eval_stats, p, ties, device, rng):
    ours = nn.RobustNorm2d(3, p=p).double()
    ours.load_state_dict({
        "weight": rng.uniform(0.5, 2.0, 3), "bias": rng.normal(size=3),
        "running_mean": rng.normal(size=3), "running_range": rng.uniform(1.0, 4.0, 3),
    })
    theirs = torch_twins.RobustNorm2d(3, p=p).double()
    copy_into_torch(ours, theirs)
    if eval_stats is not None:
        nn.set_norm_eval_stats(ours, *eval_stats).eval()
        theirs.eval_mean, theirs.eval_scale = eval_stats
        theirs.eval()
    x = rng.normal(size=(4, 3, 2, 3))
    if ties:  # integer-valued data: several maxima and minima per channel
        x = np.clip(np.round(x * 1.5), -2.0, 2.0)
        x[0, :, 0, 0] = x[1, :, 1, 2] = 3.0                      # two maxima per channel
        x[2, :, 0, 1] = x[3, :, 1, 1] = x[0, :, 1, 0] = -3.0     # three minima per channel
        per_channel = np.moveaxis(x, 1, 0).reshape(3, -1)
        assert all((c == c.max()).sum() > 1 and (c == c.min()).sum() > 1 for c in per_channel)
    assert_same(*run_both(ours.to(device), theirs, x, rng.normal(size=x.shape), device))


def test_robust_norm_running_stats_match_torch_reference(device, rng):
    ours = nn.RobustNorm2d(3, p=0.5, momentum=0.2).double().to(device)
    theirs = torch_twins.RobustNorm2d(3, p=0.5, momentum=0.2).double()
    with torch.no_grad():
        for step in range(4):
            x = rng.normal(size=(4, 3, 2, 2)) * (step + 1)
            ours(make_tensor(x, device))
            theirs(as_torch(x))
    np.testing.assert_allclose(to_numpy(ours.running_mean), theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(ours.running_range), theirs.running_range.numpy(), rtol=1e-12)


def test_minirn_gradcheck_agrees_with_torch_gradcheck_on_robust_norm():
    """Sanity of the oracle itself: torch's own gradcheck accepts the torch reference."""
    x = torch.randn(3, 2, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    gamma = torch.rand(2, dtype=torch.float64, requires_grad=True)
    beta = torch.rand(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, g, b: torch_twins.robust_norm(x, g, b, p=0.5), (x, gamma, beta))
    assert minirn.gradcheck(
        lambda x, g, b: minirn.nn.functional.robust_norm(x, g, b, p=0.5),
        [minirn.tensor(a.detach().numpy(), requires_grad=True) for a in (x, gamma, beta)],
    )
