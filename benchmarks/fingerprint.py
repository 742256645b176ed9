"""Print SHA-256 fingerprints of minirn's numerics, to prove a refactoring changed no bit.

Run it before and after a change (for example in a ``git worktree`` of the old commit) and
compare the lines::

    python benchmarks/fingerprint.py > after.txt
    git worktree add /tmp/old HEAD~1 && (cd /tmp/old && python benchmarks/fingerprint.py) > before.txt
    diff before.txt after.txt && echo bit-identical

It fingerprints, for the small CNN with BatchNorm and with RobustNorm, in train and eval mode
and in float32 and float64: the logits, the input gradient and every parameter gradient of a
random projection of the logits; the same for ResNet-8 (the authors' MNIST network) in float32;
then a short training run (1 epoch of SGD on 512 digits) and the PGD images it produces.  Only public names are used, so the script runs on every version.
"""
from __future__ import annotations

import hashlib

import numpy as np

import minirn
from minirn import models, optim
from minirn.attacks import pgd
from minirn.data import load_dataset
from minirn.train import fit


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(minirn.backend.to_host(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def gradients(norm, training, dtype, arch="small_cnn"):
    minirn.manual_seed(0)
    model = models.small_cnn(norm=norm) if arch == "small_cnn" else models.resnet(8, norm=norm, in_channels=1)
    if dtype == "float64":
        model.double()
    model.train(training)
    rng = np.random.default_rng(1)
    x = minirn.Tensor(rng.random((16, 1, 28, 28)).astype(dtype), requires_grad=True)
    logits = model(x)
    projection = rng.standard_normal(logits.shape).astype(dtype)
    (logits * minirn.Tensor(projection)).sum().backward()
    return digest(logits.data, x.grad, *[p.grad for p in model.parameters()])


def training_run(norm):
    data = load_dataset("digits")
    minirn.manual_seed(0)
    model = models.small_cnn(norm=norm, in_channels=data.x_train.shape[1], num_classes=data.num_classes)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    history = fit(model, (data.x_train[:512], data.y_train[:512]), 1, optimizer, seed=0, batch_size=64,
                  progress=False)
    model.eval()
    x_adv = pgd(model, data.x_test[:64], data.y_test[:64], 0.1, 0.025, 5, seed=0)
    state = model.state_dict()
    return digest(*[state[k] for k in sorted(state)], x_adv), history[-1]["train_loss"]


def main():
    for norm in ("bn", "rn"):
        for training in (True, False):
            for dtype in ("float32", "float64"):
                print(f"gradients {norm} {'train' if training else 'eval'} {dtype}: {gradients(norm, training, dtype)}")
    for norm in ("bn", "rn"):
        for training in (True, False):
            print(f"gradients resnet8 {norm} {'train' if training else 'eval'} float32: "
                  f"{gradients(norm, training, 'float32', 'resnet8')}")
    for norm in ("none", "bn", "rn"):
        h, loss = training_run(norm)
        print(f"training {norm}: {h} (last train loss {loss!r})")


if __name__ == "__main__":
    main()
