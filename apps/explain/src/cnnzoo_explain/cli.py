"""`cnnzoo explain <view>`: look inside any registered model or cnnzoo checkpoint.

    deconvnet  Zeiler & Fergus §2.1, Fig. 2: the top-9 images of a channel and their projections
    occlusion  Zeiler & Fergus §4.2, Fig. 7: a grey square slid over the image
    filters    AlexNet Fig. 3: the first layer's kernels
    retrieval  AlexNet §6.1, Fig. 4: nearest training images in the last hidden layer
    gradcam    Selvaraju et al. 2017: the class-weighted map of a layer
    transformer  Jaderberg et al. 2015, Fig. 3: a spatial transformer's inputs and outputs
    capsules   Sabour et al. 2017, Figs. 3-4: reconstructions from the digit capsules, and
               what each capsule dimension encodes

    cnnzoo explain occlusion --checkpoint runs/lenet5/checkpoints/last.ckpt \\
        --dataset mnist --data-root ../shared/data/mnist --image mnist:test:0
    cnnzoo explain filters --model alexnet
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from cnnzoo import CnnzooError, model_card
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnnzoo_explain import (
    capsules,
    deconvnet,
    filters,
    gradcam,
    occlusion,
    retrieval,
    transformer,
)
from cnnzoo_explain.images import (
    DATASETS,
    DatasetImages,
    ImageBatch,
    Preprocessing,
    dataset_of,
    load_images,
    recipe_images,
)
from cnnzoo_explain.layers import default_layer, find_layer
from cnnzoo_explain.loading import input_size, load_checkpoint

VIEWS = ("deconvnet", "occlusion", "filters", "retrieval", "gradcam", "transformer", "capsules")
# The views that scan a dataset, and the dataset they pick for a model's channels.
DEFAULT_DATASET = {1: "mnist", 3: "cifar10"}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    source = common.add_argument_group("model and images")
    source.add_argument("--model", help="registered model name (random weights); `cnnzoo models`")
    source.add_argument("--checkpoint", help="a cnnzoo checkpoint (its arch is read from it)")
    source.add_argument(
        "--image",
        action="extend",
        nargs="+",
        default=[],
        metavar="SPEC",
        help="image file, folder, skimage:<photo> or <dataset>:<split>:<indices> "
        "(e.g. mnist:test:0-8); repeatable",
    )
    source.add_argument("--dataset", choices=sorted(DATASETS), help="the data the model saw")
    source.add_argument("--data-root", help="the dataset's root (default: its data module's)")
    output = common.add_argument_group("output")
    output.add_argument("--out", help="folder for the PNGs (default: runs/explain/<view>/)")
    output.add_argument("--wandb", action="store_true", help="also log the PNGs to W&B")
    output.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")

    parser = argparse.ArgumentParser(
        prog="cnnzoo explain",
        description="Seeing inside the networks: one picture per view, as the papers drew them.",
    )
    views = parser.add_subparsers(dest="view", required=True, metavar="<view>")

    def view(name: str, help: str) -> argparse.ArgumentParser:
        return views.add_parser(name, parents=[common], help=help, description=help)

    layer_help = "dotted module name (default: the last feature stage with maps over 1x1)"
    deconv = view("deconvnet", "Zeiler & Fergus Fig. 2: top-9 image patches and projections")
    deconv.add_argument("--layer", help=layer_help)
    deconv.add_argument("--channel", type=int, nargs="+", default=[0])
    deconv.add_argument("--top", type=int, default=9, help="images to show per channel")
    deconv.add_argument("--split", default="test", choices=("train", "test"))
    deconv.add_argument("--limit", type=int, default=10_000, help="images of the split to scan")
    deconv.add_argument("--batch-size", type=int, default=256)

    occlude = view("occlusion", "Zeiler & Fergus Fig. 7: occlusion sensitivity maps")
    occlude.add_argument("--layer", help=layer_help)
    occlude.add_argument("--size", type=int, default=None, help="square side (default: 1/4 image)")
    occlude.add_argument("--stride", type=int, default=None, help="default: half the size")
    occlude.add_argument("--target-class", help="class index or name (default: the label)")

    view("filters", "AlexNet Fig. 3: the first convolution's kernels")

    retrieve = view("retrieval", "AlexNet Fig. 4: nearest training images in the last layer")
    retrieve.add_argument("--k", type=int, default=6, help="neighbours per query")
    retrieve.add_argument("--split", default="train", choices=("train", "test"))
    retrieve.add_argument("--limit", type=int, default=10_000, help="images to search")
    retrieve.add_argument("--batch-size", type=int, default=256)

    cam = view("gradcam", "Selvaraju et al. 2017: Grad-CAM over the image")
    cam.add_argument("--layer", help=layer_help)
    cam.add_argument("--target-class", help="class index or name (default: the label)")

    spatial = view("transformer", "Jaderberg et al. Fig. 3: a spatial transformer's U and V")
    spatial.add_argument(
        "--distortion",
        help="distorted MNIST for mnist:<split>:<indices> images: r, rts, p or e (default: "
        "the one the model's recipe trains on; none for the plain digits)",
    )

    view("capsules", "Sabour et al. Figs. 3-4: reconstructions and capsule dimensions")
    return parser


class Session:
    """What every view starts from: the model, its data and its images."""

    def __init__(self, args: argparse.Namespace, needs_dataset: bool) -> None:
        self.args = args
        self.device = torch.device(args.device)
        model = load_checkpoint(args.checkpoint, args.model) if args.checkpoint else None
        name = model.name if model is not None else args.model
        if name is None:
            raise CnnzooError(
                "name a model with --model (e.g. --model lenet5) or give --checkpoint."
            )
        card = model.card if model is not None else model_card(name)
        self.image_size = input_size(model) if model is not None else card.input_size[-1]
        dataset = args.dataset or dataset_of(args.image)
        if dataset is None and needs_dataset:
            in_chans = model.in_chans if model is not None else card.input_size[0]
            dataset = DEFAULT_DATASET.get(in_chans, "cifar10")
        # The images as the model's recipe prepared them (CapsNet: unnormalised 28x28 digits).
        self.data = (
            DatasetImages(dataset, args.data_root, self.image_size, **recipe_images(card, dataset))
            if dataset
            else None
        )
        if model is None:
            from cnnzoo import create_model

            data = self.data
            model = create_model(
                name,
                num_classes=data.datamodule.num_classes if data else None,
                in_chans=data.in_chans if data else None,
            )
        self.model = model.to(self.device).eval()
        self.name = name
        # The class names: the named dataset's, else those the checkpoint's data had.
        self.classes = (
            (self.data.classes if self.data else None) or getattr(model, "classes", None) or []
        )
        self.preprocessing = Preprocessing(model.in_chans, self.image_size, self.data)
        self.out = Path(args.out or Path("runs") / "explain" / args.view)

    def images(self, default: str) -> ImageBatch:
        specs = self.args.image or ([default] if self.data else ["skimage:astronaut"])
        batch = load_images(specs, self.preprocessing, self.data)
        batch.inputs = batch.inputs.to(self.device)
        return batch

    def layer(self, inputs: torch.Tensor) -> str:
        if self.args.layer:
            find_layer(self.model, self.args.layer)
            return self.args.layer
        return default_layer(self.model, inputs)

    def class_name(self, index: int) -> str:
        classes = self.classes
        return classes[index] if index < len(classes) else f"class {index}"

    def target_classes(self, batch: ImageBatch) -> list[int | None]:
        wanted = getattr(self.args, "target_class", None)
        if wanted is None:
            return list(batch.labels)
        classes = self.classes
        if wanted in classes:
            return [classes.index(wanted)] * len(batch.labels)
        if not wanted.isdigit() or int(wanted) >= self.model.num_classes:
            raise CnnzooError(
                f"--target-class {wanted!r} is neither a class index below "
                f"{self.model.num_classes} nor a class name ({', '.join(classes) or 'none'})."
            )
        return [int(wanted)] * len(batch.labels)

    def title(self, what: str) -> str:
        source = Path(self.args.checkpoint).name if self.args.checkpoint else "random weights"
        return f"{self.name} ({source}): {what}"


def _slug(text: str) -> str:
    """A file-name part for an image's name: an image file's stem ("00000.png" gives
    "00000", not "00000.png.png" once the view's own ".png" follows)."""
    if Path(text).suffix.lower() in IMG_EXTENSIONS:
        text = Path(text).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def run_deconvnet(session: Session) -> list[Path]:
    args, model, data = session.args, session.model, session.data
    probe = session.preprocessing(data.pixels(args.split, [0])[0]).to(session.device)
    layer = session.layer(probe)
    written = []
    for channel in args.channel:
        top = deconvnet.strongest_images(
            model,
            layer,
            channel,
            data,
            session.preprocessing,
            split=args.split,
            limit=args.limit,
            top=args.top,
            batch_size=args.batch_size,
        )
        pixels, _ = data.pixels(args.split, top.indices)
        inputs = session.preprocessing(pixels).to(session.device)
        projection = deconvnet.project(model, layer, inputs, channel)
        boxes = deconvnet.receptive_fields(model, layer, inputs.shape[1:], projection.locations)
        path = session.out / f"deconvnet_{_slug(layer)}_{channel}.png"
        title = session.title(f"{layer} channel {channel}, top {len(boxes)} of {data.name}")
        deconvnet.save_figure(projection, pixels, boxes, str(path), title)
        written.append(path)
    return written


def run_occlusion(session: Session) -> list[Path]:
    args = session.args
    batch = session.images(default=f"{session.data.name}:test:0" if session.data else "")
    layer = session.layer(batch.inputs)
    targets = session.target_classes(batch)
    size = args.size or max(2, session.image_size // 4)
    stride = args.stride or max(1, size // 2)
    written = []
    for index, name in enumerate(batch.names):
        maps = occlusion.occlusion_maps(
            session.model, batch.inputs[index], layer, targets[index], size, stride
        )
        path = session.out / f"occlusion_{index}_{_slug(name)}.png"
        title = session.title(f"occluding {name}")
        occlusion.save_figure(
            maps, batch.pixels[index], str(path), title, session.class_name(maps.target)
        )
        written.append(path)
    return written


def run_filters(session: Session) -> list[Path]:
    model = session.model
    shape = (model.in_chans, session.image_size, session.image_size)
    written = []
    for name in filters.first_convolutions(model, shape):
        weight = find_layer(model, name).weight
        grid = filters.filter_grid(weight)
        kernels = "x".join(str(s) for s in weight.shape[1:])
        path = session.out / f"filters_{_slug(name)}.png"
        title = session.title(f"{name}: {weight.shape[0]} kernels of {kernels}")
        filters.save_figure(grid, str(path), title)
        written.append(path)
    return written


def run_retrieval(session: Session) -> list[Path]:
    args, data = session.args, session.data
    batch = session.images(default=f"{data.name}:test:0-4")
    database = retrieval.embed_dataset(
        session.model, data, session.preprocessing, args.split, args.limit, args.batch_size
    )
    queries = retrieval.embed(session.model, batch.inputs).cpu()
    found = retrieval.nearest(queries, database, args.k)
    rows = [data.pixels(args.split, row.tolist()) for row in found.indices]
    from cnnzoo_explain.images import to_channels

    neighbour_pixels = torch.stack(
        [to_channels(pixels, session.model.in_chans) for pixels, _ in rows]
    )
    neighbour_names = [
        [
            f"#{i} ({session.class_name(label)})"
            for i, label in zip(row.tolist(), labels, strict=True)
        ]
        for row, (_, labels) in zip(found.indices, rows, strict=True)
    ]
    query_names = [
        name if label is None else f"{name} ({session.class_name(label)})"
        for name, label in zip(batch.names, batch.labels, strict=True)
    ]
    path = session.out / "retrieval.png"
    title = session.title(f"nearest {data.name} {args.split} images in the last hidden layer")
    retrieval.save_figure(
        batch.pixels, query_names, neighbour_pixels, neighbour_names, found, str(path), title
    )
    return [path]


def run_gradcam(session: Session) -> list[Path]:
    batch = session.images(default=f"{session.data.name}:test:0-3" if session.data else "")
    layer = session.layer(batch.inputs)
    cam = gradcam.grad_cam(session.model, batch.inputs, layer, session.target_classes(batch))
    path = session.out / "gradcam.png"
    class_names = [session.class_name(c) for c in cam.classes]
    title = session.title(f"Grad-CAM of {layer}")
    gradcam.save_figure(cam, batch.pixels, batch.names, class_names, str(path), title)
    return [path]


def run_transformer(session: Session) -> list[Path]:
    args, model = session.args, session.model
    module = transformer.find_transformer(model, session.name)
    distortion = args.distortion or recipe_images(model.card, "mnist").get("distortion")
    if distortion and distortion != "none":
        data = DatasetImages("mnist", args.data_root, session.image_size, distortion=distortion)
        preprocessing = Preprocessing(model.in_chans, session.image_size, data)
        specs = args.image or ["mnist:test:0-9"]
        batch = load_images(specs, preprocessing, data)
        where = f"MNIST {distortion.upper()}"
    else:
        batch = session.images(default=f"{session.data.name}:test:0-9" if session.data else "")
        where = "its input"
    result = transformer.transform(model, batch.inputs.to(session.device), module)
    path = session.out / "transformer.png"
    title = session.title(f"{module} on {where}: U with T_theta(G) outlined, and V")
    transformer.save_figure(result, batch.names, str(path), title)
    return [path]


def run_capsules(session: Session) -> list[Path]:
    model = session.model
    capsules.check_capsules(model)
    batch = session.images(default=f"{session.data.name}:test:0-7" if session.data else "")
    predicted, images = capsules.reconstructions(model, batch.inputs)
    path = session.out / "capsules_reconstructions.png"
    predicted_names = [session.class_name(int(c)) for c in predicted]
    title = session.title("inputs, and the decoder's images from their longest capsule")
    capsules.save_reconstructions(
        batch.pixels, images, batch.names, predicted_names, str(path), title
    )
    written = [path]
    for index, name in enumerate(batch.names[:2]):  # Fig. 4, for the first two images
        predicted_class, tweaked = capsules.perturbations(model, batch.inputs[index])
        path = session.out / f"capsules_dimensions_{index}_{_slug(name)}.png"
        what = f"{name}: each dimension of its {session.class_name(predicted_class)} capsule"
        capsules.save_perturbations(tweaked, str(path), session.title(f"{what}, tweaked"))
        written.append(path)
    return written


RUNNERS = {
    "deconvnet": run_deconvnet,
    "occlusion": run_occlusion,
    "filters": run_filters,
    "retrieval": run_retrieval,
    "gradcam": run_gradcam,
    "transformer": run_transformer,
    "capsules": run_capsules,
}
NEEDS_DATASET = {"deconvnet", "retrieval"}


def log_to_wandb(paths: list[Path], session: Session) -> None:
    """The pictures as W&B images (offline unless logged in: `wandb sync` uploads them)."""
    from cnnzoo.loggers import WandbLogger

    logger = WandbLogger(
        name=f"explain-{session.args.view}-{session.name}", save_dir=str(session.out)
    )
    logger.log_image(
        key=f"explain/{session.args.view}",
        images=[str(path) for path in paths],
        caption=[path.stem for path in paths],
    )
    logger.experiment.finish()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        session = Session(args, needs_dataset=args.view in NEEDS_DATASET)
        written = RUNNERS[args.view](session)
        if args.wandb:
            log_to_wandb(written, session)
    except CnnzooError as error:
        print(f"cnnzoo explain {args.view}: error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
