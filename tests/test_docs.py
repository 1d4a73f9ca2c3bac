"""The docs page of the models is generated from the model cards and kept current."""

from __future__ import annotations

from pathlib import Path

from cnnzoo import list_models
from cnnzoo_classify.models_table import DOCS_COMMAND, docs_page

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def test_models_page_is_generated_from_the_cards():
    assert DOCS.is_file(), f"docs/models.md is missing; write it with `{DOCS_COMMAND}`"
    assert DOCS.read_text() == docs_page(), (
        f"docs/models.md is stale: the model cards changed. Regenerate it with `{DOCS_COMMAND}`."
    )


def test_models_page_lists_every_model_with_its_figures():
    page = docs_page()
    for name in list_models():
        row = next(line for line in page.splitlines() if line.startswith(f"| {name} |"))
        params_ours, params_paper = row.split(" | ")[2:4]
        assert params_ours not in ("", "—") and params_paper not in ("", "—"), row
