"""Neural-network building blocks: ``Module``, layers, normalizations (``minirn.nn``).

``minirn.nn.functional`` holds the differentiable math; the classes here own
parameters, buffers and modes, like ``torch.nn``.
"""
from minirn.nn import functional, init
from minirn.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    Normalize,
    ReLU,
)
from minirn.nn.module import Identity, Module, Parameter, Sequential
from minirn.nn.norm import (
    EVAL_STATISTICS,
    BatchNorm2d,
    EvalStats,
    GroupNorm,
    LayerNorm,
    RobustNorm2d,
    eval_statistics,
    get_norm_eval_stats,
    norm_layers,
    set_norm_eval_stats,
)

__all__ = [
    "EVAL_STATISTICS", "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "EvalStats", "Flatten", "GlobalAvgPool2d", "GroupNorm",
    "Identity", "LayerNorm", "Linear", "MaxPool2d", "Module", "Normalize", "Parameter", "ReLU", "RobustNorm2d",
    "Sequential", "eval_statistics", "functional", "get_norm_eval_stats", "init", "norm_layers", "set_norm_eval_stats",
]
