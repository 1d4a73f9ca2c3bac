"""Fuzzing with hypothesis: the data transforms, the registry's name handling and
`create_model`'s arguments take anything and either work or fail with a clear error, never
with a crash from deep inside."""

from __future__ import annotations

import io

import cnnzoo
import numpy as np
import pytest
import torch
from cnnzoo import CnnzooError, ModelNotFoundError
from cnnzoo_data import build_transform
from cnnzoo_data.folder import load_image
from cnnzoo_data.transforms import AUGMENTATIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

pytestmark = pytest.mark.bad_input

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Image modes a file can hold, and formats that can hold them.
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "F", "I;16"]
FORMATS = {"PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}, "TIFF": set(MODES)}


@st.composite
def image_files(draw) -> bytes:
    """The bytes of an image file of any size, mode and format."""
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from([f for f, modes in FORMATS.items() if mode in modes]))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@FUZZ
@given(
    data=image_files(),
    augmentation=st.sampled_from(AUGMENTATIONS),
    train=st.booleans(),
    image_size=st.integers(8, 96),
    in_chans=st.sampled_from([1, 3]),
)
def test_any_image_file_becomes_a_batchable_tensor(
    tmp_path_factory, data, augmentation, train, image_size, in_chans
):
    path = tmp_path_factory.mktemp("fuzz") / "image"
    path.write_bytes(data)
    image = load_image(str(path), mode={1: "L", 3: "RGB"}[in_chans])
    transform = build_transform(augmentation, train=train, image_size=image_size)
    out = transform.geometry(image)
    assert out.dtype == torch.uint8
    assert tuple(out.shape) == (in_chans, image_size, image_size)


@FUZZ
@given(st.text(max_size=40))
def test_any_name_is_a_model_or_a_clear_not_found(name):
    listed = cnnzoo.list_models()
    if name in listed:
        return
    with pytest.raises(ModelNotFoundError) as info:
        cnnzoo.model_card(name)
    assert "is registered" in str(info.value) and "cnnzoo models" in str(info.value)


@FUZZ
@given(st.text(alphabet="abcdefghilmnorstuvx0123456789_*?[]!-", max_size=12))
def test_any_pattern_lists_names_without_importing_anything(pattern):
    names = cnnzoo.list_models(pattern)
    assert names == sorted(names) and set(names) <= set(cnnzoo.list_models())


SMALL_MODELS = ["lenet5", "lenet5_relu", "resnet20", "densenet100_k12", "mobilenet_v1"]
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(allow_nan=True),
    st.text(max_size=5),
)


@FUZZ
@given(
    name=st.sampled_from(SMALL_MODELS),
    num_classes=ANYTHING,
    in_chans=ANYTHING,
    extra=st.dictionaries(st.sampled_from(["alpha", "width", "drop_rate", "depth"]), ANYTHING),
)
def test_create_model_builds_or_refuses_clearly(name, num_classes, in_chans, extra):
    try:
        model = cnnzoo.create_model(name, num_classes, in_chans, **extra)
    except (CnnzooError, ValueError, TypeError) as error:
        message = str(error)
        assert any(word in message for word in ("must be", "takes no argument", "got")), message
        return
    # None: the paper's; 0 (timm's): no classifier, forward gives the pooled features.
    assert model.num_classes == (model.card.num_classes if num_classes is None else num_classes)
    assert model.in_chans == (in_chans or model.card.input_size[0])
