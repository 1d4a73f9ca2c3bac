"""`cnnzoo models [PATTERN]`: the registered models with their cards, as a table.

`cnnzoo models --write-docs docs/models.md` writes the zoo's docs page from the same rows,
so that page is generated from the model cards and never typed by hand.

`cnnzoo models 'timm/*'` lists a namespace's models (another library's, such as timm's):
their cards hold no paper figures, so their rows show what they have (input size, classes,
published weights), and counting their parameters, which builds each of hundreds of models,
waits for `--count`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from cnnzoo import CnnzooError, list_models, model_card
from cnnzoo.card import ModelCard
from cnnzoo.complexity import complexity

DOCS_COMMAND = "uv run cnnzoo models --write-docs docs/models.md"


def _count(count: int | None) -> str:
    if count is None:
        return "—"
    if count >= 1e9:
        return f"{count / 1e9:.2f}G"
    return f"{count / 1e6:.3f}M" if count >= 1e5 else f"{count:,}"


def _printed(count: int | None) -> str:
    """A published figure without invented digits: "138M", not "138.000M"."""
    text = _count(count)
    if text[-1] in "MG":
        text = text[:-1].rstrip("0").rstrip(".") + text[-1]
    return text


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _sources(card: ModelCard) -> str:
    best = card.best_error()
    parts = [
        ("params", card.params_source),
        ("MACs", card.macs_source if card.published_macs else ""),
        ("errors", best.source if best else ""),
    ]
    return "; ".join(f"{what}: {source}" for what, source in parts if source)


def _paper(card: ModelCard) -> str:
    return f"{card.paper} ({card.authors.split(',')[0]} et al.)" if card.authors else card.paper


def _counts(name: str) -> dict[str, str]:
    try:
        ours = complexity(name)
    except Exception as exc:  # a model that cannot run on the meta device still gets its row
        note = f"cannot count: {type(exc).__name__}"
        return {"params (ours)": note, "MACs (ours)": note}
    return {"params (ours)": _count(ours.params), "MACs (ours)": _count(ours.macs)}


def _weights(card: ModelCard) -> str:
    if not card.weights:
        return "—"
    more = len(card.weights) - 1
    return card.weights[0].name + (f" (+{more})" if more else "")


def namespaced_row(name: str, card: ModelCard, count: bool) -> dict[str, str]:
    """Another library's model: what its card holds, and our counts when asked for."""
    return {
        "model": name,
        "paper": _paper(card),
        "year": str(card.year) if card.year else "—",  # 0: the card does not know
        "input": "x".join(map(str, card.input_size)),
        "classes": str(card.num_classes),
        **(_counts(name) if count else {}),
        "weights": _weights(card),
    }


def model_row(name: str, count: bool = True) -> dict[str, str]:
    try:
        card = model_card(name)
    except CnnzooError as exc:
        return {"model": name, "paper": f"BROKEN: {exc}"}
    if "/" in name:
        return namespaced_row(name, card, count)
    counts = _counts(name)
    best = card.best_error()
    return {
        "model": name,
        "paper": _paper(card),
        "year": str(card.year),
        "input": "x".join(map(str, card.input_size)),
        "params (ours)": counts["params (ours)"],
        "params (paper)": _printed(card.published_params),
        "MACs (ours)": counts["MACs (ours)"],
        "MACs (paper)": _printed(card.published_macs),
        "top-1 err %": _percent(best.top1) if best else "—",
        "top-5 err %": _percent(best.top5) if best else "—",
        "on": f"{best.dataset}, {best.evaluation}" if best else "—",
        "weights": _weights(card),  # published weights create_model(pretrained=...) loads
        "sources": _sources(card),
        "recipe": card.recipe or "—",
    }


def model_rows(pattern: str, count: bool = True) -> list[dict[str, str]]:
    return [model_row(name, count) for name in list_models(pattern)]


def _markdown(rows: list[dict[str, str]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = (row.get(c, "").replace("|", "/") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def docs_page() -> str:
    """The zoo's docs page: every model's paper, figures ours against the paper's, and why
    they differ where they do."""
    names = list_models()
    rows = [model_row(name) for name in names]
    columns = [c for c in rows[0] if c not in ("paper", "year", "recipe")] if rows else []
    papers: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda row: (row.get("year", ""), row["model"])):
        papers.setdefault(row.get("paper", ""), []).append(row)
    lines = [
        "# The models",
        "",
        f"Generated from the model cards by `{DOCS_COMMAND}`; do not edit by hand "
        "(`tests/test_docs.py` fails when this page and the cards disagree).",
        "",
        f"{len(names)} variants. *Ours* is counted from the code: parameters, and the "
        "multiply-adds of convolutions and matrix products for one image at the paper's input "
        "size (`cnnzoo.complexity`), as the papers count them. *Paper* is the figure as "
        "printed, with its source; errors are the paper's, in percent.",
    ]
    for paper, paper_rows in papers.items():
        year = paper_rows[0].get("year", "")
        lines += ["", f"## {paper}, {year}", "", *_markdown(paper_rows, columns)]
    notes = []
    for name in names:
        try:
            card = model_card(name)
        except CnnzooError:
            continue
        if card.notes:
            notes.append(f"- **{name}** ({card.url}): {card.notes}")
    if notes:
        lines += ["", "## Notes: where and why we differ from the paper", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cnnzoo models", description="List the registered models with their paper's figures."
    )
    parser.add_argument(
        "pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*'"
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="every column: papers' and our figures, weights, sources, recipes (the default "
        "on a terminal at least 160 columns wide); else one line per model",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--write-docs", type=Path, metavar="PATH", help="write the docs page of every model"
    )
    parser.add_argument(
        "--count",
        action="store_true",
        help="count parameters and multiply-adds of a namespace's models too ('timm/*'): "
        "slow, it builds each one",
    )
    args = parser.parse_args(argv)
    if args.write_docs is not None:
        args.write_docs.parent.mkdir(parents=True, exist_ok=True)
        args.write_docs.write_text(docs_page())
        print(f"wrote {args.write_docs}")
        return 0
    try:
        rows = model_rows(args.pattern, count=args.count)
    except CnnzooError as exc:  # a broken namespace plugin: the zoo itself still lists
        print(exc)
        return 1
    if not rows:
        print(f"no registered model matches {args.pattern!r}; `cnnzoo models` lists them all.")
        return 1
    columns = [c for c in max(rows, key=len) if c != "sources"]
    if args.markdown:
        print("\n".join(_markdown(rows, columns)))
        return 0
    width = shutil.get_terminal_size(fallback=(250, 24)).columns
    if not (args.wide or (sys.stdout.isatty() and width >= WIDE_TABLE)):
        print("\n".join(_lines(rows)))
        return 0
    from rich.console import Console
    from rich.table import Table

    uncounted = not args.count and any("/" in row["model"] for row in rows)
    table = Table(
        title=f"cnnzoo models matching {args.pattern!r}: {len(rows)}",
        caption="parameters and multiply-adds: add --count (builds each model)"
        if uncounted
        else None,
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(row.get(c, "") for c in columns))
    Console(width=width).print(table)
    return 0


WIDE_TABLE = 160  # columns of a terminal that shows the whole table unfolded
LINE = 100  # the longest line of the one-line-per-model listing


def _lines(rows: list[dict[str, str]]) -> list[str]:
    """One model per line, at most LINE characters (`cnnzoo models | grep resnet`): name,
    year, our parameters and multiply-adds, the paper's best top-1 error, the paper."""
    fields = ("model", "year", "params (ours)", "MACs (ours)", "top-1 err %", "paper")
    header = dict(zip(fields, ("model", "year", "params", "MACs", "top-1%", "paper"), strict=True))
    lines = []
    for row in [header, *rows]:
        name, year, params, macs, top1, paper = (row.get(f, "—") for f in fields)
        line = f"{name:<22} {year:>4} {params:>9} {macs:>8} {top1:>6}  {paper}"
        lines.append(line if len(line) <= LINE else line[: LINE - 1] + "…")
    return lines
