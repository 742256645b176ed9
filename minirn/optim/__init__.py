"""Optimizers and learning-rate schedules with PyTorch's update rules and checkpoint format.

=========================  ==============================================
``SGD``                    gradient descent, momentum, Nesterov, L2 decay
``Adam``                   Adam with bias correction and L2 decay
``MultiStepLR``            lr x gamma at milestone epochs
``CosineAnnealingLR``      cosine decay from the base lr to ``eta_min``
=========================  ==============================================

Every optimizer and scheduler has ``state_dict()`` / ``load_state_dict()``
whose contents :func:`minirn.serialization.save` can store.
"""
from minirn.optim.adam import Adam
from minirn.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR
from minirn.optim.optimizer import Optimizer
from minirn.optim.sgd import SGD

__all__ = ["SGD", "Adam", "CosineAnnealingLR", "LRScheduler", "MultiStepLR", "Optimizer"]
