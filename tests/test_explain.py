"""cnnzoo explain: the deconvnet, occlusion, filters, retrieval and Grad-CAM views, checked
on real MNIST digits with a LeNet-5 trained briefly here, and the `cnnzoo explain` command."""

from __future__ import annotations

from pathlib import Path

import cnnzoo
import lightning as L
import pytest
import torch
import torch.nn.functional as F
from cnnzoo import ClassifierNet
from cnnzoo.optim import OptimizerSpec
from cnnzoo_explain import (
    embed,
    feature_maps,
    filter_grid,
    find_layer,
    first_convolutions,
    grad_cam,
    nearest,
    occlusion_maps,
    project,
    receptive_fields,
    strongest_images,
)
from cnnzoo_explain.cli import main
from cnnzoo_explain.errors import ChannelError, LayerNotFoundError, NotConvolutionalError
from cnnzoo_explain.filters import normalized
from cnnzoo_explain.images import DatasetImages, Preprocessing, load_images
from cnnzoo_explain.retrieval import embed_dataset
from conftest import cnnzoo_process
from torch.utils.data import DataLoader, TensorDataset

TRAIN_IMAGES = 6000  # one pass of LeNet-5 over them: about 97% on the test digits, ~10 s


@pytest.fixture(scope="session")
def mnist(mnist_root: Path) -> DatasetImages:
    """MNIST as its data module loads it, at LeNet-5's 32x32."""
    return DatasetImages("mnist", str(mnist_root), image_size=32)


@pytest.fixture(scope="session")
def mnist_preprocessing(mnist: DatasetImages) -> Preprocessing:
    return Preprocessing(in_chans=1, image_size=32, data=mnist)


@pytest.fixture(scope="session")
def trained_lenet(
    mnist: DatasetImages, mnist_preprocessing: Preprocessing, tmp_path_factory
) -> tuple[ClassifierNet, Path]:
    """LeNet-5 trained for one pass over 6,000 MNIST digits with its own MAP criterion,
    through the core ImageClassifier, and the checkpoint Lightning wrote of it."""
    torch.manual_seed(0)
    pixels, _ = mnist.pixels("train", list(range(TRAIN_IMAGES)))
    labels = mnist.splits.train.labels[:TRAIN_IMAGES]
    loader = DataLoader(
        TensorDataset(mnist_preprocessing(pixels), labels), batch_size=32, shuffle=True
    )
    classifier = cnnzoo.ImageClassifier("lenet5", optimizer=OptimizerSpec(lr=0.005))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path_factory.mktemp("lenet5"),
    )
    trainer.fit(classifier, loader)
    checkpoint = Path(trainer.default_root_dir) / "lenet5.ckpt"
    trainer.save_checkpoint(checkpoint)
    return classifier.model.eval(), checkpoint


@pytest.fixture(scope="session")
def test_digits(mnist: DatasetImages, mnist_preprocessing: Preprocessing):
    """The first 200 test digits: uint8 pixels, model inputs and labels."""
    pixels, labels = mnist.pixels("test", list(range(200)))
    return pixels, mnist_preprocessing(pixels), torch.tensor(labels)


@pytest.mark.slow
def test_the_trained_lenet_reads_digits(trained_lenet, test_digits):
    model, _ = trained_lenet
    _, inputs, labels = test_digits
    with torch.no_grad():
        accuracy = (model(inputs).argmax(1) == labels).float().mean()
    # One pass over 6,000 digits: 88.5% to over 90% of these 200 by the machine (the CPU's
    # summation order changes the path of a short training); chance is 10%.
    assert accuracy > 0.85


# Occlusion (Zeiler & Fergus §4.2)


@pytest.mark.slow
def test_occluding_the_strokes_lowers_the_class_probability_more_than_the_border(
    trained_lenet, test_digits
):
    model, _ = trained_lenet
    pixels, inputs, labels = test_digits
    with torch.no_grad():
        correct = (model(inputs[:14]).argmax(1) == labels[:14]).nonzero().flatten()[:10]
    # A 12x12 square: an 8x8 one hides too little of a 20x20 digit to sway LeNet-5, whose
    # RBF outputs put almost all the probability on one class (p = 1.000 on most digits).
    size, stride = 12, 4
    over_ink, over_nothing = [], []
    for index in correct.tolist():
        maps = occlusion_maps(model, inputs[index], "features.c3", int(labels[index]), size, stride)
        assert maps.probability.shape == maps.feature.shape == (6, 6)
        for row, top in enumerate(maps.tops):
            for col, left in enumerate(maps.lefts):
                patch = pixels[index, 0, top : top + size, left : left + size]
                if patch.float().mean() > 60:  # a good part of the square is stroke
                    over_ink.append(maps.probability[row, col])
                elif patch.max() == 0:  # nothing but background
                    over_nothing.append(maps.probability[row, col])
    ink, nothing = torch.stack(over_ink).mean(), torch.stack(over_nothing).mean()
    print(f"p(true class): square over strokes {ink:.3f}, over empty border {nothing:.3f}")
    assert nothing > 0.95
    assert ink < nothing - 0.1


# Deconvnet (Zeiler & Fergus §2.1)


@pytest.mark.slow
def test_projecting_one_first_layer_activation_gives_back_its_filter(trained_lenet, test_digits):
    model, _ = trained_lenet
    _, inputs, _ = test_digits
    conv = find_layer(model, "features.c1.0")
    for channel in range(conv.out_channels):
        projection = project(model, "features.c1.0", inputs[:4], channel)
        for image in range(4):
            row, col = projection.locations[image].tolist()
            pixels = projection.pixels[image, 0]
            placed = pixels[row : row + 5, col : col + 5]
            kernel = conv.weight[channel, 0].detach()
            correlation = torch.corrcoef(torch.stack([placed.flatten(), kernel.flatten()]))[0, 1]
            assert correlation > 0.9999
            # The activation is the filter's response there: it scales the filter.
            torch.testing.assert_close(placed, projection.activations[image] * kernel)
            # Nothing outside the filter's window.
            assert float(pixels.abs().sum()) == pytest.approx(float(placed.abs().sum()), rel=1e-5)


def _unpool(signal: torch.Tensor, switches) -> torch.Tensor:
    """Unpooling with the switches: each value back where its max came from (summed where
    overlapping windows share a max, as the pooling's transpose does)."""
    batch, channels = signal.shape[:2]
    height, width = switches.input_size[-2:]
    flat = signal.new_zeros(batch, channels, height * width)
    flat.scatter_add_(2, switches.indices.flatten(2), signal.flatten(2))
    return flat.view(batch, channels, height, width)


def _filter_down(signal: torch.Tensor, conv: torch.nn.Conv2d, size) -> torch.Tensor:
    """Filtering with the transposed filters, back to the conv's input size."""
    natural = [
        (signal.shape[-1 - i] - 1) * conv.stride[1 - i]
        - 2 * conv.padding[1 - i]
        + conv.kernel_size[1 - i]
        for i in (1, 0)
    ]
    extra = tuple(s - n for s, n in zip(size, natural, strict=True))
    return F.conv_transpose2d(
        signal, conv.weight, stride=conv.stride, padding=conv.padding, output_padding=extra
    )


@pytest.mark.slow
def test_the_generic_deconvnet_is_zfnets_explicit_unpool_relu_and_transposed_filters():
    from skimage.data import astronaut

    model = cnnzoo.create_model("zfnet").eval()
    preprocessing = Preprocessing(in_chans=3, image_size=111, data=None)
    x = preprocessing(preprocessing.photo(astronaut())[None])
    channel = 7
    generic = project(model, "features.layer5", x, channel)

    with torch.no_grad():
        maps, switches = model.forward_with_switches(x)
        top = maps["layer5"]
        signal = torch.zeros_like(top)
        row, col = generic.locations[0].tolist()
        signal[0, channel, row, col] = top[0, channel, row, col]
        sizes = {"layer1": x.shape[-2:]}
        for below, name in (("layer1", "layer2"), ("layer2", "layer3"), ("layer3", "layer4")):
            sizes[name] = maps[below].shape[-2:]
        sizes["layer5"] = maps["layer4"].shape[-2:]
        for name in ("layer5", "layer4", "layer3", "layer2", "layer1"):
            layer = model.features.get_submodule(name)
            # §2.1 inverts no contrast normalisation: the signal passes it unchanged.
            if name in switches:
                signal = _unpool(signal, switches[name])
            signal = F.relu(signal)
            signal = _filter_down(signal, layer.conv, sizes[name])
    assert generic.pixels.shape == signal.shape == x.shape
    assert signal.abs().max() > 0
    torch.testing.assert_close(generic.pixels, signal, rtol=1e-4, atol=1e-6 * signal.abs().max())


def test_the_generic_deconvnet_is_max_unpool2d_relu_conv_transpose2d_through_lenet_relu(
    test_digits,
):
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5_relu").eval()
    _, inputs, _ = test_digits
    x = inputs[:3]
    f = model.features
    generic = project(model, "features.s4", x, channel=5)
    with torch.no_grad():
        c1 = f.c1(x)
        s2, switches2 = F.max_pool2d(c1, 2, return_indices=True)
        c3 = f.c3(s2)
        s4, switches4 = F.max_pool2d(c3, 2, return_indices=True)
        signal = torch.zeros_like(s4)
        rows = torch.arange(3)
        locations = generic.locations
        signal[rows, 5, locations[:, 0], locations[:, 1]] = s4[
            rows, 5, locations[:, 0], locations[:, 1]
        ]
        signal = F.max_unpool2d(signal, switches4, 2, output_size=c3.shape[-2:])
        signal = F.conv_transpose2d(F.relu(signal), f.c3[0].weight)
        signal = F.max_unpool2d(signal, switches2, 2, output_size=c1.shape[-2:])
        signal = F.conv_transpose2d(F.relu(signal), f.c1[0].weight)
    torch.testing.assert_close(generic.pixels, signal)


def test_receptive_fields_cover_every_pixel_a_unit_sees():
    relu_net = cnnzoo.create_model("lenet5_relu").eval()
    shape = (1, 32, 32)
    at = torch.tensor([[0, 0], [3, 7]])
    # C1: the 5x5 window; S2 (2x2 max pool): the whole 6x6 window, not only the switch's.
    assert receptive_fields(relu_net, "features.c1", shape, at) == [(0, 0, 5, 5), (3, 7, 8, 12)]
    assert receptive_fields(relu_net, "features.s2", shape, at) == [(0, 0, 6, 6), (6, 14, 12, 20)]
    # C3: 5x5 units of S2, two pixels apart: 6 + 4 * 2 = 14.
    assert receptive_fields(relu_net, "features.c3", shape, at[:1]) == [(0, 0, 14, 14)]


def test_the_top_activations_are_the_strongest_of_the_whole_scan(test_digits, mnist):
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5").eval()
    preprocessing = Preprocessing(1, 32, mnist)
    top = strongest_images(
        model, "features.c3", 4, mnist, preprocessing, split="test", limit=300, batch_size=64
    )
    pixels, _ = mnist.pixels("test", list(range(300)))
    with torch.no_grad():
        strongest = feature_maps(model, "features.c3", preprocessing(pixels))[:, 4].amax(dim=(1, 2))
    expected = strongest.topk(9)
    assert top.indices == expected.indices.tolist()
    assert top.values == pytest.approx(expected.values.tolist(), rel=1e-5)


# First-layer filters (AlexNet Fig. 3)


def test_lenet_filters_grid_has_one_grey_tile_per_kernel():
    model = cnnzoo.create_model("lenet5")
    (name,) = first_convolutions(model, (1, 32, 32))
    assert name == "features.c1.0"
    weight = find_layer(model, name).weight
    grid = filter_grid(weight)
    # 6 kernels of 5x5 in 3 columns and 2 rows, one pixel between and around the tiles.
    assert (grid.count, grid.columns, grid.tile_size) == (6, 3, (5, 5))
    assert grid.image.shape == (1, 1 + 2 * 6, 1 + 3 * 6)
    for index in range(6):
        kernel = weight[index].detach()
        expected = (kernel - kernel.min()) / (kernel.max() - kernel.min())
        torch.testing.assert_close(grid.tile(index), expected)
        assert grid.tile(index).min() == 0 and grid.tile(index).max() == 1


def test_alexnet_filters_grid_has_96_colour_tiles_of_11x11():
    model = cnnzoo.create_model("alexnet")
    (name,) = first_convolutions(model, (3, 224, 224))
    assert name == "features.conv1.conv"
    weight = model.features.conv1.conv.weight
    grid = filter_grid(weight)
    assert (grid.count, grid.columns, grid.tile_size) == (96, 10, (11, 11))
    assert grid.image.shape == (3, 1 + 10 * 12, 1 + 10 * 12)
    torch.testing.assert_close(grid.tile(95), normalized(weight.detach())[95])


class _Perceptron(ClassifierNet):
    """A model with no convolution at all."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes, self.in_chans, self.feature_info = 10, 1, []
        self.fc = torch.nn.Linear(32 * 32, 10)

    def forward_features(self, x):
        return x.flatten(1)

    def forward_head(self, x, pre_logits=False):
        return x if pre_logits else self.fc(x)


def test_a_model_without_convolutions_has_no_filters_to_show():
    with pytest.raises(NotConvolutionalError, match=r"no nn\.Conv2d layer"):
        first_convolutions(_Perceptron(), (1, 32, 32))


# Feature retrieval (AlexNet Fig. 4)


@pytest.mark.slow
def test_retrieval_finds_a_training_image_first_and_neighbours_of_its_class(
    trained_lenet, mnist, mnist_preprocessing, test_digits
):
    model, _ = trained_lenet
    database = embed_dataset(model, mnist, mnist_preprocessing, "train", limit=3000)
    assert database.shape == (3000, 84)  # F6, LeNet-5's last hidden layer
    queries = [5, 123, 2999]
    pixels, _ = mnist.pixels("train", queries)
    found = nearest(embed(model, mnist_preprocessing(pixels)), database, k=5)
    assert found.indices[:, 0].tolist() == queries
    assert found.distances[:, 0].abs().max() < 1e-3
    # Test digits: the 5 nearest training digits are mostly of the query's class.
    _, inputs, labels = test_digits
    found = nearest(embed(model, inputs[:50]), database, k=5)
    neighbour_labels = mnist.splits.train.labels[found.indices]
    agreement = (neighbour_labels == labels[:50, None]).float().mean()
    print(f"5-NN in F6: {agreement:.1%} of neighbours share the query's class")
    assert agreement > 0.85


# Grad-CAM (Selvaraju et al. 2017)


@pytest.mark.slow
def test_grad_cam_on_the_trained_lenet_looks_at_the_digit_not_the_border(
    trained_lenet, test_digits
):
    model, _ = trained_lenet
    pixels, inputs, labels = test_digits
    cam = grad_cam(model, inputs[:100], "features.c1", labels[:100].tolist())
    assert cam.maps.shape == (100, 32, 32) and cam.coarse.shape == (100, 28, 28)
    maps = cam.maps / cam.maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    # MNIST's digits lie in the central 20x20 of the 28x28 field, centred in 32x32: the
    # 6-pixel frame around it is empty in every image.
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[6:26, 6:26] = False
    strokes = pixels[:100, 0] > 60
    on_strokes, on_frame = maps[strokes].mean(), maps[:, frame].mean()
    print(f"Grad-CAM of C1: {on_strokes:.3f} on the strokes, {on_frame:.3f} on the empty frame")
    assert on_strokes > 1.5 * on_frame


def test_grad_cam_equals_the_hand_computed_one(test_digits):
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5").eval()
    _, inputs, labels = test_digits
    x, classes = inputs[:4], labels[:4].tolist()
    cam = grad_cam(model, x, "features.c3", classes)
    f = model.features
    activations = f.c3(f.s2(f.c1(x))).detach().requires_grad_(True)
    logits = model.forward_head(f.c5(f.s4(activations)))
    score = logits[torch.arange(4), classes].sum()
    (gradients,) = torch.autograd.grad(score, activations)
    weights = gradients.mean(dim=(2, 3))  # alpha_k^c, eq. 1
    expected = torch.relu(torch.einsum("nk,nkhw->nhw", weights, activations.detach()))  # eq. 2
    torch.testing.assert_close(cam.coarse, expected)
    upsampled = F.interpolate(expected[:, None], size=(32, 32), mode="bilinear")[:, 0]
    torch.testing.assert_close(cam.maps, upsampled)


# Names and errors


def test_a_wrong_layer_name_lists_the_layers_and_the_closest():
    model = cnnzoo.create_model("lenet5")
    with pytest.raises(
        LayerNotFoundError,
        match=r"no layer 'features\.c33'.*Did you mean: "
        r"features\.c3",
    ) as error:
        find_layer(model, "features.c33")
    assert "features.s4" in str(error.value)


def test_a_channel_out_of_range_and_a_layer_without_maps_are_refused(test_digits):
    model = cnnzoo.create_model("lenet5").eval()
    _, inputs, _ = test_digits
    with pytest.raises(ChannelError, match=r"has 6 channels \(0 to 5\); got channel 6"):
        project(model, "features.c1", inputs[:1], channel=6)
    with pytest.raises(NotConvolutionalError, match=r"'f6' outputs \(1, 84\)"):
        project(model, "f6", inputs[:1], channel=0)


def test_photographs_are_resized_and_converted_to_the_models_channels():
    preprocessing = Preprocessing(in_chans=1, image_size=32, data=None)
    batch = load_images(["skimage:chelsea", "skimage:camera"], preprocessing, data=None)
    assert batch.pixels.shape == (2, 1, 32, 32) and batch.pixels.dtype == torch.uint8
    assert batch.inputs.shape == (2, 1, 32, 32) and batch.inputs.dtype == torch.float32
    assert batch.labels == [None, None]


# The command


def _pngs(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.png"))


@pytest.mark.slow
def test_every_view_writes_its_pictures(trained_lenet, mnist_root, tmp_path, capsys):
    _, checkpoint = trained_lenet
    mnist_args = ["--checkpoint", str(checkpoint), "--data-root", str(mnist_root)]
    runs = {
        "filters": ["filters", "--model", "lenet5"],
        "gradcam": ["gradcam", *mnist_args, "--image", "mnist:test:0-2"],
        "occlusion": ["occlusion", *mnist_args, "--image", "mnist:test:0", "skimage:camera"],
        "deconvnet": [
            "deconvnet",
            *mnist_args,
            "--layer",
            "features.c3",
            "--channel",
            "2",
            "5",
            "--limit",
            "400",
        ],
        "retrieval": ["retrieval", *mnist_args, "--limit", "400", "--image", "mnist:train:3"],
    }
    expected = {
        "filters": ["filters_features.c1.0.png"],
        "gradcam": ["gradcam.png"],
        "occlusion": ["occlusion_0_mnist_test_0.png", "occlusion_1_camera.png"],
        "deconvnet": ["deconvnet_features.c3_2.png", "deconvnet_features.c3_5.png"],
        "retrieval": ["retrieval.png"],
    }
    for view, argv in runs.items():
        out = tmp_path / view
        assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
        assert _pngs(out) == expected[view]
        for path in out.glob("*.png"):
            assert 5_000 < path.stat().st_size < 300_000
        assert str(out / expected[view][0]) in capsys.readouterr().out


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    return capsys.readouterr().err


def test_bad_inputs_say_what_to_do(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    error = _error(capsys, ["gradcam", "--model", "lenet5", "--layer", "features.c4", *out])
    assert "no layer 'features.c4'" in error and "Did you mean" in error
    error = _error(capsys, ["gradcam", "--model", "lenet5", "--image", "missing.png", *out])
    assert "image 'missing.png' does not exist" in error
    error = _error(capsys, ["filters", "--model", "lenet6", *out])
    assert "no model named 'lenet6'" in error
    (tmp_path / "weights.pt").write_bytes(b"")
    torch.save({"state_dict": {}}, tmp_path / "weights.pt")
    error = _error(capsys, ["filters", "--checkpoint", str(tmp_path / "weights.pt"), *out])
    assert "not a cnnzoo checkpoint" in error
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    error = _error(capsys, ["filters", "--checkpoint", str(tmp_path / "notes.ckpt"), *out])
    assert "not a readable checkpoint" in error
    error = _error(capsys, ["filters", "--checkpoint", str(tmp_path / "nowhere.ckpt"), *out])
    assert "no checkpoint at" in error
    assert _pngs(tmp_path) == []


@pytest.mark.slow
def test_a_channel_out_of_range_from_the_command(mnist_root, tmp_path, capsys):
    argv = ["deconvnet", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(mnist_root)]
    error = _error(capsys, [*argv, "--layer", "features.c1", "--channel", "6", "--limit", "10"])
    assert "has 6 channels (0 to 5); got channel 6" in error


def test_filters_of_a_model_without_convolutions_from_the_command(fake_plugins, tmp_path, capsys):
    fake_plugins(
        "cnnzoo-perceptron",
        {"perceptron": "perceptron_plugin:perceptron"},
        {
            "perceptron_plugin": """
            import torch
            from cnnzoo import ClassifierNet, ModelCard, variant

            class Perceptron(ClassifierNet):
                def __init__(self, num_classes=10, in_chans=1):
                    super().__init__()
                    self.num_classes, self.in_chans, self.feature_info = num_classes, in_chans, []
                    self.fc = torch.nn.Linear(in_chans * 32 * 32, num_classes)

                def forward_features(self, x):
                    return x.flatten(1)

                def forward_head(self, x, pre_logits=False):
                    return x if pre_logits else self.fc(x)

            @variant(ModelCard(paper="p", authors="a", year=1958, url="u",
                               input_size=(1, 32, 32), num_classes=10))
            def perceptron(num_classes=10, in_chans=1):
                return Perceptron(num_classes, in_chans)
            """
        },
    )
    error = _error(capsys, ["filters", "--model", "perceptron", "--out", str(tmp_path)])
    assert "has no nn.Conv2d layer" in error and "choose a convolutional model" in error


@pytest.mark.slow
def test_wandb_gets_the_pictures_offline(tmp_path, capsys):
    assert main(["filters", "--model", "lenet5", "--out", str(tmp_path), "--wandb"]) == 0
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = list(runs[0].rglob("*.png"))
    assert media, "the offline run holds the logged picture"


def test_a_decoded_photo_is_taken_without_numpys_read_only_warning(tmp_path):
    """PIL's decoded arrays are read-only; the photo is copied, not handed to torch as is
    (which warns on every explained image), and cropped to the model's square."""
    import warnings

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    decoded = np.asarray(Image.open(tmp_path / "a.png"))
    assert not decoded.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = Preprocessing(in_chans=3, image_size=32, data=None).photo(decoded)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.uint8


def test_a_checkpoint_names_its_classes_and_explained_files_keep_their_names(
    photo_tree, tmp_path, make_trainer
):
    """A model trained on class folders keeps their names in its checkpoints: explaining an
    image file with only the checkpoint titles classes by name, not "class 1", and writes
    `occlusion_0_c.png` for c.jpg, not `c.jpg.png`."""
    from cnnzoo.callbacks import _class_names
    from cnnzoo_data import ImageFolderDataModule
    from cnnzoo_explain.cli import Session, build_parser

    data = ImageFolderDataModule(root=str(photo_tree), image_size=32, num_workers=0)
    module = cnnzoo.ImageClassifier("lenet5_relu", num_classes=3, in_chans=3)
    trainer = make_trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, data)
    checkpoint = tmp_path / "folders.ckpt"
    trainer.save_checkpoint(checkpoint)
    assert module.classes == ["cat", "coffee", "rocket"]
    reloaded = cnnzoo.ImageClassifier.from_checkpoint(str(checkpoint))
    assert reloaded.classes == ["cat", "coffee", "rocket"]
    assert _class_names(L.Trainer(logger=False), reloaded) == ["cat", "coffee", "rocket"]

    image = photo_tree / "val" / "coffee" / "c.jpg"
    out = tmp_path / "explained"
    args = ["occlusion", "--checkpoint", str(checkpoint), "--image", str(image), "--out", str(out)]
    explained = cnnzoo_process(["explain", *args], tmp_path, timeout=300)  # the real command
    assert explained.returncode == 0, explained.stderr
    assert sorted(p.name for p in out.iterdir()) == ["occlusion_0_c.png"]
    session = Session(build_parser().parse_args(args), needs_dataset=False)
    assert [session.class_name(k) for k in range(3)] == ["cat", "coffee", "rocket"]
