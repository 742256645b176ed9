"""What one fast path buys: the same step with it on and off, alternating in one process.

    python benchmarks/paired_steps.py --toggle row-offsets            # ResNet-20, BatchNorm, train and attack
    python benchmarks/paired_steps.py --toggle im2col-copy --model small_cnn
    python benchmarks/paired_steps.py --toggle matmul-into --pairs 30
    python benchmarks/paired_steps.py --toggle channelwise --norm rn

Each pair times the step once with the fast path and once without (the order alternates from pair
to pair), so both see the same machine; the median of the per-pair ratios is robust to a noisy
machine where absolute times are not.  Toggles (each a plain reference path the tests compare with):

* ``row-offsets``: stride-1 convolutions with few channels by row offsets, or all with im2col
  (``minirn.backend.windows.ROW_OFFSET_MAX_CHANNELS`` 16 or 0; the 32-channel weight gradients keep
  theirs: see ``weight-gradient-32``);
* ``im2col-copy``: X_col copied a window row at a time (``backend.im2col``) or element by element
  (``backend.im2col_reference``);
* ``matmul-into``: each block's product written into the output (``backend.matmul_into``) or made and
  then copied there;
* ``weight-gradient-32``: the weight gradient by row offsets also at 16 to 32 channels, or only where the
  forward pass takes them (``ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS`` 32 or 16);
* ``channelwise``: elementwise operations with one value per channel (BatchNorm, RobustNorm, ReLU) on
  long rows (``backend.channelwise``) or broadcast (``backend.channelwise_reference``);
* ``input-gradient``: each stride-1 input gradient as a correlation of G or by folding, whichever
  ``backend.input_gradient_by_correlation_pays`` says, or always as the correlation.
"""
import argparse
import statistics
import time

from minirn import backend, bench
from minirn.backend import windows

SHAPES = {"resnet20": (3, 32, 32), "small_cnn": (1, 28, 28)}


def _generic_matmul_into(out, rows, a, b):
    out[rows, ...] = a @ b


def _broadcast_channelwise(op, x, v, out=None):
    return backend.channelwise_reference(op, x, v)


def _always_correlate(g, in_channels):
    return True


TOGGLES = {  # name -> (attribute holder, attribute, fast value, reference value)
    "row-offsets": (windows, "ROW_OFFSET_MAX_CHANNELS", windows.ROW_OFFSET_MAX_CHANNELS, 0),
    "im2col-copy": (backend, "im2col", backend.im2col, backend.im2col_reference),
    "matmul-into": (backend, "matmul_into", backend.matmul_into, _generic_matmul_into),
    "weight-gradient-32": (windows, "ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS",
                           windows.ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS, windows.ROW_OFFSET_MAX_CHANNELS),
    "channelwise": (backend, "channelwise", backend.channelwise, _broadcast_channelwise),
    "input-gradient": (backend, "input_gradient_by_correlation_pays", backend.input_gradient_by_correlation_pays,
                       _always_correlate),
}


def paired(step, holder, name, fast, reference, pairs):
    def timed(value):
        setattr(holder, name, value)
        start = time.perf_counter()
        step()
        return time.perf_counter() - start

    for value in (fast, reference, fast, reference):  # warm-up, both paths
        timed(value)
    ratios, fast_times, reference_times = [], [], []
    for i in range(pairs):
        order = (fast, reference) if i % 2 == 0 else (reference, fast)
        times = {id(value): timed(value) for value in order}
        fast_times.append(times[id(fast)])
        reference_times.append(times[id(reference)])
        ratios.append(times[id(fast)] / times[id(reference)])
    setattr(holder, name, fast)
    return statistics.median(fast_times), statistics.median(reference_times), statistics.median(ratios)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toggle", required=True, choices=list(TOGGLES))
    parser.add_argument("--model", default="resnet20", choices=list(SHAPES))
    parser.add_argument("--norm", default="bn", choices=["bn", "rn", "none"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=20)
    args = parser.parse_args()
    backend.retain_freed_memory()  # as minirn bench and every minirn command do
    holder, name, fast, reference = TOGGLES[args.toggle]
    steps = bench.minirn_steps(args.model, args.norm, SHAPES[args.model], args.batch, "cpu")
    for label, step in zip(("train", "attack"), steps):
        with_it, without, ratio = paired(step, holder, name, fast, reference, args.pairs)
        print(f"{args.model} {args.norm} {label} step, {args.toggle}: {1000 * with_it:.0f} ms with, "
              f"{1000 * without:.0f} ms without (medians of {args.pairs} pairs); median ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
