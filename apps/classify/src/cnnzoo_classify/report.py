"""`cnnzoo report`: the rows `cnnzoo reproduce` wrote, as a Markdown table and two plots.

    cnnzoo report                                    print the table of runs/reproductions.jsonl
    cnnzoo report --results docs/results/reproductions.jsonl --write docs/results.md

With `--write`, the page gets the table, each row's command, and two pictures beside it:
top-1 error against parameters (ours filled, the paper's hollow, joined by a line) and the
validation error curves. `tests/test_docs.py` checks that the page in docs is what this
renders from the rows in docs, so the page can never disagree with them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnzoo import CnnzooError

from cnnzoo_classify.reproduce import RESULTS

DOCS_COMMAND = (
    "uv run cnnzoo report --results docs/results/reproductions.jsonl --write docs/results.md"
)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise CnnzooError(
            f"no results file at {path}: `cnnzoo reproduce RECIPE --results {path}` writes one."
        )
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CnnzooError(f"{path}, line {number}, is not a JSON row: {exc}") from exc
    return rows


def _error(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _params(count: int | None) -> str:
    return "—" if count is None else f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count:,}"


def _duration(seconds: float, sittings: int = 1) -> str:
    minutes = seconds / 60
    took = f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return took if sittings == 1 else f"{took} in {sittings} sittings"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as one Markdown table, in the order they were run."""
    lines = [
        "| # | model | dataset | top-1 err % (paper) | top-5 err % (paper) | params | epochs "
        "| wall time | hardware | commit | W&B run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, row in enumerate(rows, start=1):
        top1 = f"**{_error(row['top1_error'])}** ({_error(row.get('paper_top1_error'))})"
        top5 = f"{_error(row.get('top5_error'))} ({_error(row.get('paper_top5_error'))})"
        took = _duration(row["wall_time_s"], row.get("sittings", 1))
        lines.append(
            f"| {number} | {row['model']} | {row['dataset']} | {top1} | {top5} "
            f"| {_params(row.get('params'))} | {row['epochs']} | {took} "
            f"| {row['device']} | {row.get('git_commit') or '—'} "
            f"| {row.get('wandb_run_id') or '—'} |"
        )
    return "\n".join(lines)


def commands(rows: list[dict[str, Any]]) -> str:
    """Each row's command, with the note its runner gave (`--note`: what else the machine
    was doing, what was cut short)."""
    return "\n".join(
        f"{n}. `{row['command']}`" + (f" {row['note']}" if row.get("note") else "")
        for n, row in enumerate(rows, start=1)
    )


def plot_error_vs_params(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for row in rows:
        x, ours, paper = row["params"], row["top1_error"], row.get("paper_top1_error")
        (point,) = axes.plot([x], [ours], "o", label=f"{row['model']} ({row['dataset']})")
        if paper is not None:
            axes.plot([x], [paper], "o", mfc="none", color=point.get_color())
            axes.plot([x, x], [ours, paper], "-", color=point.get_color(), alpha=0.5)
    axes.set_xscale("log")
    axes.set_xlabel("parameters")
    axes.set_ylabel("top-1 test error (%)")
    axes.set_title("ours (filled) and the paper's (hollow)")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for number, row in enumerate(rows, start=1):
        curve = row.get("curves") or {}
        if curve.get("epoch"):
            axes.plot(curve["epoch"], curve["val_top1_error"], label=f"#{number} {row['model']}")
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation top-1 error (%)")
    axes.set_yscale("log")
    # Errors read as plain percentages (1, 2, 5), not as powers of ten.
    axes.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def page(rows: list[dict[str, Any]], images: str) -> str:
    """The Markdown page: table, commands, pictures (paths relative to the page)."""
    return (
        "# Reproductions\n\n"
        f"Generated by `{DOCS_COMMAND}` from the rows that `cnnzoo reproduce` appended to "
        "`docs/results/reproductions.jsonl`; do not edit by hand. Each row's top-1 and top-5 "
        "test errors are ours, the paper's in brackets (for the same dataset, from the model "
        "card; — where the paper has none).\n\n"
        f"{table(rows)}\n\n"
        "## Commands\n\nEach row, made again:\n\n"
        f"{commands(rows)}\n\n"
        "## Error against parameters\n\n"
        f"![top-1 error against parameters]({images}/error_vs_params.png)\n\n"
        "## Validation error by epoch\n\n"
        f"![validation error curves]({images}/curves.png)\n"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cnnzoo report", description="Render `cnnzoo reproduce` rows as a Markdown table."
    )
    parser.add_argument("--results", default=RESULTS, help=f"JSON-lines file (default {RESULTS})")
    parser.add_argument("--write", help="write a Markdown page here, and its plots beside it")
    options = parser.parse_args(argv)
    rows = read_rows(options.results)
    if not options.write:
        print(table(rows))
        return 0
    target = Path(options.write)
    images = target.parent / "images" / "results"
    images.mkdir(parents=True, exist_ok=True)
    plot_error_vs_params(rows, images / "error_vs_params.png")
    plot_curves(rows, images / "curves.png")
    target.write_text(page(rows, "images/results"))
    print(f"wrote {target} and the plots in {images}")
    return 0
