#!/usr/bin/env bash
# The GPU check (issue 23): everything a bare GPU machine without a registry can tell about minirn, in one run
# that ends within 9 minutes even when a step hangs.
#
#   bash benchmarks/gpu_wheels.sh                              # here, once: the wheels the GPU machine lacks
#   bash benchmarks/gpu_check.sh OUTDIR                        # on the GPU machine (carry .gpu-wheels)
#   bash benchmarks/gpu_check.sh --cpu-dry-run OUTDIR          # every step on the CPU device (DEVICE=cpu does the same)
#   bash benchmarks/gpu_check.sh --cpu-dry-run --smoke OUTDIR  # the fastest mode (tests/test_gpu_check_script.py)
#
# Steps, each under its own time limit (timeout; the whole run under TOTAL_SECONDS, default 510 s):
#   install    the carried wheels (WHEELS, default .gpu-wheels/) into a fresh private folder, pip --no-index
#   env        versions (GPU, driver, CUDA, CuPy, PyTorch, NumPy, ...) and one training step on the device
#   tests      MINIRN_TEST_DEVICES=<device> pytest -m device: every device-parametrised test, the core files first
#              (every op, both norms' forward/backward in every variant, every attack, evaluate and the suite),
#              so that a timeout still leaves them run; pytest-xdist workers where it is installed (the GPU image)
#   bench      python -m minirn bench --device <device>: small CNN and ResNet-20, BN and RN, against PyTorch
#   reproduce  python -m minirn reproduce --quick --device <device>: the whole pipeline on the 8x8 digits
# then one summary table, last (also OUTDIR/summary.md).  OUTDIR receives at most 8 files (what a device call
# returns): install.log env.log tests.log bench.log bench.json reproduce.log results.md summary.md.
#
# Environment: PYTHON (default python3 on the GPU; .venv/bin/python in a dry run where it exists), WHEELS,
# TOTAL_SECONDS, PYTEST_WORKERS (default 4 on the GPU when pytest-xdist is there, else 0), PYTEST_MAXFAIL
# (default 25: one GPU run must show every failure it can, not only the first).
# Exit status: 0 when every step passed, 1 otherwise, 2 for a bad command line.
set -uo pipefail
export PYTHONUNBUFFERED=1

usage() { sed -n '4,7p' "$0" | sed 's/^# *//'; }

MODE=gpu SMOKE=0 OUTDIR=
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-dry-run) MODE=cpu ;;
        --smoke) SMOKE=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_check: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) if [ -n "$OUTDIR" ]; then echo "gpu_check: one OUTDIR only" >&2; exit 2; fi; OUTDIR=$1 ;;
    esac
    shift
done
if [ -z "$OUTDIR" ]; then usage >&2; exit 2; fi
if [ "${DEVICE:-gpu}" = cpu ]; then MODE=cpu; fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd) || exit 2
cd "$REPO" || exit 2
if [ "$MODE" = cpu ] && [ -x .venv/bin/python ]; then DEFAULT_PYTHON=.venv/bin/python; else DEFAULT_PYTHON=python3; fi
PYTHON=${PYTHON:-$DEFAULT_PYTHON}
WHEELS=${WHEELS:-$REPO/.gpu-wheels}
TOTAL_SECONDS=${TOTAL_SECONDS:-510}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/minirn-gpu-check.XXXXXX")
SITE=$WORK/site
START=$(date +%s)
: >"$WORK/steps.tsv"

# run_step NAME LIMIT LOG COMMAND...: run COMMAND under min(LIMIT, time left), output into LOG; record the outcome.
run_step() {
    local name=$1 limit=$2 log=$3 left t0 rc status seconds
    shift 3
    left=$((START + TOTAL_SECONDS - $(date +%s)))
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    if [ "$limit" -lt 5 ]; then
        echo "== $name: skipped, out of time" | tee "$log"
        printf '%s\tskipped\t-\t0\t%s\n' "$name" "$limit" >>"$WORK/steps.tsv"
        return
    fi
    echo "== $name (limit $limit s): $*"
    t0=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$log" 2>&1
    rc=$?
    seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$seconds" "$limit" >>"$WORK/steps.tsv"
    echo "   $status (exit $rc) in $seconds s; $(tail -n 1 "$log" | cut -c1-150)"
}

# --- install: the carried wheels into a fresh folder, no network -----------------------------------------------
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    run_step install 40 "$OUTDIR/install.log" "$PYTHON" -m pip install --no-index --no-deps --no-compile \
        --no-cache-dir --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$REPO:$SITE"
elif [ "$MODE" = cpu ]; then
    echo "no wheels in $WHEELS (benchmarks/gpu_wheels.sh makes them): this dry run uses the environment's packages" \
        | tee "$OUTDIR/install.log"
    printf 'install\tskipped\t-\t0\t0\n' >>"$WORK/steps.tsv"
    export PYTHONPATH="$REPO"
else
    echo "no wheels in $WHEELS: run benchmarks/gpu_wheels.sh here and carry the folder" | tee "$OUTDIR/install.log"
    printf 'install\tfailed\t-\t0\t0\n' >>"$WORK/steps.tsv"
    export PYTHONPATH="$REPO"
fi

# --- env: versions, and one training step on the device (a broken device fails here in seconds) -----------------
cat >"$WORK/env.py" <<'PY'
import importlib, json, os, platform, subprocess, sys, time

device, site = sys.argv[1], sys.argv[2]
info = {"device": device, "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
for name in ("numpy", "array_api_compat", "array_api_strict", "mlxtend", "torch", "cupy"):
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        info[name] = f"missing ({type(exc).__name__})"
        continue
    carried = " (carried)" if os.path.abspath(module.__file__).startswith(os.path.abspath(site)) else ""
    info[name] = getattr(module, "__version__", "?") + carried
if device == "gpu":
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
        info["nvidia_smi"] = smi[0] if smi else "no output"
    except Exception as exc:  # noqa: BLE001
        info["nvidia_smi"] = f"failed ({exc})"
    try:
        import cupy
        runtime = cupy.cuda.runtime
        info["gpu"] = runtime.getDeviceProperties(0)["name"].decode()
        info["cuda_runtime"], info["cuda_driver"] = runtime.runtimeGetVersion(), runtime.driverGetVersion()
    except Exception as exc:  # noqa: BLE001
        info["gpu"] = f"CuPy sees no GPU ({type(exc).__name__}: {exc})"
    try:
        import torch
        info["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    except Exception as exc:  # noqa: BLE001
        info["torch_cuda"] = f"failed ({type(exc).__name__})"
try:
    import numpy as np

    import minirn
    from minirn import backend, models, optim
    from minirn.nn import functional as F

    start = time.perf_counter()
    minirn.manual_seed(0)
    model = models.small_cnn(norm="rn", in_channels=1).to(device)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = np.random.default_rng(0)
    x = backend.to_device(generator.random((8, 1, 28, 28), dtype=np.float32), device)
    y = backend.to_device(generator.integers(0, 10, 8), device)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    info["first_step"] = f"ok: loss {loss.item():.4f} in {time.perf_counter() - start:.1f} s"
    ok = True
except Exception as exc:  # noqa: BLE001
    info["first_step"] = f"failed: {type(exc).__name__}: {exc}"
    ok = False
print(json.dumps(info))
sys.exit(0 if ok else 1)
PY
run_step env 45 "$OUTDIR/env.log" "$PYTHON" "$WORK/env.py" "$MODE" "$SITE"

# --- settings of the remaining steps --------------------------------------------------------------------------
CORE_TESTS=(tests/backend tests/autograd tests/nn/functional tests/nn/test_norm.py tests/nn/test_norm_torch_oracle.py
            tests/attacks/test_contract.py tests/attacks/test_evaluate.py tests/attacks/test_suite.py
            tests/optim tests/test_train.py)
BENCH_LIMIT=110 REPRODUCE_LIMIT=110
if [ "$SMOKE" = 1 ]; then
    TESTS=(tests/backend/test_devices.py)
    BENCH=(--workloads small_cnn-bn --batch 8 --repeats 1 --warmup 0)
    REPRODUCE=(--norms bn --epochs 1 --eval-examples 48 --sanity-examples 48)
elif [ "$MODE" = cpu ]; then
    TESTS=("${CORE_TESTS[@]}" tests)   # pytest collects a file named twice once
    BENCH=(--batch 16 --repeats 1 --warmup 1)   # every workload, at a size the CPU runs in seconds
    REPRODUCE=()
else
    TESTS=("${CORE_TESTS[@]}" tests)
    BENCH=(--warmup 3)   # batch 128, 7 repeats: the figures to record
    REPRODUCE=()
fi
PYTEST_OPTIONS=(-q -m device -rfE -p no:cacheprovider --maxfail="${PYTEST_MAXFAIL:-25}")
if "$PYTHON" -c "import xdist" 2>/dev/null; then
    workers=${PYTEST_WORKERS:-$([ "$MODE" = gpu ] && [ "$SMOKE" = 0 ] && echo 4 || echo 0)}
    if [ "$workers" != 0 ]; then PYTEST_OPTIONS+=(-n "$workers"); fi
fi
if "$PYTHON" -c "import pytest_timeout" 2>/dev/null; then PYTEST_OPTIONS+=(--timeout=120); fi

# --- tests: whatever time the later steps do not need --------------------------------------------------------
TESTS_LIMIT=$((START + TOTAL_SECONDS - $(date +%s) - BENCH_LIMIT - REPRODUCE_LIMIT - 10))
run_step tests "$TESTS_LIMIT" "$OUTDIR/tests.log" \
    env MINIRN_TEST_DEVICES="$MODE" "$PYTHON" -m pytest "${PYTEST_OPTIONS[@]}" "${TESTS[@]}"

# --- bench: minirn against PyTorch on the device (peak memory is host memory: not measured) -----------------------
# --settle 0: the 0.2 s wait for spinning CPU threads (OpenBLAS products) is for the CPU; it would cost ~20 s here.
run_step bench "$BENCH_LIMIT" "$OUTDIR/bench.log" "$PYTHON" -m minirn bench --device "$MODE" --no-memory --settle 0 \
    --json "$OUTDIR/bench.json" "${BENCH[@]}"

# --- reproduce: the quick pipeline, one worker (a GPU runs one job at a time) ------------------------------------
run_step reproduce "$REPRODUCE_LIMIT" "$OUTDIR/reproduce.log" "$PYTHON" -m minirn reproduce --quick --device "$MODE" \
    --workers 1 --no-progress --out "$WORK/reproduce" "${REPRODUCE[@]}"
if [ -f "$WORK/reproduce/results.md" ]; then cp "$WORK/reproduce/results.md" "$OUTDIR/results.md"; fi

# --- the summary table, last ----------------------------------------------------------------------------------
MODE_NAME=$([ "$MODE" = gpu ] && echo gpu || echo "cpu dry run")$([ "$SMOKE" = 1 ] && echo " (smoke)")
"$PYTHON" - "$WORK/steps.tsv" "$OUTDIR" "$MODE_NAME" "$(($(date +%s) - START))" <<'PY'
import json, os, re, sys

steps_file, out, mode, total = sys.argv[1:5]
steps = {}
for line in open(steps_file):
    name, status, rc, seconds, limit = line.rstrip("\n").split("\t")
    steps[name] = (status, rc, seconds, limit)


def text(name):
    path = os.path.join(out, name)
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def outcome(name):
    status, rc, seconds, limit = steps.get(name, ("not run", "-", "0", "0"))
    if status == "timeout":
        return f"TIMEOUT after {seconds} s (limit {limit} s)"
    return f"{status} in {seconds} s" if status in ("ok", "failed") else status


env = {}
for line in reversed(text("env.log").splitlines()):
    if line.startswith("{"):
        env = json.loads(line)
        break
rows = [("mode", mode)]
if env.get("device") == "gpu":
    rows += [("GPU", env.get("gpu", "?")), ("nvidia-smi (name, driver, memory)", env.get("nvidia_smi", "?")),
             ("CUDA runtime / driver API", f"{env.get('cuda_runtime', '?')} / {env.get('cuda_driver', '?')}"),
             ("CuPy", env.get("cupy", "?")), ("PyTorch (CUDA device)", f"{env.get('torch', '?')} ({env.get('torch_cuda', '?')})")]
else:
    rows += [("CPUs", str(env.get("cpus", "?"))), ("PyTorch", env.get("torch", "?"))]
rows += [("Python / NumPy", f"{env.get('python', '?')} / {env.get('numpy', '?')}"),
         ("array-api-compat / -strict / mlxtend",
          f"{env.get('array_api_compat', '?')} / {env.get('array_api_strict', '?')} / {env.get('mlxtend', '?')}"),
         ("install (carried wheels)", outcome("install")),
         ("first training step on the device", env.get("first_step", outcome("env")))]

log = text("tests.log")
final = re.findall(r"^=*\s*((?:\d+ \w+(?:, )?)+) in ([\d.]+)s", log, re.M)
if final:
    counts = final[-1][0]
else:  # killed before pytest's last line: count the progress characters printed so far
    marks = "".join(m for m in re.findall(r"^([.FEsxX]+)(?:\s+\[\s*\d+%\])?\s*$", log, re.M))
    counts = (f"{marks.count('.')} passed, {marks.count('F')} failed, {marks.count('E')} errors, "
              f"{marks.count('s')} skipped so far")
rows.append(("tests (pytest -m device)", f"{counts}; {outcome('tests')}"))

bench = {}
if os.path.exists(os.path.join(out, "bench.json")) and steps.get("bench", ("",))[0] == "ok":
    bench = json.load(open(os.path.join(out, "bench.json")))
for row in bench.get("rows", []):
    cells = []
    for measure in ("train_step", "attack_step"):
        ours, theirs = row.get(f"{measure}_minirn_ms"), row.get(f"{measure}_torch_ms")
        ratio = row.get(f"{measure}_ratio")
        cells.append(f"{measure.replace('_', ' ')} {ours:.1f} ms"
                     + (f" vs torch {theirs:.1f} ms (x{ratio:.2f})" if ratio is not None else " (no torch)"))
    rows.append((f"bench {row['workload']} (batch {bench['batch']})", "; ".join(cells)))
if not bench:
    rows.append(("bench", outcome("bench")))
rows.append(("reproduce --quick", outcome("reproduce")))
rows.append(("whole check", f"{total} s"))
failed = [name for name, (status, *_) in steps.items() if status not in ("ok", "skipped")]
passed = re.search(r"(\d+) passed", counts)
if "tests" not in failed and not (passed and int(passed.group(1)) > 0):  # all skipped: the device is not there
    failed.append("tests (none passed)")
if "install" in steps and steps["install"][0] == "skipped" and mode.startswith("gpu"):
    failed.append("install")

table = "\n".join(["| what | result |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
verdict = "gpu_check: PASS" if not failed else f"gpu_check: FAIL ({', '.join(failed)}; see the logs in {out})"
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(table + "\n\n" + verdict + "\n")
print("\n" + table + "\n\n" + verdict)
sys.exit(1 if failed else 0)
PY
status=$?
rm -rf "$WORK"
exit $status
