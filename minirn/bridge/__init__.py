"""A bridge to PyTorch: weights as ``.safetensors`` in PyTorch's layout, and the authors' checkpoints.

Two ideas, one file each, no pickle in either:

* :mod:`minirn.bridge.weights`: :func:`save_weights` / :func:`load_weights` / :func:`load_model`, a minirn
  model as a ``.safetensors`` file in its PyTorch twin's layout, with the model's description in the
  metadata (``minirn.save_weights``, ``minirn.load_weights``, ``minirn.load_model`` are these);
* :mod:`minirn.bridge.authors`: :func:`convert_authors`, a checkpoint of the authors' code
  (https://github.com/awaisrauf/RobustNorm) as the minirn model that computes the same function
  (``python -m minirn convert --from authors``).

docs/pytorch_bridge.md walks through both directions.
"""
from minirn.bridge.authors import (
    AUTHORS_INPUT_NORMALIZATION,
    AUTHORS_NORMS,
    ConversionError,
    authors_input_normalization,
    convert_authors,
)
from minirn.bridge.weights import build, load_model, load_weights, read_weights, save_weights

__all__ = ["AUTHORS_INPUT_NORMALIZATION", "AUTHORS_NORMS", "ConversionError", "authors_input_normalization", "build",
           "convert_authors", "load_model", "load_weights", "read_weights", "save_weights"]
