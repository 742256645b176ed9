"""The README and the docs say what the committed results say: the Quickstart is exactly the two commands
CI runs, the scorecard and the tables are generated from docs/default-run/results.json, the README stays
short, and every relative link in the README, the docs and the notebooks points at something that exists."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def quickstart_commands():
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def committed_results():
    return json.loads((ROOT / "docs" / "default-run" / "results.json").read_text(encoding="utf-8"))


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


def authors_results():
    return json.loads((ROOT / "docs" / "authors-mnist" / "results.json").read_text(encoding="utf-8"))


def test_readme_scorecard_is_the_one_the_committed_results_produce():
    """No stale verdicts: the scorecard the README opens with is regenerated from both committed results.json,
    the small CNN's and the authors' ResNet-8's side by side."""
    from minirn.experiments.scorecard import scorecard_markdown

    assert scorecard_markdown(committed_results(), authors_results()) in README


def test_results_page_compares_the_architectures_from_the_committed_files():
    from minirn.experiments import report

    table = report.architectures_markdown([committed_results(), authors_results()])
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert table in page
    authors = authors_results()
    assert (ROOT / "docs" / "authors-mnist" / "results.md").read_text(encoding="utf-8") == report.results_markdown(authors)
    minutes, seconds = divmod(round(authors["seconds"]), 60)
    assert f"took **{minutes} min {seconds} s**" in README  # the preset's run time, from its own file


def test_results_page_tables_are_the_ones_the_committed_results_produce():
    from minirn.experiments import report

    results = committed_results()
    config = results["config"]
    table = report.markdown_table(results["summary"], config["attacks"], config["eps"], config["eval_batch_size"])
    rows = [line for line in table.splitlines() if line.startswith("|")]
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert len(rows) > 2
    missing = [row for row in rows if row not in page]
    assert not missing, f"docs/results.md rows not produced by docs/default-run/results.json: {missing}"
    # and the committed report is the one the results produce
    assert (ROOT / "docs" / "default-run" / "results.md").read_text(encoding="utf-8") == report.results_markdown(results)


def test_readme_quotes_the_run_time_and_the_cross_check_of_the_committed_files():
    results = committed_results()
    minutes, seconds = divmod(round(results["seconds"]), 60)
    assert f"took **{minutes} min {seconds} s**" in README
    gaps = []
    for norm in results["config"]["norms"]:
        check = json.loads((ROOT / "docs" / "default-run" / f"autoattack_check_{norm}.json").read_text(encoding="utf-8"))
        assert {(row["norm"], row["seed"]) for row in check["rows"]} == {(norm, s) for s in range(results["config"]["seeds"])}
        gaps += [abs(row["run_minus_ta"]) for row in check["rows"]]
    assert f"within {100 * max(gaps):.1f} points of it on every one" in README


def test_readme_is_at_most_1500_words():
    assert len(README.split()) <= 1500


def _relative_links(text):
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            yield target.split("#", 1)[0]


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "notebooks").glob("*.ipynb"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_at_something_that_exists(page):
    text = page.read_text(encoding="utf-8")
    if page.suffix == ".ipynb":
        text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
    dangling = [t for t in _relative_links(text) if t and not (page.parent / t).exists()]
    assert not dangling, f"{page.relative_to(ROOT)} links to missing {dangling}"
