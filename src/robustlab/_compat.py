"""Import-time workaround for a torchvision that cannot load its compiled ops.

PyPI has CUDA builds of torchvision only. Next to a CPU-only torch wheel their ``_C`` extension fails to load
(it links libtorch_cuda), and torchvision 0.2x then crashes on import: ``_meta_registrations`` registers fake
kernels for ``torchvision::nms`` / ``qnms`` without checking that the ops exist. timm and open_clip import
torchvision, so robustlab would be unusable on such a machine. Declaring the two op schemas (no kernels) lets the
import finish; robustlab never calls those detection ops, and torchvision.ops still raises its own clear error if
anyone does. Where torchvision's extension loads (matching builds), this does nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import sys

import torch

log = logging.getLogger(__name__)

_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def ensure_torchvision_importable() -> None:
    if "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import glob
    import os

    libs = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    if not libs:
        return
    try:
        torch.ops.load_library(libs[0])
        return
    except (OSError, RuntimeError):
        pass
    for op, schema in _SCHEMAS.items():
        try:
            torch.library.define(f"torchvision::{op}", schema)
        except RuntimeError:  # already defined
            pass
    log.debug("torchvision compiled ops unavailable (CPU torch with CUDA torchvision); declared schemas only")


ensure_torchvision_importable()
