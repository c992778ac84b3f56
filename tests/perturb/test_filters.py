"""The shared batched filters against the SciPy / OpenCV / imagecorruptions ops they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from robustlab.perturb._filters import (
    border_indices,
    filter2d,
    gaussian_blur2d,
    motion_blur2d,
    motion_blur_offsets,
    pad2d,
    shift_sum,
)


@pytest.fixture
def planes() -> np.ndarray:
    return np.random.default_rng(0).random((2, 3, 23, 19))


@pytest.mark.parametrize(
    ("mode", "np_mode"), [("reflect", "symmetric"), ("mirror", "reflect"), ("nearest", "edge"), ("wrap", "wrap")]
)
@pytest.mark.parametrize("pad", [0, 3, 30])
def test_border_indices_match_numpy_pad(mode: str, np_mode: str, pad: int) -> None:
    a = np.arange(7)
    idx = border_indices(7, pad, pad + 1, mode).numpy()
    # pads wider than the axis: NumPy pads iteratively, which equals periodic reflection
    np.testing.assert_array_equal(a[idx], np.pad(a, (pad, pad + 1), mode=np_mode))


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "wrap", "constant"])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5, 9.0, (0.0, 1.5)])
def test_gaussian_blur2d_equals_scipy(planes: np.ndarray, mode: str, sigma: float | tuple[float, float]) -> None:
    s = (0, 0) + (sigma if isinstance(sigma, tuple) else (sigma, sigma))
    expected = ndimage.gaussian_filter(planes, s, mode=mode)
    got = gaussian_blur2d(torch.from_numpy(planes), sigma, mode=mode).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_gaussian_blur2d_float32_and_truncate(planes: np.ndarray) -> None:
    x = planes.astype(np.float32)
    expected = ndimage.gaussian_filter(x.astype(np.float64), (0, 0, 2, 2), mode="nearest", truncate=3.0)
    got = gaussian_blur2d(torch.from_numpy(x), 2.0, truncate=3.0)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_gaussian_blur2d_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur2d(torch.rand(1, 1, 5, 5), -1.0)
    with pytest.raises(ValueError, match="border mode"):
        gaussian_blur2d(torch.rand(1, 1, 5, 5), 1.0, mode="bogus")


@pytest.mark.parametrize("ksize", [(3, 3), (7, 5), (4, 6), (17, 17), (27, 21)])
@pytest.mark.parametrize("border", ["reflect101", "reflect", "replicate", "constant"])
def test_filter2d_equals_cv2(planes: np.ndarray, ksize: tuple[int, int], border: str) -> None:
    cv2 = pytest.importorskip("cv2")
    flags = {
        "reflect101": cv2.BORDER_REFLECT_101,
        "reflect": cv2.BORDER_REFLECT,
        "replicate": cv2.BORDER_REPLICATE,
        "constant": cv2.BORDER_CONSTANT,
    }
    rng = np.random.default_rng(1)
    k = rng.random(ksize).astype(np.float32)
    k /= k.sum()
    got = filter2d(torch.from_numpy(planes), torch.from_numpy(k), border).numpy()
    for n in range(2):
        for c in range(3):
            expected = cv2.filter2D(planes[n, c], -1, k, borderType=flags[border])
            np.testing.assert_allclose(got[n, c], expected, atol=1e-6)


def test_filter2d_per_image_kernels(planes: np.ndarray) -> None:
    k = torch.rand(2, 9, 9, dtype=torch.float64)
    got = filter2d(torch.from_numpy(planes), k)
    for n in range(2):
        alone = filter2d(torch.from_numpy(planes[n : n + 1]), k[n])
        torch.testing.assert_close(got[n : n + 1], alone, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="kernel"):
        filter2d(torch.from_numpy(planes), torch.rand(3, 3, 3))


def test_pad2d_constant_value() -> None:
    x = torch.ones(1, 1, 2, 2)
    out = pad2d(x, 1, 1, 1, 1, "constant", cval=0.5)
    assert out.shape == (1, 1, 4, 4)
    assert out[0, 0, 0, 0] == 0.5 and out[0, 0, 1, 1] == 1


def _motion_reference(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    # the ImageMagick recipe written out plainly: edge-repeating reads at each tap's offset
    weights, dy, dx = motion_blur_offsets(radius, sigma, angle)
    h, w = img.shape[-2:]
    ys = np.arange(h)[:, None]
    xs = np.arange(w)[None, :]
    out = np.zeros_like(img)
    for wt, oy, ox in zip(weights, dy, dx, strict=True):
        out += wt * img[..., np.clip(ys + oy, 0, h - 1), np.clip(xs + ox, 0, w - 1)]
    return out


def test_motion_blur_offsets_formula() -> None:
    weights, dy, dx = motion_blur_offsets(3, 1.5, 0.0)
    assert len(weights) == 7
    np.testing.assert_array_equal(dy, 0)
    np.testing.assert_array_equal(dx, np.arange(7))
    assert weights.sum() == pytest.approx(1.0)
    assert np.all(np.diff(weights) < 0)
    _, dy45, dx45 = motion_blur_offsets(3, 1.5, 45.0)
    np.testing.assert_array_equal(dy45, dx45)


def test_motion_blur2d_per_image_angles(planes: np.ndarray) -> None:
    angles = [-40.0, 17.5]
    got = motion_blur2d(torch.from_numpy(planes), 6, 2.0, angles).numpy()
    for n, a in enumerate(angles):
        np.testing.assert_allclose(got[n], _motion_reference(planes[n], 6, 2.0, a), atol=1e-12)


def test_motion_blur2d_matches_imagecorruptions(planes: np.ndarray) -> None:
    pytest.importorskip("cv2")
    from imagecorruptions_ref import _load

    _load()
    import imagecorruptions.corruptions as ic

    img = planes[0].transpose(1, 2, 0)
    for angle in (-44.0, 3.0, 30.0):
        expected = ic._motion_blur(img, 5, 2, angle)
        got = motion_blur2d(torch.from_numpy(planes[:1]), 5, 2, [angle])[0].numpy().transpose(1, 2, 0)
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_motion_blur2d_rejects_bad_input(planes: np.ndarray) -> None:
    with pytest.raises(ValueError, match="one angle per image"):
        motion_blur2d(torch.from_numpy(planes), 5, 2, [0.0])
    with pytest.raises(ValueError, match="sigma > 0"):
        motion_blur2d(torch.from_numpy(planes), 5, 0, [0.0, 0.0])


def test_shift_sum_identity_and_shift() -> None:
    x = torch.arange(20.0).view(1, 1, 4, 5)
    one = torch.ones(1, 1)
    zero = torch.zeros(1, 1, dtype=torch.int64)
    torch.testing.assert_close(shift_sum(x, one, zero, zero), x)
    right = shift_sum(x, one, zero, torch.ones(1, 1, dtype=torch.int64))
    torch.testing.assert_close(right[..., :-1], x[..., 1:])
    torch.testing.assert_close(right[..., -1], x[..., -1])
