"""The README's Quickstart is true: exactly two commands, and CI runs the very same test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_quickstart_is_exactly_two_commands():
    commands = quickstart_commands()
    assert len(commands) == 2
    run, test = commands
    assert "requirements.txt" in run and "minirn reproduce" in run
    assert "requirements-dev.txt" in test and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = quickstart_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert test_command in ci_lines


def test_readme_table_is_the_one_the_committed_results_produce():
    """No stale numbers: the README's accuracy table is regenerated from docs/default-run/results.json."""
    import json

    from minirn.experiments import report

    results = json.loads((ROOT / "docs" / "default-run" / "results.json").read_text(encoding="utf-8"))
    config = results["config"]
    table = report.markdown_table(results["summary"], config["attacks"], config["eps"], config["eval_batch_size"])
    rows = [line for line in table.splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(rows) > 2
    missing = [row for row in rows if row not in readme]
    assert not missing, f"README rows not produced by docs/default-run/results.json: {missing}"
    # and the committed report is the one the results produce
    assert (ROOT / "docs" / "default-run" / "results.md").read_text(encoding="utf-8") == report.results_markdown(results)
