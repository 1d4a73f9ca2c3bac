"""MkDocs hook: the site's pages take their text from the READMEs and the model cards.

A page asks for generated content with a directive line, `<!-- cnnzoo: NAME ARGS -->`:

- `include PATH` puts a repository Markdown file on the page; `include PATH#Heading` only the
  section under the heading that starts with that text. The title (or that heading) is left
  out: the page gives its own. Relative links and pictures are rewritten to work from the
  page: files under `docs/` by their place in the site, a README by the page that includes it
  whole.
- `figures FAMILY` gives the rows of `docs/models.md` for the family's models, grouped by
  paper, with the family's notes: our figures against the paper's, generated from the model
  cards (`tests/test_docs.py` keeps that page equal to the cards, so the site need not
  recount 100 models' multiply-adds, a minute or two on 2 cores).
- `recipes FAMILY` lists the YAML recipes the family ships, each as a code block included
  by `pymdownx.snippets`, so a new recipe appears by itself.
- `api-families` gives the mkdocstrings reference of every arch package's public API.

Problems (an unknown directive, a missing file or section, a link to a page the site does not
have, a model without a row) are logged as warnings, which `mkdocs build --strict` fails on.
"""

from __future__ import annotations

import ast
import logging
import posixpath
import re
from importlib.metadata import entry_points
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.cnnzoo")

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ROOT / "packages" / "archs"
MODELS_PAGE = ROOT / "docs" / "models.md"
MODELS_COMMAND = "uv run cnnzoo models --write-docs docs/models.md"
GROUP = "cnnzoo.models"  # cnnzoo.registry.GROUP, read here without importing torch

DIRECTIVE = re.compile(r"^<!-- cnnzoo: (?P<name>[\w-]+)(?: (?P<args>.*?))? -->$", re.M)
# Inline links and pictures: [text](target "title"); the target has no spaces.
LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\()(?P<target>[^)\s]+)(?P<tail>(?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")

# Which page includes each repository Markdown file whole: links to that file go there.
_owners: dict[str, str] = {}


def families() -> list[str]:
    """The arch packages: one folder each under packages/archs/."""
    return sorted(p.name for p in ARCHS.iterdir() if (p / "pyproject.toml").is_file())


def family_models(family: str) -> list[str]:
    """Registered names whose builder lives in `cnnzoo_<family>` (reads metadata only)."""
    package = f"cnnzoo_{family}"
    return sorted(
        ep.name
        for ep in entry_points(group=GROUP)
        if ep.value.split(":")[0].split(".")[0] == package
    )


def _outside_fences(lines: list[str]):
    """Yield (index, line, in_code) for each line, knowing which lie in fenced code."""
    fence = ""
    for index, line in enumerate(lines):
        match = FENCE.match(line)
        if match and not fence:
            fence = match.group(1)
            yield index, line, True
            continue
        closing = match and match.group(1)[0] == fence[:1] and len(match.group(1)) >= len(fence)
        if closing and line.strip() == match.group(1):
            fence = ""
            yield index, line, True
            continue
        yield index, line, bool(fence)


def _section(lines: list[str], heading: str) -> list[str] | None:
    """The lines of the section whose heading starts with `heading`, down to the next
    heading of the same or a higher level."""
    start = level = None
    for index, line, in_code in _outside_fences(lines):
        match = None if in_code else HEADING.match(line)
        if not match:
            continue
        if start is None and match.group(2).startswith(heading):
            start, level = index, len(match.group(1))
        elif start is not None and len(match.group(1)) <= level:
            return lines[start:index]
    return lines[start:] if start is not None else None


def _rewrite_link(target: str, source: str, page: Page) -> str:
    """A link written in repository file `source`, as it must read on `page`."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
        return target
    path, _, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    if resolved.startswith("docs/"):
        site_path = resolved.removeprefix("docs/")
    elif resolved in _owners:
        site_path = _owners[resolved]
    else:
        log.warning(
            f"{page.file.src_uri}: {source} links to {target!r} ({resolved}), which no page "
            f"of the site holds; include that file whole on a page, or link elsewhere."
        )
        return target
    relative = posixpath.relpath(site_path, posixpath.dirname(page.file.src_uri) or ".")
    return relative + (f"#{anchor}" if anchor else "")


def include(spec: str, page: Page) -> str:
    path, _, heading = spec.partition("#")
    file = ROOT / path
    if not file.is_file():
        log.warning(f"{page.file.src_uri}: cannot include {path}: no such file")
        return ""
    lines = file.read_text(encoding="utf-8").splitlines()
    if heading:
        section = _section(lines, heading)
        if section is None:
            log.warning(f"{page.file.src_uri}: {path} has no heading starting {heading!r}")
            return ""
        lines = section[1:]
    elif lines and lines[0].startswith("# "):
        lines = lines[1:]  # the page has its own title
    out = []
    for _, line, in_code in _outside_fences(lines):
        if not in_code:
            line = LINK.sub(
                lambda m: m["head"] + _rewrite_link(m["target"], path, page) + m["tail"], line
            )
        out.append(line)
    return "\n".join(out).strip("\n")


def _models_page() -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """docs/models.md read back: its table header, each paper's rows, each model's note."""
    header: list[str] = []
    papers: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    paper = ""
    for line in MODELS_PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            paper = line[3:]
        elif line.startswith("| model |"):
            header = [line]
        elif line.startswith("|---") and len(header) == 1:
            header.append(line)
        elif line.startswith("| "):
            papers.setdefault(paper, []).append(line)
        elif match := re.match(r"^- \*\*(\S+)\*\*", line):
            notes[match.group(1)] = line
    return header, papers, notes


def _model_of(row: str) -> str:
    return row.split(" | ")[0].removeprefix("| ")


def figures(family: str, page: Page) -> str:
    names = family_models(family)
    if not names:
        log.warning(f"{page.file.src_uri}: no registered model comes from cnnzoo_{family}")
        return ""
    header, papers, notes = _models_page()
    out, shown = [], set()
    for paper, rows in papers.items():
        mine = [row for row in rows if _model_of(row) in names]
        if mine:
            out += [f"### {paper}", "", *header, *mine, ""]
            shown |= {_model_of(row) for row in mine}
    for name in sorted(set(names) - shown):
        log.warning(
            f"{page.file.src_uri}: docs/models.md has no row for {name}; regenerate it with "
            f"`{MODELS_COMMAND}`"
        )
    mine_notes = [notes[name] for name in names if name in notes]
    if mine_notes:
        out += ["### Where and why we differ from the paper", "", *mine_notes, ""]
    return "\n".join(out).strip("\n")


def recipes(family: str, page: Page) -> str:
    folder = ARCHS / family / "src" / f"cnnzoo_{family}" / "recipes"
    found = sorted(folder.glob("*.yaml"))
    if not found:
        guide = posixpath.relpath("guides/training.md", posixpath.dirname(page.file.src_uri))
        return (
            f"No recipe ships with `cnnzoo-{family}` yet: train with "
            f"`cnnzoo fit --model.arch NAME --data ...` and the options of "
            f"[Training and resuming]({guide}). A recipe added to "
            f"`{folder.relative_to(ROOT)}/` appears here by itself."
        )
    out = []
    for path in found:
        relative = path.relative_to(ROOT).as_posix()
        out += [
            f"### `{path.stem}`",
            "",
            "```bash",
            f"uv run cnnzoo fit --config {path.stem}",
            "```",
            "",
            f'```yaml title="{relative}"',
            f'--8<-- "{relative}"',
            "```",
            "",
        ]
    return "\n".join(out).strip("\n")


def _public_names(package: Path) -> list[str]:
    """The names in a package's `__all__`, read from its source."""
    for node in ast.parse((package / "__init__.py").read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", None) == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return []


def api_families(_: str, page: Page) -> str:
    out = []
    for family in families():
        package = ARCHS / family / "src" / f"cnnzoo_{family}"
        out.append(f"::: cnnzoo_{family}")
        # griffe sees `cnnzoo_lenet.lenet5` as the submodule, not the builder that
        # `__init__` imports over it (mkdocstrings/griffe#124), so such builders come apart.
        for name in _public_names(package):
            if (package / f"{name}.py").is_file():
                out.append(
                    f"::: cnnzoo_{family}.{name}.{name}\n"
                    f"    options:\n      heading_level: 3\n      show_root_full_path: false"
                )
    return "\n\n".join(out)


DIRECTIVES = {
    "include": include,
    "figures": figures,
    "recipes": recipes,
    "api-families": api_families,
}


def directives(docs: Path) -> list[tuple[str, str, str]]:
    """Every directive of every page: (page, name, arguments), pages as docs-relative paths."""
    found = []
    for path in sorted(docs.rglob("*.md")):
        page = path.relative_to(docs).as_posix()
        for match in DIRECTIVE.finditer(path.read_text(encoding="utf-8")):
            found.append((page, match["name"], (match["args"] or "").strip()))
    return found


def on_files(files: Files, config: MkDocsConfig) -> Files:
    _owners.clear()
    for page, name, args in directives(Path(config.docs_dir)):
        if name == "include" and "#" not in args:
            _owners.setdefault(args, page)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    def expand(match: re.Match) -> str:
        directive = DIRECTIVES.get(match["name"])
        if directive is None:
            log.warning(
                f"{page.file.src_uri}: unknown directive {match['name']!r}; "
                f"known: {', '.join(DIRECTIVES)}"
            )
            return match[0]
        return directive((match["args"] or "").strip(), page)

    return DIRECTIVE.sub(expand, markdown)
