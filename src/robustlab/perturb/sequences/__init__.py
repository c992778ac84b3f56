"""Perturbation sequences of ImageNet-P / CIFAR-P / Tiny-ImageNet-P (Hendrycks & Dietterich 2019).

Each function turns a batch of images into short "videos" whose frames change a little at a time; a model's flip
probability over consecutive frames measures its stability. Every sequence is
``fn(images, *, generator=None, profile=None, frames=None) -> (N, T, C, H, W)`` and is registered in
:data:`~robustlab.perturb.PERTURBATIONS` as ``<perturbation>_sequence``.

Source: the original generators, hendrycks/robustness ``ImageNet-P/create_p/make_imagenet_p.py`` (224 px, test
and validation perturbations), ``make_cifar_p.py`` (32 px) and ``make_tinyimagenet_p.py`` (64 px). The frame
counts and per-frame parameters below are theirs (:data:`SEQUENCE_TABLES`); frame ``i`` counts from 0.

=================  =====================================  =====================================  ==================
sequence           ImageNet-P (224)                       CIFAR-P (32)                           Tiny-ImageNet-P
=================  =====================================  =====================================  ==================
gaussian_noise     clean + 30 × (x + N(0, .03²))          clean + 30, σ = .02                    σ = .025
shot_noise         clean + 30 × Poisson(300 x) / 300      λ = 700                                λ = 500
motion_blur        31, r 10, σ 3, angle 4(i − 30)°        21, r 6, σ 1.8, angle 9(i − 20)°       31, r 14, σ 3
zoom_blur          31, running mean of zooms 1 + .004 i   same                                   same
snow               31, one layer, blur angle 4i − 150°    same recipe, smaller zoom              same recipe
brightness         31, HSV V + .02 (i − 15)               V + .015 (i − 15)                      V + .02 (i − 15)
translate          41, shift i − 20 px                    16, shift i − 7 px                     31, i − 15 px
rotate             31, angle i − 15°                      same                                   same
tilt               31, 3-D tilt (i − 15)°                 .75 (i − 15)°                          (i − 15)°
scale              31, zoom (40 + 2.5 i) %                (70 + 2 i) %                           (40 + 2.5 i) %
speckle_noise*     clean + 30 × (x + x N(0, .05²))        same                                   same
gaussian_blur*     31, σ = .25 + .035 i                   σ = .3 + .015 i                        σ = .35 + .014 i
spatter*           31, water drops running down           same recipe, smaller drops             same recipe
shear*             31, shear i − 15°                      same                                   same
=================  =====================================  =====================================  ==================

``*`` = the validation perturbations. Choices and differences from the originals, written down:

* **Frames.** The defaults are the originals' counts, the clean image included as frame 0 where the original
  saved it (noise sequences: 31 frames = clean + 30 independent noisy copies; zoom blur starts from the clean
  image too). ``frames=T`` keeps the same parameter range and spaces it evenly over ``T`` frames
  (``linspace(first, last, T)``); for noise sequences ``T`` counts the clean frame (``T − 1`` noisy copies).
* **Flip probability.** The original evaluation (``ImageNet-P/test.py``) compares every frame with the *first* one
  when the perturbation name contains "noise" — gaussian, shot *and* speckle noise — and with the previous frame
  otherwise. :data:`NOISE_SEQUENCES` and :data:`TEMPORAL_SEQUENCES` follow that (REFERENCE.md names only
  gaussian and shot noise among the ten test perturbations; speckle is a validation one).
* **Noise.** Fixed strength, fresh noise per frame, as the originals; noise is drawn per frame and sample from
  the sample's generator, so sample ``i`` of a batch equals sequencing it alone with generator ``i``.
* **Geometry** (translate, rotate, scale, shear, zoom blur; tilt). The originals transform with the
  torchvision 0.2 ``affine`` of their time on PIL images: its rotation angle is *clockwise*, its shear is the
  single-angle ``x``-shear of that version (inverse map ``[[1, tan s], [0, 1 / cos s]]``), and its centre sits
  at pixel index ``(W/2, H/2)`` (half a pixel right of and below the true centre); translate uses nearest
  sampling, the rest bilinear; everything outside the image is black. Tilt is OpenCV's ``warpPerspective`` with
  the originals' 3-D rotation matrix, also centred at index ``(W/2, H/2)``, bilinear, black outside; that matrix
  puts the image at depth ``f + 1`` for focal length ``f = sqrt(W² + H²)``, so even the 0° frame is shrunk by
  ``f / (f + 1)`` (0.978 at 32 px, 0.997 at 256 px), as in the original. All of this is reproduced with one
  batched ``grid_sample`` per call; against PIL with that torchvision version's matrix and against
  ``cv2.warpPerspective`` the frames differ by the 8-bit rounding of those libraries (median ≤ 0.6 / 255), apart
  from a thin line along the edge of the black fill, where PIL fills instead of blending. ImageNet-P and
  Tiny-ImageNet-P transform the image *before* the centre crop (ImageNet-P: ``Resize(256)``, transform,
  ``CenterCrop(224)``), so most borders show real image content; pass that larger image and ``crop=224`` to do
  the same. Without ``crop`` the borders that the original would fill from outside the crop come out black
  (``padding_mode="zeros"``, the original's fill) unless ``padding_mode="border"`` or ``"reflection"`` is asked
  for. CIFAR-P transforms the 32-px image itself, so its black corners are the original's.
* **Blur, snow, spatter, brightness** reuse the corruption cores of :mod:`~robustlab.perturb.blur`,
  :mod:`~robustlab.perturb.weather` and :mod:`~robustlab.perturb.digital` with the originals' per-frame
  parameters; their own docstrings describe how they follow ImageMagick / scikit-image / OpenCV. The Gaussian
  blur uses the filter behind ``blur.apply_gaussian_blur`` directly, because the originals truncate the kernel at
  6 or 7 σ (``apply_gaussian_blur`` has scikit-image's default 4). Tiny-ImageNet-P motion-blurred the full-size
  image and then resized it to 64 px; here the 64-px image is blurred with the same radius and σ.
* **No quantisation, no video.** Frames stay float: the originals' ``uint8`` frame files (truncated by
  ``np.uint8`` / ``ToPILImage``) and, for ImageNet-P / Tiny-ImageNet-P, their H.264 encoding (``-crf 20``, or
  ``-tune grain`` for noise) are not reproduced. Intermediate quantisations that shape a frame (the snow layer
  stored as an 8-bit PNG) are.

One module per family: :mod:`._noise`, :mod:`._geometry` (with the warps) and :mod:`._corruptions` (blur,
weather, colour); :mod:`._recipes` holds the tables.
"""

from __future__ import annotations

from robustlab.perturb._registry import PERTURBATIONS
from robustlab.perturb.sequences._corruptions import (
    brightness_sequence,
    gaussian_blur_sequence,
    motion_blur_sequence,
    snow_sequence,
    spatter_sequence,
)
from robustlab.perturb.sequences._geometry import (
    affine_warp,
    perspective_warp,
    rotate_sequence,
    scale_sequence,
    shear_sequence,
    tilt_sequence,
    translate_sequence,
    zoom_blur_sequence,
)
from robustlab.perturb.sequences._noise import gaussian_noise_sequence, shot_noise_sequence, speckle_noise_sequence
from robustlab.perturb.sequences._recipes import PADDING_MODES, SEQUENCE_TABLES

__all__ = [
    "NOISE_SEQUENCES",
    "PADDING_MODES",
    "SEQUENCES",
    "SEQUENCE_TABLES",
    "TEMPORAL_SEQUENCES",
    "TEST_SEQUENCES",
    "VALIDATION_SEQUENCES",
    "affine_warp",
    "brightness_sequence",
    "gaussian_blur_sequence",
    "gaussian_noise_sequence",
    "motion_blur_sequence",
    "perspective_warp",
    "rotate_sequence",
    "scale_sequence",
    "shear_sequence",
    "shot_noise_sequence",
    "snow_sequence",
    "spatter_sequence",
    "speckle_noise_sequence",
    "tilt_sequence",
    "translate_sequence",
    "zoom_blur_sequence",
]

# the 10 test perturbations of ImageNet-P (mFR) and the 4 validation ones, by registry name
TEST_SEQUENCES = tuple(
    f"{p}_sequence"
    for p in (
        "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
        "brightness", "translate", "rotate", "tilt", "scale",
    )
)  # fmt: skip
VALIDATION_SEQUENCES = tuple(f"{p}_sequence" for p in ("speckle_noise", "gaussian_blur", "spatter", "shear"))
# compared with the first frame for the flip probability ('noise' in the name, ImageNet-P/test.py) ...
NOISE_SEQUENCES = ("gaussian_noise_sequence", "shot_noise_sequence", "speckle_noise_sequence")
# ... and these with the previous frame
TEMPORAL_SEQUENCES = tuple(s for s in TEST_SEQUENCES + VALIDATION_SEQUENCES if s not in NOISE_SEQUENCES)
# the sequences this module implements (registered in PERTURBATIONS)
SEQUENCES = tuple(s for s in TEST_SEQUENCES + VALIDATION_SEQUENCES if s in PERTURBATIONS)
