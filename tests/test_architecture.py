"""The backend rule, enforced: only the package minirn/backend/ may compute with NumPy or CuPy.

Every other module writes its array code against the Array API
(``xp = backend.array_namespace(x)``), so that it runs unchanged on the CPU,
on a GPU and under array-api-strict.  This test parses every module under
``minirn/`` and fails on any use of ``numpy.<name>`` (however numpy was
imported or aliased) that the rules below do not allow, and on any import of
an array library other than NumPy.

Rules (edit these tables, not the scanner):

* ``ALLOWED_EVERYWHERE``: dtype and type names (``np.float32``, ``np.ndarray``,
  ``np.generic`` ...), for ``isinstance`` checks, annotations and dtype
  comparisons.  They compute nothing.
* ``HOST_MODULES`` (by path) may also use ``HOST_CALLS`` (conversion, file
  I/O, host index bookkeeping) plus the extra calls listed for that module:
  modules whose NumPy work happens on the host (reading files, batching and
  augmenting host data, converting to and from the device), never the math
  of a forward or backward pass.  Add a module only if that is true of it,
  and list the extra calls it needs next to it, so the exception stays visible.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minirn"
BACKEND = "backend/"  # every module under minirn/backend/

FORBIDDEN_LIBRARIES = {"cupy", "cupyx", "array_api_strict", "array_api_compat", "torch", "jax"}

ALLOWED_EVERYWHERE = {
    "ndarray", "generic", "dtype", "number", "integer", "floating", "bool_",
    "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
    "random.Generator",
}

HOST_CALLS = {
    "asarray", "array", "ascontiguousarray", "frombuffer", "fromfile",
    "load", "save", "savez", "savez_compressed", "loadtxt", "lib.npyio.NpzFile",
    "random.default_rng", "prod", "unravel_index", "arange", "__version__",
}
# path relative to minirn/ (ending in "/" for every module below a folder) -> extra calls it may make
HOST_MODULES = {
    "data/": {"concatenate", "unique", "flatnonzero", "pad", "empty_like"},  # host batching and augmentation
    "serialization.py": set(),
    "bridge/": {"zeros"},  # host files in and out (.safetensors, the authors' .pth), zero biases for their NoBN
    "autograd/gradcheck.py": {"zeros", "sort"},  # host copies of one input, perturbed element by element
    "autograd/tensor.py": {"array2string"},  # conversion of Python data, .numpy(), printing
    "train.py": {"concatenate", "zeros", "mean"},  # host predictions -> accuracy
    # summaries of finished results (host copies of statistics and accuracies over seeds), and plotting
    "experiments/": {"atleast_1d", "mean", "std", "transpose", "maximum", "sqrt", "abs",
                     "sum", "unique", "diff", "sort", "any", "linspace", "zeros"},  # and host predictions, plot layout
    "bench/": set(),
}
# modules that may import PyTorch, the optional oracle: only ever imported when it is installed
TORCH_MODULES = {"bench/__init__.py", "bench/torch_twins.py", "bench/authors_network.py",
                 "bridge/authors.py"}  # reads the authors' .pth with torch.load(weights_only=True)


def _host_calls(relative: str) -> set:
    """The host calls module ``minirn/<relative>`` may make (empty unless it is a host module)."""
    for module, extra in HOST_MODULES.items():
        if relative.startswith(module) if module.endswith("/") else relative == module:
            return HOST_CALLS | extra
    return set()


class _ArrayLibraryUses(ast.NodeVisitor):
    """Collect (line, dotted name) for every reference to numpy or a forbidden library."""

    def __init__(self):
        self.aliases = {}  # local name -> dotted module path, e.g. "np" -> "numpy"
        self.uses = []  # (line, "numpy.zeros")

    def visit_Import(self, node):
        for alias in node.names:
            root = alias.name.split(".")[0]
            if root in FORBIDDEN_LIBRARIES:
                self.uses.append((node.lineno, alias.name))
            elif root == "numpy":
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    self.aliases["numpy"] = "numpy"

    def visit_ImportFrom(self, node):
        module = node.module or ""
        root = module.split(".")[0]
        if node.level == 0 and root in FORBIDDEN_LIBRARIES:
            self.uses.append((node.lineno, module))
        elif node.level == 0 and root == "numpy":
            for alias in node.names:
                self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def _dotted(self, node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(parts)])
        return None

    def visit_Attribute(self, node):
        name = self._dotted(node)
        if name is None:
            self.generic_visit(node)
        else:
            self.uses.append((node.lineno, name))

    def visit_Name(self, node):
        if node.id in self.aliases:
            self.uses.append((node.lineno, self.aliases[node.id]))


def violations(source: str, relative: str) -> list[str]:
    """'path:line: name' for each forbidden array-library use in ``source`` (module ``minirn/<relative>``)."""
    finder = _ArrayLibraryUses()
    finder.visit(ast.parse(source))
    allowed = ALLOWED_EVERYWHERE | _host_calls(relative)
    found = []
    for line, name in sorted(finder.uses):
        root, _, rest = name.partition(".")
        if root == "numpy" and rest in allowed:
            continue
        if root == "torch" and relative in TORCH_MODULES:
            continue
        found.append(f"minirn/{relative}:{line}: {name.replace('numpy', 'np', 1) if root == 'numpy' else name}")
    return found


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if not p.relative_to(PACKAGE).as_posix().startswith(BACKEND))


def test_the_scan_sees_the_package():
    names = {p.relative_to(PACKAGE).as_posix() for p in _modules()}
    assert {"autograd/tensor.py", "nn/functional/conv.py", "nn/functional/reduction.py"} <= names
    assert (PACKAGE / BACKEND / "__init__.py").is_file()
    assert not any(name.startswith(BACKEND) for name in names)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_only_the_backend_calls_array_libraries(path):
    relative = path.relative_to(PACKAGE).as_posix()
    found = violations(path.read_text(encoding="utf-8"), relative)
    assert not found, (
        "array-library calls outside minirn/backend/ (use xp = backend.array_namespace(x) and xp.<fn>, "
        "or add a helper to the backend):\n" + "\n".join(found)
    )


# --- the scanner itself must catch what it claims to catch ---------------------------------
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import numpy as np\ny = np.zeros(3)\n", ["minirn/nn/x.py:2: np.zeros"]),
        ("import numpy\ny = numpy.sum(x)\n", ["minirn/nn/x.py:2: np.sum"]),
        ("import numpy as onp\ny = onp.linalg.norm(x)\n", ["minirn/nn/x.py:2: np.linalg.norm"]),
        ("from numpy import exp\ny = exp(x)\n", ["minirn/nn/x.py:2: np.exp"]),
        ("import numpy.random as npr\nr = npr.default_rng(0)\n", ["minirn/nn/x.py:2: np.random.default_rng"]),
        ("import numpy as np\nxp = np\n", ["minirn/nn/x.py:2: np"]),
        ("import numpy as np\ny = np.asarray(x).sum()\n", ["minirn/nn/x.py:2: np.asarray"]),
        ("import cupy as cp\n", ["minirn/nn/x.py:1: cupy"]),
        ("from cupyx.scipy import ndimage\n", ["minirn/nn/x.py:1: cupyx.scipy"]),
        ("import array_api_strict\n", ["minirn/nn/x.py:1: array_api_strict"]),
        ("import numpy as np\nok = isinstance(x, np.ndarray) and x.dtype == np.float32\n", []),
        ("import numpy as np\ng = np.random.Generator\n", []),
        ("xp = backend.array_namespace(x)\ny = xp.zeros(3)\nnp = 1\n", []),  # xp calls and an unrelated `np`
    ],
)
def test_scanner_flags_array_library_calls(source, expected):
    assert violations(source, "nn/x.py") == expected


def test_host_calls_are_allowed_only_in_host_modules():
    source = "import numpy as np\nhost = np.asarray(data)\nrng = np.random.default_rng(0)\n"
    assert violations(source, "serialization.py") == []
    assert violations(source, "data/mnist.py") == []
    assert violations(source, "nn/layers.py") == [
        "minirn/nn/layers.py:2: np.asarray", "minirn/nn/layers.py:3: np.random.default_rng",
    ]
    # math stays forbidden even in a host module, and one module's extra calls are not another's
    assert violations("import numpy as np\ny = np.exp(x)\n", "data/mnist.py") == ["minirn/data/mnist.py:2: np.exp"]
    assert violations("import numpy as np\ns = np.array2string(x)\n", "autograd/tensor.py") == []
    assert violations("import numpy as np\ns = np.array2string(x)\n", "serialization.py") == [
        "minirn/serialization.py:2: np.array2string",
    ]
