"""Adversarial attacks written from scratch, and an evaluation you can trust (``minirn.attacks``).

==============  ============================================  ==========================
function        attack                                        file
==============  ============================================  ==========================
``fgsm``        fast gradient sign method (Goodfellow 2015)   :mod:`.fgsm`
``bim``         basic iterative method (Kurakin 2017)         :mod:`.fgsm`
``mim``         momentum iterative FGSM (Dong 2018)           :mod:`.fgsm`
``pgd``         projected gradient descent (Madry 2018)       :mod:`.pgd`
``cw_l2``       Carlini–Wagner L2 (Carlini & Wagner 2017)     :mod:`.cw`
``evaluate``    accuracy per attack per ε, worst case         :mod:`.evaluate`
``sanity_checks``  gradient-masking checks (Athalye 2018)     :mod:`.sanity`
==============  ============================================  ==========================

Every attack takes ``(model, x, y, ...)`` with x: (N, C, H, W) images in [0, 1] (array or
Tensor) and y: (N,) integer labels (targets when ``targeted=True``), and returns x' of the same
kind, shape and dtype.  Attacks leave the model exactly as they found it: train/eval mode,
running statistics (forward passes run inside :func:`minirn.freeze_running_stats`), and every
parameter's ``.grad``.  They differentiate through the function the model actually computes,
so with batch statistics the whole batch is attacked jointly and results depend on the batch.
"""
from minirn.attacks.cw import cw_l2
from minirn.attacks.evaluate import ATTACKS, DEFAULTS, evaluate
from minirn.attacks.fgsm import bim, fgsm, mim
from minirn.attacks.pgd import pgd
from minirn.attacks.sanity import sanity_checks

__all__ = ["ATTACKS", "DEFAULTS", "bim", "cw_l2", "evaluate", "fgsm", "mim", "pgd", "sanity_checks"]
