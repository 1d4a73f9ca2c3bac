"""The `cnnzoo` command: LightningCLI around the core ImageClassifier and the data modules.

cnnzoo models [PATTERN]              the registered models and their papers' figures
cnnzoo recipes                       the installed recipes
cnnzoo fit --config lenet5_mnist     train with a paper's recipe (a name or a YAML path)
cnnzoo fit --model.arch alexnet --data ImageFolderDataModule --data.root /imagenet
cnnzoo fit --config lenet5_mnist --ckpt_path last      resume where the run stopped
cnnzoo test|validate --config ... --ckpt_path runs/lenet5/checkpoints/last.ckpt
cnnzoo predict --ckpt_path PATH.ckpt --data ...  the model comes from the checkpoint
cnnzoo explain VIEW ...              deconvnet, occlusion, filters, retrieval, Grad-CAM
cnnzoo export [MODEL] --checkpoint PATH --format onnx|torchscript|exported-program
cnnzoo reproduce RECIPE [fit options]   run a paper's recipe, append a row of results
cnnzoo report                        the rows as a Markdown table and plots
"""

from __future__ import annotations

import sys

from cnnzoo.recipes import list_recipes
from cnnzoo.runs import run_command

from cnnzoo_classify import export, models_table, report, reproduce
from cnnzoo_classify.trainer import make_cli

# `cnnzoo --help`: every subcommand, with its purpose.
SUBCOMMANDS = {
    "fit": "train a model (--config RECIPE for a paper's setup; --ckpt_path last resumes)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "class probabilities for a data module's images, from a checkpoint",
    "models": "the registered models and their papers' figures (PATTERN, --wide, --markdown)",
    "recipes": "the installed recipes: the papers' training setups",
    "reproduce": "run a paper's recipe and append a row of results beside the paper's",
    "report": "the rows of results as a Markdown table and plots",
    "explain": "look inside a trained model: deconvnet, occlusion, filters, Grad-CAM, ...",
    "export": "write a model as ONNX, TorchScript or an exported program",
}


def _print_recipes() -> int:
    for name, path in list_recipes().items():
        print(f"{name:32s} {path}")
    return 0


def _print_help() -> int:
    print("usage: cnnzoo SUBCOMMAND [options]   (cnnzoo SUBCOMMAND --help for its options)\n")
    for name, purpose in SUBCOMMANDS.items():
        print(f"  {name:10s} {purpose}")
    print("\n  --debug    show the traceback of an error")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in ([], ["-h"], ["--help"]):
        return _print_help()
    commands = {"models": models_table, "export": export, "reproduce": reproduce, "report": report}
    if argv[0] in commands:
        return commands[argv[0]].main(argv[1:])
    if argv[:1] == ["recipes"]:
        return _print_recipes()
    if argv[:1] == ["explain"]:
        # An optional package: the command names it when it is missing.
        try:
            from cnnzoo_explain.cli import main as explain_main
        except ImportError as exc:
            raise SystemExit(
                f"`cnnzoo explain` needs the cnnzoo-explain package: pip install cnnzoo-explain "
                f"({exc})"
            ) from exc
        return explain_main(argv[1:])
    return make_cli(argv).exit_status()


def run(argv: list[str] | None = None) -> int:
    """The `cnnzoo` command (see `cnnzoo.runs.run_command`)."""
    return run_command(main, "cnnzoo", argv)


if __name__ == "__main__":
    sys.exit(run())
