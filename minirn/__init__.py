"""minirn: BatchNorm, RobustNorm and adversarial attacks from scratch, in array code.

A teaching reference implementation of Awais, Shamshad & Bae (2020),
"Towards an Adversarially Robust Normalization Approach".
"""
from minirn import attacks, backend, data, models, nn, optim
from minirn.autograd import (
    Function,
    Tensor,
    enable_grad,
    freeze_running_stats,
    is_grad_enabled,
    no_grad,
    ones,
    tensor,
    zeros,
)
from minirn.autograd.gradcheck import GradcheckError, gradcheck
from minirn.backend import manual_seed
from minirn.bridge import load_weights, save_weights
from minirn.serialization import CheckpointError, load, load_model, save

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "Function", "GradcheckError", "Tensor", "attacks", "backend", "data", "enable_grad", "freeze_running_stats",
    "gradcheck", "is_grad_enabled", "manual_seed", "load", "load_model", "load_weights", "models", "nn", "no_grad", "ones",
    "optim", "save", "save_weights", "tensor", "zeros",
]
