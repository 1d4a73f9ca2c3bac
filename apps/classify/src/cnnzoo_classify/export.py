"""`cnnzoo export`: any registered model, random or trained, as ONNX, TorchScript or a
torch.export ExportedProgram, checked against the eager model's logits.

cnnzoo export resnet20 --format onnx                  the paper's defaults, random weights
cnnzoo export --checkpoint runs/lenet5/checkpoints/last.ckpt --format exported-program

Models are exported in eval mode, so those with auxiliary classifiers give plain logits.
Which torch API makes each format, and why:

- exported-program: `torch.export.export`, with the batch dimension dynamic.
- onnx: the dynamo exporter (`torch.onnx.export(..., dynamo=True)`), fed that same
  ExportedProgram, so both formats hold one graph. The legacy TorchScript-based exporter is
  not used: every family exports with the dynamo one.
- torchscript: `torch.jit.trace`. `torch.jit.script` compiles Python source and cannot read
  the protocol's Python (dataclass cards, `AuxLogits`, input checks raising rich errors);
  in eval mode no model branches on its data, so a trace is the whole network. TorchScript
  is deprecated in PyTorch; it is here for runtimes (LibTorch, older mobile) that need it.

Each file carries the model's facts (`ExportMetadata`: arch, paper, input size, classes,
channels and, from a checkpoint's run, the normalisation), and after writing it the file is
run in its own runtime (onnxruntime, `torch.jit.load`, `torch.export.load`) at two batch
sizes and its logits compared with the eager model's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from cnnzoo import CnnzooError, ImageClassifier, InputShapeError, create_model
from cnnzoo.checkpoint import CheckpointError, load_checkpoint_file
from cnnzoo.protocol import ClassifierNet

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
METADATA_FILE = "cnnzoo.json"  # TorchScript's and the ExportedProgram's extra file
# Round trip: max |exported - eager| <= RTOL * max |eager| + ATOL. Float32 graphs that fuse
# or reorder operations differ by about 1e-6 of the logits' scale.
RTOL, ATOL = 1e-4, 1e-6
CHECK_BATCHES = (1, 3)  # neither is the example's batch of 2, so the batch is truly dynamic


class ExportError(CnnzooError, RuntimeError):
    """A model the exporter cannot handle, or an exported file whose logits differ."""


@dataclass(frozen=True)
class ExportMetadata:
    """What an exported file takes and gives, stored in the file itself."""

    arch: str
    paper: str
    year: int
    card_input_size: tuple[int, int, int]  # (C, H, W) the paper trained at
    input_size: tuple[int, int, int]  # (C, H, W) this file takes; the batch is any size
    num_classes: int
    in_chans: int
    weights: str  # "random init" or the checkpoint they come from
    # Inputs are (pixels / 255 - mean) / std per channel; None where no run recorded them.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # The class of each output, from the checkpoint's data; None where it named none.
    class_names: tuple[str, ...] | None = None

    def to_props(self) -> dict[str, str]:
        """ONNX metadata_props: strings as they are, everything else as JSON."""
        return {
            f"cnnzoo.{key}": value if isinstance(value, str) else json.dumps(value)
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ExportMetadata:
        values = {}
        for field in dataclasses.fields(cls):
            text = props.get(f"cnnzoo.{field.name}")
            if text is None and field.default is not dataclasses.MISSING:
                continue  # a file written before the field existed
            values[field.name] = text if field.type == "str" else json.loads(text)
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExportMetadata:
        tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
        return cls(**(values | tuples))


def model_metadata(
    model: ClassifierNet,
    image_size: int,
    weights: str = "random init",
    mean: Iterable[float] | None = None,
    std: Iterable[float] | None = None,
    class_names: Iterable[str] | None = None,
) -> ExportMetadata:
    card = model.card
    return ExportMetadata(
        arch=model.name,
        paper=card.paper,
        year=card.year,
        card_input_size=tuple(card.input_size),
        input_size=(model.in_chans, image_size, image_size),
        num_classes=model.num_classes,
        in_chans=model.in_chans,
        weights=weights,
        mean=None if mean is None else tuple(mean),
        std=None if std is None else tuple(std),
        class_names=None if class_names is None else tuple(class_names),
    )


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    return format


def _format_of(path: Path) -> str:
    return {suffix: format for format, suffix in FORMATS.items()}.get(path.suffix, "torchscript")


@contextlib.contextmanager
def _quiet_torchscript():
    # TorchScript's deprecation notices, and the tracer's warnings about Python checks on
    # shapes (the input checks): the round trip at two batch sizes is what tells.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


@contextlib.contextmanager
def _failing_as(arch: str, format: str, alternatives: Iterable[str]):
    """An exporter's failure, as an ExportError naming the model, the format and the formats
    that do not go through the step that failed."""
    try:
        yield
    except CnnzooError:
        raise
    except Exception as exc:
        reason = next(iter(str(exc).strip().splitlines()), "")
        others = " or ".join(f"--format {f}" for f in alternatives)
        raise ExportError(
            f"{arch} could not be exported to {format} ({type(exc).__name__}: {reason}). "
            f"Try {others}."
        ) from exc


def exported_program(model: ClassifierNet, example: torch.Tensor) -> torch.export.ExportedProgram:
    """`model`'s graph for inputs shaped like `example`, any batch size (the ONNX file and
    the ExportedProgram are both made from it)."""
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))


def export_model(
    model: ClassifierNet,
    format: str,
    path: str | Path,
    example: torch.Tensor,
    metadata: ExportMetadata | None = None,
    program: torch.export.ExportedProgram | None = None,
) -> Path:
    """Write `model` (put in eval mode) in `format` to `path`; `example` is a batch of inputs
    of the size the file will take (its batch size stays free, except for TorchScript where
    the trace follows whatever the network does with it). `program`: the model's
    `exported_program`, if already made, for the onnx and exported-program formats."""
    _check_format(format)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    meta = metadata or model_metadata(model, example.shape[-1])
    extra_files = {METADATA_FILE: json.dumps(dataclasses.asdict(meta))}
    # ONNX is made from the ExportedProgram: a model torch.export cannot capture fails both.
    captured_by_export = ("onnx", "exported-program")
    with torch.no_grad():
        if format == "torchscript":
            with _failing_as(meta.arch, format, captured_by_export), _quiet_torchscript():
                torch.jit.save(torch.jit.trace(model, (example,)), path, extra_files)
            return path
        with _failing_as(meta.arch, format, ["torchscript"]):
            program = program or exported_program(model, example)
        if format == "exported-program":
            torch.export.save(program, path, extra_files=extra_files)
            return path
        with _failing_as(meta.arch, format, ["exported-program", "torchscript"]):
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                input_names=["images"],
                output_names=["logits"],
                verbose=False,
            )
        onnx_program.model.metadata_props.update(meta.to_props())
        onnx_program.save(path)  # weights in a side file only past protobuf's 2 GB
    return path


def load_exported(path: str | Path, format: str | None = None) -> Callable[[torch.Tensor], Any]:
    """The exported file as a function of a float batch, run in the format's own runtime."""
    path = Path(path)
    format = _check_format(format or _format_of(path))
    if format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    if format == "torchscript":
        with _quiet_torchscript():
            return torch.jit.load(path, map_location="cpu")
    return torch.export.load(path).module()


def read_metadata(path: str | Path, format: str | None = None) -> ExportMetadata:
    """The cnnzoo facts stored in an exported file."""
    path = Path(path)
    format = _check_format(format or _format_of(path))
    if format == "onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props})
    extra_files = {METADATA_FILE: ""}
    if format == "torchscript":
        with _quiet_torchscript():
            torch.jit.load(path, map_location="cpu", _extra_files=extra_files)
    else:
        torch.export.load(path, extra_files=extra_files)
    return ExportMetadata.from_dict(json.loads(extra_files[METADATA_FILE]))


def check_round_trip(
    model: ClassifierNet,
    path: str | Path,
    batches: Iterable[torch.Tensor],
    format: str | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> float:
    """Max |exported - eager| over the batches' logits; an ExportError past the tolerance."""
    run = load_exported(path, format)
    model.eval()
    worst = 0.0
    for batch in batches:
        with torch.no_grad():
            eager = model(batch)
            exported = run(batch)
        if exported.shape != eager.shape:
            raise ExportError(
                f"{path} gave logits of shape {tuple(exported.shape)} for a batch of "
                f"{tuple(batch.shape)}; the eager model gives {tuple(eager.shape)}."
            )
        difference = (exported - eager).abs().max().item()
        tolerance = rtol * eager.abs().max().item() + atol
        if not difference <= tolerance:  # also catches NaN
            raise ExportError(
                f"{path} does not reproduce the eager model: its logits differ by up to "
                f"{difference:.3g} (tolerance {tolerance:.3g}) on a batch of "
                f"{tuple(batch.shape)}. Try another --format and report the difference."
            )
        worst = max(worst, difference)
    return worst


@dataclass
class LoadedModel:
    model: ClassifierNet
    weights: str  # "random init" or the checkpoint
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    note: str = ""  # why the normalisation is unknown, where it is
    classes: tuple[str, ...] | None = None  # the class names of the checkpoint's data


def _data_normalization(data: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std a data module normalises with, from its class path and arguments
    (building it is cheap: data modules read their images only in `setup`)."""
    module_name, _, class_name = data["class_path"].rpartition(".")
    datamodule = getattr(importlib.import_module(module_name), class_name)(
        **data.get("init_args", {})
    )
    mean, std = datamodule.normalize.mean, datamodule.normalize.std
    return tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())


def checkpoint_normalization(
    path: str | Path, checkpoint: dict[str, Any]
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str]:
    """(mean, std, note) of the data a checkpoint was trained on: from the checkpoint's data
    module hyper-parameters where it has them, else from the configs LightningCLI saved for
    the runs beside it (runs/<arch>/version_*/config.yaml next to runs/<arch>/checkpoints/)."""
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    if "mean" in hparams and "std" in hparams:
        return tuple(hparams["mean"]), tuple(hparams["std"]), ""
    if "_class_path" in hparams:
        init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
        configs = {"checkpoint": {"class_path": hparams["_class_path"], "init_args": init_args}}
    else:
        configs = {}
        for config in sorted(Path(path).resolve().parent.parent.glob("version_*/config.yaml")):
            data = (yaml.safe_load(config.read_text()) or {}).get("data")
            if isinstance(data, dict) and "class_path" in data:
                configs[str(config)] = data
    if not configs:
        return None, None, "the checkpoint records no data module and no run config is beside it"
    found = set()
    for where, data in configs.items():
        try:
            found.add(_data_normalization(data))
        except Exception as exc:  # the data module cannot be built here (missing root, ...)
            return None, None, f"cannot rebuild the data module of {where}: {exc}"
    if len(found) > 1:
        return None, None, f"the runs beside the checkpoint normalise differently: {sorted(found)}"
    mean, std = found.pop()
    return mean, std, ""


def load_model(
    arch: str | None = None,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> LoadedModel:
    """A registered model in eval mode: trained from a cnnzoo checkpoint, or at random."""
    if checkpoint is None:
        if arch is None:
            raise CnnzooError("name a model (`cnnzoo models` lists them) or pass --checkpoint.")
        return LoadedModel(create_model(arch, num_classes, in_chans).eval(), "random init")
    module = ImageClassifier.from_checkpoint(checkpoint, arch=arch)
    model = module.model.eval()
    contents = load_checkpoint_file(checkpoint, weights_only=False, mmap=True)
    for option, asked, built in (
        ("--num-classes", num_classes, model.num_classes),
        ("--in-chans", in_chans, model.in_chans),
    ):
        if asked is not None and asked != built:
            raise CheckpointError(
                f"the checkpoint's {module.hparams.arch} has "
                f"{option[2:].replace('-', '_')}={built}, not {asked}: leave {option} out with "
                f"--checkpoint."
            )
    mean, std, note = checkpoint_normalization(checkpoint, contents)
    epoch, step = contents.get("epoch"), contents.get("global_step")
    classes = tuple(module.classes) if module.classes else None
    weights = f"{checkpoint} (epoch {epoch}, step {step})"
    return LoadedModel(model, weights, mean, std, note, classes)


def example_batches(
    in_chans: int, image_size: int, sizes: Iterable[int], seed: int = 0
) -> list[torch.Tensor]:
    """Seeded standard-normal batches, about what normalised images look like."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, in_chans, image_size, image_size, generator=generator) for n in sizes]


def _check_image_size(model: ClassifierNet, image_size: int) -> None:
    """Refuse a size the network cannot take, in the protocol's words, before exporting."""
    probe = torch.zeros(1, model.in_chans, image_size, image_size)
    model.check_input(probe)
    try:
        with torch.no_grad():
            model(probe)
    except RuntimeError as exc:
        raise InputShapeError(
            f"{model.name} cannot take {image_size}x{image_size} images ({exc}). Pass a larger "
            f"--image-size (its paper used {model.card.input_size[1]})."
        ) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnzoo export",
        description="Export a registered model (random weights, or trained ones from a cnnzoo "
        "checkpoint) to ONNX, TorchScript or a torch.export ExportedProgram, and check that "
        "the file gives the eager model's logits.",
        epilog="The file holds the model's name, paper, input size, classes, channels and "
        "(from a checkpoint's run) the input normalisation: `read_metadata` in "
        "cnnzoo_classify.export reads them back.",
    )
    parser.add_argument(
        "model",
        nargs="?",
        help="registered model name (`cnnzoo models`); optional with "
        "--checkpoint, which names its own",
    )
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint written by `cnnzoo fit`")
    parser.add_argument("--format", required=True, choices=list(FORMATS))
    parser.add_argument(
        "--output",
        type=Path,
        help="file to write; default: beside the checkpoint, or "
        "<model>.onnx|.pt|.pt2 in the current folder",
    )
    parser.add_argument(
        "--image-size", type=int, help="height and width the file takes (default: the paper's)"
    )
    parser.add_argument("--num-classes", type=int, help="without a checkpoint: the classes")
    parser.add_argument("--in-chans", type=int, help="without a checkpoint: the input channels")
    parser.add_argument(
        "--no-check", action="store_true", help="skip running the file against the eager model"
    )
    return parser


def export(args: argparse.Namespace) -> Path:
    loaded = load_model(args.model, args.checkpoint, args.num_classes, args.in_chans)
    model = loaded.model
    image_size = args.image_size or model.card.input_size[-1]
    _check_image_size(model, image_size)
    suffix = FORMATS[args.format]
    if args.output is not None:
        output = args.output
    elif args.checkpoint is not None:
        output = args.checkpoint.with_suffix(suffix)
    else:
        output = Path(f"{model.name}{suffix}")
    metadata = model_metadata(
        model, image_size, loaded.weights, loaded.mean, loaded.std, loaded.classes
    )
    example = example_batches(model.in_chans, image_size, [2])[0]
    export_model(model, args.format, output, example, metadata)
    print(f"wrote {output} ({args.format}, {model.name}, weights: {loaded.weights})")
    print(
        f"input: float32 images (N, {model.in_chans}, {image_size}, {image_size}), N any; "
        f"output: (N, {model.num_classes}) logits"
    )
    if loaded.mean is not None:
        print(
            f"normalise the images first: (pixels / 255 - mean) / std, mean {loaded.mean}, "
            f"std {loaded.std}"
        )
    elif args.checkpoint is not None:
        print(f"input normalisation unknown ({loaded.note}); the file does not record it")
    if not args.no_check:
        batches = example_batches(model.in_chans, image_size, CHECK_BATCHES)
        difference = check_round_trip(model, output, batches, args.format)
        sizes = " and ".join(str(n) for n in CHECK_BATCHES)
        print(
            f"round trip: max |exported - eager| logit difference {difference:.3g} "
            f"(batches of {sizes})"
        )
    return output


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        export(args)
    except CnnzooError as exc:
        print(f"cnnzoo export: error: {exc}", file=sys.stderr)
        return 2
    return 0
