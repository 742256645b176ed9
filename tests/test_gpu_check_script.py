"""benchmarks/gpu_check.sh and gpu_wheels.sh (issue 23): both parse, and the check's fastest mode passes on the CPU.

The GPU machine comes rarely and for minutes, so the script it runs must not rot in between: the smoke
dry run executes every step (install, env, tests, bench, reproduce, summary) on the CPU device in seconds.
Without carried wheels (a clean checkout, CI) the dry run uses the environment's packages.
"""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECK = ROOT / "benchmarks" / "gpu_check.sh"
OUTPUT_FILES = {"install.log", "env.log", "tests.log", "bench.log", "bench.json", "reproduce.log", "results.md",
                "summary.md"}


@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_wheels.sh"])
def test_script_parses(script):
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)], check=True)


def test_bad_command_line_exits_2(tmp_path):
    done = subprocess.run(["bash", str(CHECK), "--cpu-dry-run", "--no-such-option", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown option --no-such-option" in done.stderr


@pytest.mark.slow
def test_cpu_dry_run_smoke_passes_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(CHECK), "--cpu-dry-run", "--smoke", str(out)], capture_output=True, text=True,
                          timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    assert done.stdout.rstrip().endswith(summary.rstrip())  # the summary table is printed last
    assert summary.rstrip().endswith("gpu_check: PASS")
    for row in ("| mode | cpu dry run (smoke) |", "| first training step on the device | ok:", "| tests (pytest -m device) |",
                "| bench small_cnn-bn (batch 8) |", "| reproduce --quick | ok in"):
        assert row in summary, row
    assert set(os.listdir(out)) == OUTPUT_FILES  # no more than a device call brings back (8 files)
