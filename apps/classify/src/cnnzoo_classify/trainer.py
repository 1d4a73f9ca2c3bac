"""`cnnzoo fit|validate|test|predict`: LightningCLI around the core ImageClassifier and the
data modules, on the run framework both commands share (`cnnzoo.runs`)."""

from __future__ import annotations

from cnnzoo import ImageClassifier, InputShapeError, model_card
from cnnzoo.recipes import find_recipe
from cnnzoo.runs import RunCLI
from cnnzoo_data import ClassificationDataModule
from jsonargparse import Namespace


class CnnzooCLI(RunCLI):
    """The classification command's runs: the data decides num_classes and in_chans, the
    model card the input size, runs land in runs/<arch>/."""

    best_monitor = "val/top1_error"
    best_mode = "min"
    best_filename = "epoch{epoch:03d}-top1err{val/top1_error:.4f}"
    default_data = "cnnzoo_data.DigitsDataModule"
    run_callbacks = (
        {"class_path": "cnnzoo.callbacks.PredictionGallery"},
        {"class_path": "cnnzoo.callbacks.PredictionWriter"},
    )

    def add_run_arguments(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
        # The model takes one optimiser step on each batch of the chunks the data yields.
        parser.link_arguments("data.chunk", "model.chunk", apply_on="instantiate")

    def run_name(self, config: Namespace) -> str:
        return config.model.arch

    def check_config(self, config: Namespace) -> None:
        arch = config.model.arch
        card = model_card(arch)  # fails here, clearly, on an unknown name
        data_args = config.data.init_args
        if data_args.get("image_size") is None:
            data_args.image_size = card.input_size[-1]
        if card.min_input_size and data_args.image_size < card.min_input_size:
            raise InputShapeError(
                f"{arch} needs images of at least {card.min_input_size}x{card.min_input_size} "
                f"(its paper used {card.input_size[1]}x{card.input_size[2]}); "
                f"--data.image_size is {data_args.image_size}. Leave it out to use the paper's."
            )


def _expand_recipe_names(argv: list[str]) -> list[str]:
    """Let `--config lenet5_mnist` name a shipped recipe as well as a YAML path."""
    expanded = list(argv)
    for i, arg in enumerate(expanded):
        if arg == "--config" and i + 1 < len(expanded):
            expanded[i + 1] = str(find_recipe(expanded[i + 1]))
        elif arg.startswith("--config="):
            expanded[i] = "--config=" + str(find_recipe(arg.split("=", 1)[1]))
    return expanded


def make_cli(argv: list[str], run: bool = True) -> CnnzooCLI:
    """Run a LightningCLI subcommand (fit, validate, test, predict) and return the CLI, whose
    trainer, model and data module hold what the run ended with. With `run=False`, `argv`
    has no subcommand and the CLI only builds them (benchmarks time their own `fit`)."""
    return CnnzooCLI(
        ImageClassifier, ClassificationDataModule, args=_expand_recipe_names(argv), run=run
    )
