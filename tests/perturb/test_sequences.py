"""Perturbation sequences (ImageNet-P / CIFAR-P): frame counts and parameters of the originals, exact geometry
against PIL / OpenCV, determinism, batch independence, noise-vs-temporal grouping, errors."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from robustlab.perturb import PERTURBATIONS
from robustlab.perturb import sequences as S
from robustlab.perturb._profiles import PROFILES
from robustlab.perturb.sequences._corruptions import _fall
from robustlab.perturb.sequences._geometry import _torchvision02_inverse
from robustlab.perturb.sequences._recipes import _steps

RANDOM = (
    "gaussian_noise_sequence",
    "shot_noise_sequence",
    "speckle_noise_sequence",
    "snow_sequence",
    "spatter_sequence",
)


def _smooth(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth natural-ish images in [0.1, 0.9] (bilinear-upsampled noise), so interpolation errors stay small."""
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=torch.Generator().manual_seed(seed))
    return 0.1 + 0.8 * F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ registry and tables
def test_groups_and_tables_are_consistent() -> None:
    all_names = S.TEST_SEQUENCES + S.VALIDATION_SEQUENCES
    assert len(S.TEST_SEQUENCES) == 10 and len(S.VALIDATION_SEQUENCES) == 4
    assert set(S.SEQUENCES) <= set(all_names)
    assert all(name in PERTURBATIONS for name in S.SEQUENCES)
    assert set(S.NOISE_SEQUENCES) | set(S.TEMPORAL_SEQUENCES) == set(all_names)
    assert not set(S.NOISE_SEQUENCES) & set(S.TEMPORAL_SEQUENCES)
    assert {"gaussian_noise_sequence", "shot_noise_sequence"} <= set(S.NOISE_SEQUENCES)
    assert set(S.SEQUENCE_TABLES) == {name.removesuffix("_sequence") for name in all_names}
    assert all(set(recipes) == set(PROFILES) for recipes in S.SEQUENCE_TABLES.values())


def test_original_frame_counts_and_steps() -> None:
    t = S.SEQUENCE_TABLES
    # make_imagenet_p.py: 30 noisy frames after the clean one; translate i - 20 for i in 0..40; scale (40 + 2.5 i) %
    assert t["gaussian_noise"]["imagenet"] == {"frames": 31, "sigma": 0.03}
    assert t["translate"]["imagenet"]["frames"] == 41 and t["translate"]["cifar"]["frames"] == 16
    assert _steps(t["translate"]["imagenet"]["shift"], 41) == [float(i - 20) for i in range(41)]
    assert _steps(t["translate"]["cifar"]["shift"], 16) == [float(i - 7) for i in range(16)]
    assert np.allclose(_steps(t["scale"]["imagenet"]["scale"], 31), [(i * 2.5 + 40) / 100 for i in range(31)])
    assert np.allclose(_steps(t["scale"]["cifar"]["scale"], 31), [(i * 2 + 70) / 100 for i in range(31)])
    assert np.allclose(_steps(t["motion_blur"]["imagenet"]["angle"], 31), [(i - 30) * 4 for i in range(31)])
    assert np.allclose(_steps(t["motion_blur"]["cifar"]["angle"], 21), [(i - 20) * 9 for i in range(21)])
    assert np.allclose(_steps(t["brightness"]["cifar"]["shift"], 31), [(i - 15) * 1.5 / 100 for i in range(31)])
    assert np.allclose(_steps(t["gaussian_blur"]["imagenet"]["sigma"], 31), [0.25 + 0.035 * i for i in range(31)])
    assert np.allclose(_steps(t["snow"]["imagenet"]["angle"], 31), [i * 4 - 150 for i in range(31)])
    assert np.allclose(_steps(t["zoom_blur"]["cifar"]["zoom"], 31), [1 + 0.004 * i for i in range(31)])


# ------------------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("name", S.SEQUENCES)
def test_shape_dtype_range_and_default_frames(name: str) -> None:
    x = _smooth()
    out = PERTURBATIONS.get(name)(x, generator=_gen())
    frames = S.SEQUENCE_TABLES[name.removesuffix("_sequence")]["cifar"]["frames"]
    assert out.shape == (2, frames, 3, 32, 32)
    assert out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out[:, 0], out[:, -1])  # the sequence changes


@pytest.mark.parametrize("name", S.SEQUENCES)
def test_frames_argument_and_determinism(name: str) -> None:
    fn = PERTURBATIONS.get(name)
    x = _smooth()
    a = fn(x, generator=_gen(1), frames=4)
    b = fn(x, generator=_gen(1), frames=4)
    assert a.shape == (2, 4, 3, 32, 32)
    assert torch.equal(a, b)
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="frames"):
            fn(x, frames=bad)


@pytest.mark.parametrize("name", RANDOM)
def test_random_sequences_are_batch_independent_and_seeded(name: str) -> None:
    fn = PERTURBATIONS.get(name)
    x = _smooth(3)
    batch = fn(x, generator=[_gen(20 + i) for i in range(3)], frames=5)
    for i in range(3):
        alone = fn(x[i : i + 1], generator=[_gen(20 + i)], frames=5)
        assert torch.allclose(batch[i : i + 1], alone, atol=1e-6)
    assert not torch.equal(fn(x, generator=_gen(1), frames=5), fn(x, generator=_gen(2), frames=5))


@pytest.mark.parametrize("name", sorted(set(S.SEQUENCES) - set(RANDOM)))
def test_deterministic_sequences_ignore_the_generator(name: str) -> None:
    fn = PERTURBATIONS.get(name)
    x = _smooth(3)
    out = fn(x, generator=_gen(1), frames=5)
    assert torch.equal(out, fn(x, generator=_gen(2), frames=5))
    assert torch.allclose(out[1:2], fn(x[1:2], frames=5), atol=1e-6)  # batch independent


def test_profile_follows_the_image_size_or_the_crop() -> None:
    assert S.translate_sequence(_smooth(1, 32)).shape[1] == 16  # CIFAR-P
    assert S.translate_sequence(_smooth(1, 64)).shape[1] == 31  # Tiny-ImageNet-P
    assert S.translate_sequence(_smooth(1, 32), profile="imagenet").shape[1] == 41
    out = S.rotate_sequence(_smooth(1, 80), crop=64, frames=3)  # the crop size picks "tiny", no warning
    assert out.shape == (1, 3, 3, 64, 64)


# ------------------------------------------------------------------------------------------ noise
def test_noise_sequences_start_clean_with_independent_fixed_strength_noise() -> None:
    x = torch.full((2, 3, 64, 64), 0.5)
    out = S.gaussian_noise_sequence(x, generator=_gen(), profile="imagenet")
    assert out.shape[1] == 31 and torch.equal(out[:, 0], x)
    residual = out[:, 1:] - x.unsqueeze(1)
    stds = residual.std(dim=(0, 2, 3, 4))
    assert torch.allclose(stds, torch.full_like(stds, 0.03), rtol=0.05)  # the same σ in every frame
    assert not torch.equal(out[:, 1], out[:, 2])  # fresh noise per frame
    shot = S.shot_noise_sequence(x, generator=_gen(), profile="cifar")
    assert torch.equal(shot[:, 0], x)
    # Poisson(λ x) / λ has variance x / λ
    assert abs(float((shot[:, 1:] - 0.5).var()) - 0.5 / 700) < 0.1 * 0.5 / 700
    speckle = S.speckle_noise_sequence(x, generator=_gen())
    assert abs(float((speckle[:, 1:] - 0.5).std()) - 0.5 * 0.05) < 0.002


# ------------------------------------------------------------------------------------------ geometry and colour
def test_translate_shifts_whole_pixels_with_black_borders() -> None:
    x = _smooth(2)
    out = S.translate_sequence(x)  # CIFAR-P: shifts -7..8
    for frame, shift in ((0, -7), (7, 0), (15, 8)):
        expected = torch.zeros_like(x)
        if shift >= 0:
            expected[..., shift:] = x[..., : 32 - shift]
        else:
            expected[..., :shift] = x[..., -shift:]
        assert torch.allclose(out[:, frame], expected, atol=1e-6)


def test_identity_frames_return_the_clean_image() -> None:
    x = _smooth(2)
    assert torch.allclose(S.rotate_sequence(x)[:, 15], x, atol=1e-5)  # angle 0
    assert torch.allclose(S.shear_sequence(x)[:, 15], x, atol=1e-5)
    # the original tilt homography places the image at depth f + 1, not f: at 0° it shrinks by f / (f + 1)
    f = math.hypot(32, 32)
    tilt = S.tilt_sequence(x)[:, 15]
    zoom = _torchvision02_inverse(32, 32, 0.0, (0.0, 0.0), f / (f + 1), 0.0)
    shrunk = S.perspective_warp(x, torch.from_numpy(zoom[None]))[:, 0]
    assert torch.allclose(tilt, shrunk, atol=1e-5)
    assert torch.allclose(S.scale_sequence(x)[:, 15], x, atol=1e-5)  # CIFAR-P: scale 1.00 at frame 15
    assert torch.allclose(S.brightness_sequence(x)[:, 15], x, atol=1e-5)
    assert torch.allclose(S.zoom_blur_sequence(x)[:, 0], x, atol=1e-5)


def test_brightness_rises_and_blurs_grow() -> None:
    x = _smooth(2)
    means = S.brightness_sequence(x).mean(dim=(0, 2, 3, 4))
    assert torch.all(means[1:] >= means[:-1]) and means[-1] - means[0] > 0.3
    for name in ("gaussian_blur_sequence", "zoom_blur_sequence"):
        distance = (PERTURBATIONS.get(name)(x) - x.unsqueeze(1)).abs().mean(dim=(0, 2, 3, 4))
        assert torch.all(distance[1:] >= distance[:-1] - 1e-6), name


def test_padding_modes_and_crop() -> None:
    x = _smooth(1)
    zeros = S.rotate_sequence(x, frames=2)
    assert float(zeros[:, 0, :, 0, 0].max()) == 0.0  # a black corner at -15°
    for mode in ("border", "reflection"):
        filled = S.rotate_sequence(x, frames=2, padding_mode=mode)
        assert float(filled.min()) >= 0.1 - 1e-6
    cropped = S.scale_sequence(_smooth(1, 40), crop=32, frames=3)
    assert cropped.shape == (1, 3, 3, 32, 32)
    with pytest.raises(ValueError, match="padding_mode"):
        S.rotate_sequence(x, padding_mode="wrap")
    with pytest.raises(ValueError, match="crop"):
        S.rotate_sequence(x, crop=33)


def _tv02_affine(image: Image.Image, angle: float, translate: tuple[int, int], scale: float, shear: float, resample):
    """torchvision 0.2.1's F.affine on a PIL image, as the ImageNet-P / CIFAR-P generators called it."""
    w, h = image.size
    cx, cy = w * 0.5 + 0.5, h * 0.5 + 0.5
    a, s = math.radians(angle), math.radians(shear)
    d = math.cos(a + s) * math.cos(a) + math.sin(a + s) * math.sin(a)
    m = [math.cos(a + s), math.sin(a + s), 0.0, -math.sin(a), math.cos(a), 0.0]
    m = [v / scale / d for v in m]
    m[2] += m[0] * (-cx - translate[0]) + m[1] * (-cy - translate[1]) + cx
    m[5] += m[3] * (-cx - translate[0]) + m[4] * (-cy - translate[1]) + cy
    return image.transform((w, h), Image.Transform.AFFINE, m, resample)


def _cv2_tilt(array: np.ndarray, degrees: float) -> np.ndarray:
    h, w = array.shape[:2]
    t = np.deg2rad(degrees)
    f = np.sqrt(w**2 + h**2)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(t), -np.sin(t), 0], [0, np.sin(t), np.cos(t), 0], [0, 0, 0, 1]])
    ry = np.array([[np.cos(t), 0, -np.sin(t), 0], [0, 1, 0, 0], [np.sin(t), 0, np.cos(t), 0], [0, 0, 0, 1]])
    tz = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return cv2.warpPerspective(array, p2 @ tz @ rx @ ry @ p1, (w, h))


def _centre(array: np.ndarray, size: int) -> np.ndarray:
    h, w = array.shape[:2]
    top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
    return array[top : top + size, left : left + size]


def _check_against_originals(x_uint8: np.ndarray, crop: int, profile: str) -> None:
    """Every geometric frame family vs PIL (torchvision 0.2 affine) / OpenCV; mean abs diff in 8-bit levels."""
    x = torch.from_numpy(x_uint8).permute(0, 3, 1, 2).float() / 255
    bilinear, nearest = Image.Resampling.BILINEAR, Image.Resampling.NEAREST
    cases = [
        (
            S.rotate_sequence,
            [0, 7, 30],
            lambda im, i: _tv02_affine(im, i - 15, (0, 0), 1, 0, bilinear),
        ),
        (S.shear_sequence, [0, 30], lambda im, i: _tv02_affine(im, 0, (0, 0), 1, i - 15, bilinear)),
        (S.scale_sequence, [0, 12, 30], lambda im, i: _tv02_affine(im, 0, (0, 0), (i * 2.5 + 40) / 100, 0, bilinear)),
        (S.translate_sequence, [0, 33], lambda im, i: _tv02_affine(im, 0, (i - 20, 0), 1, 0, nearest)),
        (S.tilt_sequence, [0, 22], lambda im, i: Image.fromarray(_cv2_tilt(np.asarray(im), i - 15))),
    ]
    for fn, frames, reference in cases:
        out = fn(x, crop=crop, profile=profile)
        for i in frames:
            ref = np.stack([_centre(np.asarray(reference(Image.fromarray(a), i)), crop) for a in x_uint8])
            ours = out[:, i].permute(0, 2, 3, 1).numpy() * 255
            diff = np.abs(ours - ref.astype(np.float64))
            # PIL / OpenCV round to 8 bits (≈ 0.25 level on average); along the edge of the black fill PIL samples
            # the outside differently (fill, not a blend), which a thin line of pixels shows
            assert np.median(diff) <= 0.6, (fn.__name__, i)
            assert np.percentile(diff, 90) <= 1.0, (fn.__name__, i)
            assert diff.mean() < 1.5, (fn.__name__, i)


def test_geometry_matches_pil_and_opencv() -> None:
    x = (_smooth(2, 72, seed=5) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # the ImageNet-P recipe (transform, then centre crop) at a small size
    _check_against_originals(x, crop=64, profile="imagenet")


@pytest.mark.realdata
def test_geometry_matches_the_originals_on_imagenet(data_root: Path) -> None:
    from robustlab.data import load_dataset

    dataset = load_dataset("imagenet_sample", data_dir=data_root)  # stored at 256 px = ImageNet-P's Resize(256)
    images, _ = dataset.get_batch(range(4))
    x = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    _check_against_originals(x, crop=224, profile="imagenet")


def test_spatter_fall_is_numpy_same_convolution() -> None:
    layer = torch.rand(2, 9, 5, dtype=torch.float64, generator=_gen())
    for kernel in ((0.2, 0.8), (0.05, 0.1, 0.15, 0.7)):
        ours = _fall(layer, kernel).numpy()
        ref = np.apply_along_axis(lambda col, k=kernel: np.convolve(col, np.array(k), mode="same"), 1, layer.numpy())
        assert np.allclose(ours, ref)


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs_raise() -> None:
    grey = torch.rand(1, 1, 32, 32)
    for name in ("brightness_sequence", "snow_sequence", "motion_blur_sequence"):
        if name in PERTURBATIONS:
            with pytest.raises(ValueError, match="RGB"):
                PERTURBATIONS.get(name)(grey)
    assert S.rotate_sequence(grey, frames=2).shape == (1, 2, 1, 32, 32)  # geometry works on any channel count
    with pytest.raises(ValueError, match="floating point"):
        S.rotate_sequence(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        S.gaussian_noise_sequence(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="profile"):
        S.gaussian_noise_sequence(_smooth(1), profile="mnist")
