"""Adversarial attacks written from scratch, and an evaluation you can trust (``minirn.attacks``).

======================================  ============================================  ==========================
function                                what                                          file
======================================  ============================================  ==========================
``fgsm``                                fast gradient sign method (Goodfellow 2015)   :mod:`.fgsm`
``pgd``                                 projected gradient descent (Madry 2018)       :mod:`.pgd`
``bim``                                 basic iterative method (Kurakin 2017)         :mod:`.pgd`
``mim``                                 momentum iterative FGSM (Dong 2018)           :mod:`.mim`
``cw_l2``                               Carlini–Wagner L2 (Carlini & Wagner 2017)     :mod:`.cw`
``apgd``                                Auto-PGD, CE/margin/DLR (Croce & Hein 2020)   :mod:`.apgd`
``apgd_targeted``                       APGD-T, targeted DLR over the top classes     :mod:`.apgd`
``square``                              Square Attack, gradient-free (Andriushchenko  :mod:`.square`
                                        et al. 2020)
``robust_accuracy``                     AutoAttack-style ensemble, worst case         :mod:`.suite`
``paper_step_size``                     α = ε/10, the paper's protocol                :mod:`.pgd`
``madry_step_size``                     α = 2.5 ε / steps (Madry 2018)                :mod:`.pgd`
``adversarial_training_step_size``      α = ε/4, adversarial training                 :mod:`.pgd`
``evaluate``                            accuracy per attack per ε, worst case         :mod:`.evaluate`
``sanity_checks``                       gradient-masking checks (Athalye 2018)        :mod:`.sanity`
======================================  ============================================  ==========================

The objectives (cross-entropy, CW margin, DLR: ``loss="ce" | "margin" | "dlr"`` on every gradient
attack) are in :mod:`.losses`.  What the attacks share lives in three files, one idea each: :mod:`.checks` (argument checks),
:mod:`.objective` (the objective J, its input gradient, the untouched-model guard; and ``to_list``/``mean``,
with which the evaluations read their results back) and
:mod:`.geometry` (per-example norms, steps, projections, the random start).

Every attack takes ``(model, x, y, ...)`` with x: (N, C, H, W) images in [0, 1] (array or
Tensor) and y: (N,) integer labels (targets when ``targeted=True``), and returns x' of the same
kind, shape and dtype.  Attacks leave the model exactly as they found it: train/eval mode,
running statistics (forward passes run inside :func:`minirn.freeze_running_stats`), and every
parameter's ``.grad``.  They differentiate through the function the model actually computes,
so with batch statistics the whole batch is attacked jointly and results depend on the batch.
"""
from minirn.attacks.apgd import apgd, apgd_targeted
from minirn.attacks.cw import cw_l2
from minirn.attacks.evaluate import ATTACKS, DEFAULTS, evaluate
from minirn.attacks.fgsm import fgsm
from minirn.attacks.mim import mim
from minirn.attacks.pgd import adversarial_training_step_size, bim, madry_step_size, paper_step_size, pgd
from minirn.attacks.sanity import sanity_checks
from minirn.attacks.square import square
from minirn.attacks.suite import SUITES, robust_accuracy

__all__ = ["ATTACKS", "DEFAULTS", "SUITES", "adversarial_training_step_size", "apgd", "apgd_targeted", "bim", "cw_l2",
           "evaluate", "fgsm", "madry_step_size", "mim", "paper_step_size", "pgd", "robust_accuracy", "sanity_checks",
           "square"]
