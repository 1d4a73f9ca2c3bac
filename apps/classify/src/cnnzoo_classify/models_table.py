"""`cnnzoo models [PATTERN]`: the registered models with their cards, as a table."""

from __future__ import annotations

import argparse

import torch
from cnnzoo import CnnzooError, create_model, list_models, model_card


def _count_params(name: str) -> int | None:
    # Built on the meta device: no memory is allocated, so even VGG-19 counts instantly.
    try:
        with torch.device("meta"):
            model = create_model(name)
    except CnnzooError:
        return None
    return sum(p.numel() for p in model.parameters())


def _millions(count: int | None) -> str:
    return "—" if count is None else f"{count / 1e6:.3f}M" if count >= 1e5 else f"{count:,}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def model_rows(pattern: str) -> list[dict[str, str]]:
    rows = []
    for name in list_models(pattern):
        try:
            card = model_card(name)
        except CnnzooError as exc:
            rows.append({"model": name, "paper": f"BROKEN: {exc}"})
            continue
        best = card.best_error()
        rows.append(
            {
                "model": name,
                "paper": f"{card.paper} ({card.authors.split(',')[0]} et al.)",
                "year": str(card.year),
                "input": "x".join(map(str, card.input_size)),
                "params (ours)": _millions(_count_params(name)),
                "params (paper)": _millions(card.published_params),
                "top-1 err %": _percent(best.top1) if best else "—",
                "top-5 err %": _percent(best.top5) if best else "—",
                "on": best.dataset if best else "—",
                "recipe": card.recipe or "—",
            }
        )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cnnzoo models", description="List the registered models with their paper's figures."
    )
    parser.add_argument(
        "pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*'"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    rows = model_rows(args.pattern)
    if not rows:
        print(f"no registered model matches {args.pattern!r}; `cnnzoo models` lists them all.")
        return 1
    columns = list(max(rows, key=len))
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(row.get(c, "") for c in columns) + " |")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cnnzoo models matching {args.pattern!r}: {len(rows)}")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(row.get(c, "") for c in columns))
    Console().print(table)
    return 0
