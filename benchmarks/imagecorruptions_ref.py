"""The `imagecorruptions` 1.1.2 package as a reference, made to run on current NumPy / scikit-image.

As shipped it crashes here: fog uses NumPy 2's removed ``np.float_``, glass_blur and gaussian_blur pass
scikit-image's removed ``multichannel=`` keyword, and the package imports ``pkg_resources`` (setuptools < 81).
The shims below are applied to the reference module only, never to robustlab. The reference draws from NumPy's
global RNG, so :func:`reference_corrupt` seeds it per call.
"""

from __future__ import annotations

import warnings

import numpy as np

_MODULE = None


def _load():
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import imagecorruptions.corruptions as ic
    from skimage.filters import gaussian as _sk_gaussian

    def gaussian(image, sigma=1, multichannel=None, **kwargs):
        if multichannel is not None:
            kwargs.setdefault("channel_axis", -1 if multichannel else None)
        return _sk_gaussian(image, sigma=sigma, **kwargs)

    ic.gaussian = gaussian
    import imagecorruptions

    _MODULE = imagecorruptions
    return imagecorruptions


def reference_corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt one uint8 HWC RGB image with the reference; returns uint8 HWC."""
    ic = _load()
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the package's front door converts to PIL where a corruption expects it and returns uint8
        return np.asarray(ic.corrupt(image, severity=severity, corruption_name=name))


# the five frost weights of the original make_imagenet_c.py (and of the package), per severity
_FROST_WEIGHTS = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))


def original_frost(image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Frost as the original ImageNet-C code makes it, for a reference where the package departs from it.

    The original crops one of the first five frost textures *as shipped* at a uniform offset; ``imagecorruptions``
    first enlarges every texture by 1.1 (bicubic), which thins the frost pattern. Same textures (the package's
    copies), same RNG order (texture, then row and column offsets), uint8 HWC in and out.
    """
    import cv2

    _load()
    from importlib.resources import files

    np.random.seed(seed)
    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
    texture = cv2.imread(str(files("imagecorruptions") / "frost" / names[np.random.randint(5)]))
    h, w = image.shape[:2]
    top, left = np.random.randint(0, texture.shape[0] - h), np.random.randint(0, texture.shape[1] - w)
    crop = texture[top : top + h, left : left + w][..., [2, 1, 0]]  # BGR read -> RGB
    a, b = _FROST_WEIGHTS[severity - 1]
    return np.clip(a * image.astype(np.float64) + b * crop, 0, 255).astype(np.uint8)


def imagenet_crops(data_root, n: int = 64, size: int = 224, *, with_labels: bool = False):
    """``n`` centre crops (uint8 NHWC) of the shared ImageNet sample (256 px staged -> central ``size`` px).

    Files are spread over the classes; with ``with_labels`` also returns their class indices (the file prefix).
    """
    from pathlib import Path

    from PIL import Image

    files = sorted((Path(data_root) / "imagenet_sample" / "images").glob("*.jpg"))
    step = max(1, len(files) // n)
    out, labels = [], []
    for f in files[::step][:n]:
        labels.append(int(f.name.split("_")[0]))
        im = np.asarray(Image.open(f).convert("RGB"))
        top = (im.shape[0] - size) // 2
        left = (im.shape[1] - size) // 2
        out.append(im[top : top + size, left : left + size])
    return (np.stack(out), np.asarray(labels)) if with_labels else np.stack(out)
