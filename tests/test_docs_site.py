"""The docs site stays whole: every family has its paper page, every README and every page is
on the site, every core module in the API reference, and the build reaches for no network.
CI builds the site itself (`uv run mkdocs build --strict`); these checks read its sources."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from cnnzoo import list_models

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIG = yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


def nav_pages(nav=None) -> list[tuple[str, str]]:
    """(section, page) for every page in the nav, `section` the top-level entry's title."""
    pages = []
    for entry in CONFIG["nav"] if nav is None else nav:
        for title, target in entry.items():
            if isinstance(target, str):
                pages.append((title, target))
            else:
                pages += [(title, page) for _, page in nav_pages(target)]
    return pages


def directives(name: str) -> dict[str, list[str]]:
    """Page -> the arguments of its directives called `name`."""
    found: dict[str, list[str]] = {}
    for page, directive, args in hooks.directives(DOCS):
        if directive == name:
            found.setdefault(page, []).append(args)
    return found


def page_for(path: str) -> SimpleNamespace:
    return SimpleNamespace(file=SimpleNamespace(src_uri=path))


def test_every_family_has_a_paper_page_with_its_figures_and_recipes():
    papers = {page for section, page in nav_pages() if section == "Papers"}
    figures, recipes = directives("figures"), directives("recipes")
    # A package that registers models has a paper; a bridge (timm's models) registers none.
    paper_families = {family for family in hooks.families() if hooks.family_models(family)}
    assert paper_families >= {"lenet", "alexnet", "resnet", "mnasnet"}
    for family in paper_families:
        page = f"papers/{family}.md"
        assert page in papers, f"cnnzoo-{family} has no page under Papers in mkdocs.yml's nav"
        assert figures.get(page) == [family] and recipes.get(page) == [family], (
            f"{page} must show `<!-- cnnzoo: figures {family} -->` and "
            f"`<!-- cnnzoo: recipes {family} -->`"
        )
    assert {page.removeprefix("papers/").removesuffix(".md") for page in papers} == (
        paper_families
    ), "a page under Papers belongs to no arch package"


def test_every_readme_is_included_whole_on_exactly_one_page_in_the_nav():
    patterns = ("README.md", "packages/*/README.md", "packages/archs/*/README.md")
    patterns += ("apps/*/README.md", "benchmarks/README.md")
    readmes = {path.relative_to(ROOT).as_posix() for p in patterns for path in ROOT.glob(p)}
    owners: dict[str, list[str]] = {}
    for page, args_list in directives("include").items():
        for args in args_list:
            if "#" not in args:
                owners.setdefault(args, []).append(page)
    in_nav = {page for _, page in nav_pages()}
    for readme in sorted(readmes):
        pages = owners.get(readme, [])
        assert len(pages) == 1, f"{readme} is included whole on {pages or 'no page'}; want one"
        assert pages[0] in in_nav, f"{pages[0]} (which shows {readme}) is not in the nav"


def test_every_page_in_docs_is_in_the_nav_and_every_nav_entry_exists():
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    in_nav = [page for _, page in nav_pages()]
    assert len(in_nav) == len(set(in_nav)), "a page stands twice in the nav"
    assert pages == set(in_nav), (
        f"not in the nav: {sorted(pages - set(in_nav))}; "
        f"in the nav but missing: {sorted(set(in_nav) - pages)}"
    )


def test_every_core_module_is_in_the_api_reference():
    text = (DOCS / "api" / "cnnzoo.md").read_text()
    documented = set(re.findall(r"^::: cnnzoo\.(\w+)$", text, re.M))
    modules = {
        path.stem
        for path in (ROOT / "packages" / "core" / "src" / "cnnzoo").glob("*.py")
        if not path.name.startswith("_")
    }
    missing = sorted(modules - documented)
    assert not missing, f"add `::: cnnzoo.<module>` to docs/api/cnnzoo.md for {missing}"


def test_the_build_reaches_for_no_network():
    plugins = [p if isinstance(p, str) else next(iter(p)) for p in CONFIG["plugins"]]
    assert not {"social", "privacy", "material/social", "material/privacy"} & set(plugins)
    assert CONFIG["theme"].get("font") is False, "web fonts would be fetched from Google"
    handlers = next(p for p in CONFIG["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python = handlers["mkdocstrings"]["handlers"]["python"]
    assert "inventories" not in python and "import" not in python, "inventories are downloads"


def test_include_rewrites_links_from_the_readme_to_the_page():
    hooks.on_files(None, SimpleNamespace(docs_dir=str(DOCS)))
    page = page_for("papers/zfnet.md")
    text = hooks.include("apps/explain/README.md#occlusion", page)
    assert "](../images/explain/occlusion_0_mnist_test_0.png)" in text
    assert not text.startswith("### occlusion"), "the page gives its own heading"
    home = hooks.include("README.md", page_for("index.md"))
    assert "](guides/detection.md)" in home and "](robustness.md)" in home
    assert not home.startswith("# cnnzoo")


@pytest.mark.parametrize("family", ["lenet", "resnet", "mobilenet"])
def test_figures_give_a_row_for_every_model_of_the_family(family):
    table = hooks.figures(family, page_for(f"papers/{family}.md"))
    rows = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()]
    rows = {row for row in rows if row and not row.startswith(("|", "#", "-", "model"))}
    names = hooks.family_models(family)
    assert names and set(names) <= set(list_models())
    assert rows == set(names), "a model is missing, or another family's model is on the page"


def test_recipes_show_every_shipped_recipe_and_say_so_where_there_is_none():
    lenet = hooks.recipes("lenet", page_for("papers/lenet.md"))
    shipped = sorted((ROOT / "packages/archs/lenet/src/cnnzoo_lenet/recipes").glob("*.yaml"))
    assert shipped and all(f'--8<-- "{p.relative_to(ROOT)}"' in lenet for p in shipped)
    assert "No recipe ships" in hooks.recipes("nin", page_for("papers/nin.md")) or any(
        (ROOT / "packages/archs/nin/src/cnnzoo_nin/recipes").glob("*.yaml")
    )
