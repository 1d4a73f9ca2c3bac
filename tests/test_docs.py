"""The docs stay true: the models page is generated from the model cards, the results page
from the reproduction rows, and the robustness page lists every bad-input test with their
count."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cnnzoo import list_models
from cnnzoo_classify import report
from cnnzoo_classify.models_table import DOCS_COMMAND, docs_page

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"
ROBUSTNESS = DOCS.with_name("robustness.md")
RESULTS = DOCS.with_name("results.md")


def _marks_bad_input(node: ast.expr) -> bool:
    return "bad_input" in ast.unparse(node)


def bad_input_tests() -> set[str]:
    """Test functions marked `bad_input`, by decorator or by their module's `pytestmark`."""
    found = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        tree = ast.parse(path.read_text())
        module_marked = any(
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "pytestmark" for t in node.targets)
            and _marks_bad_input(node.value)
            for node in tree.body
        )
        found |= {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef)
            and node.name.startswith("test_")
            and (module_marked or any(_marks_bad_input(d) for d in node.decorator_list))
        }
    return found


def test_models_page_is_generated_from_the_cards():
    assert DOCS.is_file(), f"docs/models.md is missing; write it with `{DOCS_COMMAND}`"
    assert DOCS.read_text() == docs_page(), (
        f"docs/models.md is stale: the model cards changed. Regenerate it with `{DOCS_COMMAND}`."
    )


def test_results_page_is_rendered_from_the_reproduction_rows():
    rows = report.read_rows(DOCS.parent / "results" / "reproductions.jsonl")
    assert rows, "docs/results/reproductions.jsonl has no rows"
    assert RESULTS.read_text() == report.page(rows, "images/results"), (
        f"docs/results.md is stale. Regenerate it with `{report.DOCS_COMMAND}`."
    )
    for picture in ("error_vs_params.png", "curves.png"):
        assert (DOCS.parent / "images" / "results" / picture).is_file()


def test_models_page_lists_every_model_with_its_figures():
    page = docs_page()
    for name in list_models():
        row = next(line for line in page.splitlines() if line.startswith(f"| {name} |"))
        params_ours, params_paper = row.split(" | ")[2:4]
        assert params_ours not in ("", "—") and params_paper not in ("", "—"), row


def test_robustness_page_lists_every_bad_input_test_and_their_count():
    page = ROBUSTNESS.read_text()
    tests = bad_input_tests()
    missing = sorted(name for name in tests if f"`{name}`" not in page)
    assert not missing, f"docs/robustness.md does not list {missing}"
    listed = set(re.findall(r"`(test_\w+)`", page))
    assert listed <= tests | {
        "test_evaluation_under_ddp_counts_each_image_once",
        "test_ddp_takes_the_single_process_steps",
        "test_ddp_with_sync_batchnorm_takes_the_single_process_steps",
    }, f"docs/robustness.md names tests that are not marked bad_input: {listed - tests}"
    count = int(re.search(r"\*\*(\d+) bad-input and fault tests\*\*", page).group(1))
    assert count == len(tests)
