"""Recipes: LightningCLI YAML files of each paper's training setup, shipped by arch packages.

An arch package keeps them in a `recipes/` folder beside its code; `find_recipe("lenet5_mnist")`
finds one by name without importing any plugin.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from cnnzoo.errors import CnnzooError
from cnnzoo.registry import GROUP


def recipe_folders() -> list[Path]:
    """The `recipes/` folder of every installed plugin package that has one."""
    folders: dict[str, Path] = {}
    for ep in entry_points(group=GROUP):
        package = ep.value.split(":")[0].split(".")[0]
        if package in folders:
            continue
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location) / "recipes"
            if folder.is_dir():
                folders[package] = folder
    return sorted(folders.values())


def list_recipes() -> dict[str, Path]:
    """Recipe name -> YAML path, for every installed plugin."""
    return {
        path.stem: path for folder in recipe_folders() for path in sorted(folder.glob("*.yaml"))
    }


def find_recipe(name: str) -> Path:
    """The path of a recipe given by name (`lenet5_mnist`) or by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    recipes = list_recipes()
    if name in recipes:
        return recipes[name]
    import difflib

    close = difflib.get_close_matches(name, list(recipes), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise CnnzooError(
        f"no recipe file or recipe named {name!r}.{hint} Installed recipes: "
        f"{', '.join(sorted(recipes)) or 'none'}."
    )


def read_recipe(name: str | Path) -> dict[str, Any]:
    """A recipe's settings, by name or path, as its YAML file writes them."""
    return yaml.safe_load(find_recipe(str(name)).read_text()) or {}


def recipe_data(name: str | Path) -> tuple[str, dict[str, Any]]:
    """The data module a recipe trains on: its class name ("MNISTDataModule") and the
    arguments the recipe gives it."""
    data = read_recipe(name).get("data") or {}
    if not isinstance(data, dict):
        return "", {}
    return data.get("class_path", "").rsplit(".", 1)[-1], data.get("init_args") or {}
