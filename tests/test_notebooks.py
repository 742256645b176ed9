"""The notebooks run, end to end, in quick mode (``MINIRN_QUICK=1``), exactly as a reader would run them.

Also checks what a reader sees without running anything: the committed
notebooks carry outputs (of a full run), no error outputs, and end with exercises.
"""
import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = [
    "00_quickstart", "01_autograd_from_scratch", "02_conv_nets", "03_batchnorm", "04_attacks",
    "05_why_batchnorm_is_vulnerable", "06_robustnorm", "07_evaluating_robustness_honestly",
]


def _ids(path):
    return path.stem


def test_notebooks_are_the_promised_ones_in_reading_order():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_notebook_has_outputs_and_no_errors(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("outputs") is not None for c in code)
    assert sum(1 for c in code if c["outputs"]) >= len(code) // 2, "run the notebook before committing it"
    errors = [o for c in code for o in c["outputs"] if o.get("output_type") == "error"]
    assert not errors, f"{path.name} was committed with an error output: {errors[0].get('ename')}"
    assert all(c.get("execution_count") for c in code if c["outputs"]), "outputs must come from one clean run"
    markdown = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert "exercise" in markdown.lower(), f"{path.name} must end with exercises for the reader"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_executes_in_quick_mode(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MINIRN_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
