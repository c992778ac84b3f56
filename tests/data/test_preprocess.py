from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import robustlab  # noqa: F401  (before torchvision)
from robustlab.data import Preprocess
from robustlab.models.classifier import Classifier


def _pil(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("input_size", "crop_pct", "resize", "crop"),
    [
        ((3, 224, 224), 0.875, 256, (224, 224)),
        ((3, 224, 224), 0.9, 248, (224, 224)),  # floor(248.9)
        ((3, 384, 384), 1.0, 384, (384, 384)),
        ((3, 32, 32), 1.0, 32, (32, 32)),
        ((3, 224, 320), 0.875, (256, 365), (224, 320)),  # non-square: timm scales both edges
    ],
)
def test_from_config_follows_timm_floor(input_size, crop_pct, resize, crop) -> None:
    p = Preprocess.from_config({"input_size": input_size, "crop_pct": crop_pct, "interpolation": "bicubic"})
    assert p.resize == resize
    assert p.crop == crop
    assert p.interpolation == "bicubic"


def test_from_config_takes_classifier_data_config() -> None:
    model = Classifier(
        torch.nn.Flatten(),
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        input_size=(3, 240, 240),
        class_names=["a", "b"],
        crop_pct=0.95,
        interpolation="bicubic",
    )
    p = Preprocess.from_config(model.data_config)
    assert p == Preprocess(resize=252, crop=240, interpolation="bicubic")


def test_from_config_defaults_and_errors() -> None:
    assert Preprocess.from_config({"input_size": (3, 224, 224)}) == Preprocess(256, 224, "bilinear")
    with pytest.raises(ValueError, match="input_size"):
        Preprocess.from_config({"crop_pct": 0.9})
    with pytest.raises(ValueError, match="input_size"):
        Preprocess.from_config({"input_size": (224, 224)})
    with pytest.raises(ValueError, match="crop_pct"):
        Preprocess.from_config({"input_size": (3, 224, 224), "crop_pct": 1.5})
    with pytest.raises(ValueError, match="crop_mode"):
        Preprocess.from_config({"input_size": (3, 224, 224), "crop_mode": "squash"})


@pytest.mark.parametrize("kwargs", [{"resize": 0}, {"crop": (1, 2, 3)}, {"crop": True}, {"interpolation": "cubic"}])
def test_invalid_fields_raise(kwargs) -> None:
    with pytest.raises(ValueError, match="Preprocess"):
        Preprocess(**kwargs)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_pil_path_equals_torchvision_resize_center_crop(interpolation: str, rng: np.random.Generator) -> None:
    from torchvision import transforms as T

    mode = T.InterpolationMode(interpolation)
    ref = T.Compose([T.Resize(40, interpolation=mode), T.CenterCrop(36)])
    ours = Preprocess(resize=40, crop=36, interpolation=interpolation)
    # portrait, landscape, square, odd margins
    for h, w in [(50, 37), (37, 61), (45, 45), (41, 97)]:
        image = _pil(rng, h, w)
        expected = np.asarray(ref(image))
        got = np.asarray(ours(image))
        assert got.shape == (36, 36, 3) == expected.shape
        np.testing.assert_array_equal(got, expected)
        assert ours.output_size((h, w)) == (36, 36)


def test_crop_larger_than_image_zero_pads_like_torchvision(rng: np.random.Generator) -> None:
    from torchvision import transforms as T

    image = _pil(rng, 9, 14)
    expected = np.asarray(T.CenterCrop((12, 13))(image))
    got = np.asarray(Preprocess(crop=(12, 13))(image))
    np.testing.assert_array_equal(got, expected)
    assert got[0].sum() == 0  # top padding row


def test_non_square_equals_timm_eval_transform(rng: np.random.Generator) -> None:
    from timm.data import create_transform

    config = {"input_size": (3, 24, 40), "crop_pct": 0.8, "interpolation": "bilinear"}
    ref = create_transform(**config, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ours = Preprocess.from_config(config)
    for h, w in [(50, 37), (33, 71)]:
        image = _pil(rng, h, w)
        expected = ref(image)
        got = torch.from_numpy(np.asarray(ours(image)).copy()).permute(2, 0, 1).float() / 255
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_tensor_path_crop_is_exact_and_resize_follows_pil(rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, size=(2, 30, 44, 3), dtype=np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    # crop only: plain slicing, identical to PIL
    crop = Preprocess(crop=(20, 21))
    expected = np.stack([np.asarray(crop(Image.fromarray(p))) for p in pixels])
    got = crop.apply_tensor(images)
    torch.testing.assert_close(got, torch.from_numpy(expected).permute(0, 3, 1, 2).float() / 255)
    # resize: antialiased interpolate stays within a few grey levels of Pillow on average
    p = Preprocess(resize=15, crop=14)
    out = p.apply_tensor(images)
    assert out.shape == (2, 3, 14, 14)
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    ref = np.stack([np.asarray(p(Image.fromarray(x))) for x in pixels])
    ref_t = torch.from_numpy(ref).permute(0, 3, 1, 2).float() / 255
    assert float((out - ref_t).abs().mean()) < 0.02
    with pytest.raises(ValueError, match="lanczos"):
        Preprocess(resize=15, interpolation="lanczos").apply_tensor(images)


def test_describe_is_json_and_complete() -> None:
    record = Preprocess(resize=256, crop=224, interpolation="bicubic").describe()
    assert record == {
        "resize": 256,
        "resize_mode": "shorter_side",
        "crop": [224, 224],
        "interpolation": "bicubic",
    }
    assert json.loads(json.dumps(record)) == record
    assert Preprocess().describe()["resize_mode"] is None
