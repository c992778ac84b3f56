"""Zero-shot CLIP classifiers behind ``create_model("openclip:<arch>/<pretrained tag>", class_names=[...])``.

The text tower turns each class name into a unit vector (prompt templates averaged, then L2-normalised);
logits are ``logit_scale * normalise(image features) @ text weights`` (+ ``logit_bias`` for SigLIP-style
models). The whole open_clip model stays inside (``net.clip``) so that test-time prompt tuning can reach the
text tower, and the tokenizer is kept as ``net.tokenizer``. Normalisation (CLIP mean/std) lives in the
:class:`Classifier`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab._checks import did_you_mean
from robustlab.models._common import resolve_class_names
from robustlab.models.classifier import Classifier

# The seven templates chosen for ImageNet in OpenAI's CLIP prompt-engineering notebook, plus the plain
# template
# of the CLIP paper (Radford et al. 2021, section 3.1.4).
CLIP_TEMPLATES = (
    "a photo of a {}.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
_TEXT_BATCH = 256


class _OpenCLIP(Protocol):
    """The methods and the temperature of an open_clip model that the zero-shot classifier calls."""

    logit_scale: Tensor

    def encode_image(self, image: Tensor) -> Tensor: ...

    def encode_text(self, text: Tensor) -> Tensor: ...


class ZeroShotCLIP(nn.Module):
    """A CLIP model turned into a fixed K-way classifier by text embeddings of the class names.

    Args:
        clip: an open_clip model (``encode_image``, ``encode_text``, ``logit_scale``).
        tokenizer: open_clip tokenizer mapping a list of strings to token ids ``(B, L)``.
        class_names: one name per class.
        templates: prompt templates with one ``{}`` for the class name.

    Shape:
        forward: ``(N, 3, H, W)`` CLIP-normalised images -> ``(N, K)`` logits.
    """

    text_weights: Tensor

    def __init__(
        self,
        clip: nn.Module,
        tokenizer: Callable[[list[str]], Tensor],
        class_names: Sequence[str],
        templates: Sequence[str] = CLIP_TEMPLATES,
    ) -> None:
        super().__init__()
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"every prompt template needs one '{{}}' for the class name, got {list(templates)}")
        self.clip = clip
        self.tokenizer = tokenizer
        self.templates = tuple(templates)
        self.register_buffer("text_weights", self.encode_class_names(class_names))

    @torch.no_grad()
    def encode_class_names(self, class_names: Sequence[str], templates: Sequence[str] | None = None) -> Tensor:
        """Text classifier weights: per class, the normalised mean of its normalised prompt embeddings.

        Args:
            class_names: one name per class.
            templates: prompt templates; default the ones this module was built with.

        Returns:
            ``(D, K)`` unit-norm columns, on the model's device.
        """
        templates = tuple(templates or self.templates)
        prompts = [t.format(name) for name in class_names for t in templates]
        device = next(self.clip.parameters()).device
        tokens = self.tokenizer(prompts)
        features = torch.cat(
            [
                F.normalize(self._open_clip.encode_text(chunk.to(device)).float(), dim=-1)
                for chunk in tokens.split(_TEXT_BATCH)
            ]
        )
        per_class = features.view(len(class_names), len(templates), -1).mean(dim=1)
        return F.normalize(per_class, dim=-1).T.contiguous()

    @property
    def _open_clip(self) -> _OpenCLIP:
        # cast: the constructor takes an open_clip model, whose methods nn.Module's typing cannot see
        return cast(_OpenCLIP, self.clip)

    def forward(self, images: Tensor) -> Tensor:
        features = F.normalize(self._open_clip.encode_image(images), dim=-1)
        logits = self._open_clip.logit_scale.exp() * features @ self.text_weights.to(features.dtype)
        bias = getattr(self.clip, "logit_bias", None)
        return logits + bias if bias is not None else logits


def _unknown_arch_message(arch: str, known: list[str]) -> str:
    hint = did_you_mean(arch, known, n=5)
    return f"Unknown open_clip architecture {arch!r}.{hint} See open_clip.list_models() for all names."


def create_openclip_model(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    templates: Sequence[str] = CLIP_TEMPLATES,
) -> Classifier:
    """Build a zero-shot CLIP classifier from an open_clip architecture and pretrained tag.

    Args:
        name: ``"<arch>/<tag>"`` (e.g. ``"ViT-B-32/openai"``); the tag may be omitted with
            ``pretrained=False`` or ``weights``. The tag also fixes preprocessing (mean/std) and QuickGELU.
        pretrained: fetch the tag's weights through open_clip (needs network or a filled cache).
        weights: a local open_clip checkpoint to load instead.
        class_names: one name per class (required: the text tower needs them).
        num_classes: optional; must equal ``len(class_names)``.
        templates: prompt templates averaged per class.

    Returns:
        A :class:`Classifier` of family ``"clip"`` wrapping :class:`ZeroShotCLIP`.

    Raises:
        ValueError: no class names, unknown architecture or tag, a weights file that does not fit.
        RuntimeError: pretrained weights or the tokenizer could not be fetched (e.g. offline).
    """
    import open_clip

    spec = f"openclip:{name}"
    if class_names is None:
        raise ValueError(
            f"{spec} is a zero-shot classifier: pass class_names=[...] (one name per class, e.g. "
            "robustlab.models.CIFAR10_CLASSES or the ImageNet names)"
        )
    names = resolve_class_names(class_names, num_classes, default=(), spec=spec)
    arch, _, tag = name.partition("/")
    if arch not in open_clip.list_models():
        raise ValueError(_unknown_arch_message(arch, open_clip.list_models()))
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag and not tag_cfg:
        raise ValueError(f"{spec}: unknown pretrained tag {tag!r} for {arch}; known tags: {', '.join(tags) or 'none'}")
    fetch = pretrained and weights is None
    if fetch and not tag:
        raise ValueError(
            f"{spec}: name a pretrained tag (openclip:{arch}/<tag>, tags: {', '.join(tags) or 'none'}), pass "
            "weights=<local checkpoint>, or pass pretrained=False for random weights"
        )
    source = str(weights) if weights is not None else (tag if fetch else None)
    try:
        # the tag fixes QuickGELU (OpenAI weights need it), also for random weights of the same architecture
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        clip = open_clip.create_model(arch, pretrained=source, force_quick_gelu=quick_gelu, weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        if weights is not None:
            raise ValueError(f"{spec}: cannot load {weights} into {arch}: {str(e)[:300]}") from e
        if fetch:
            raise RuntimeError(
                f"{spec}: could not fetch open_clip weights for tag {tag!r} "
                f"({type(e).__name__}: {str(e)[:300]}). Without network access: pass "
                "weights=<local open_clip checkpoint>, load a robustlab checkpoint with "
                "create_model('file:<path>'), or pass pretrained=False for random weights"
            ) from e
        raise
    try:
        tokenizer = open_clip.get_tokenizer(arch)
    except (OSError, RuntimeError, ValueError) as e:
        raise RuntimeError(f"{spec}: could not create the tokenizer of {arch} ({e}); it may need network") from e
    clip.eval()  # text embeddings are computed here, once, in inference mode
    net = ZeroShotCLIP(clip, tokenizer, names, templates)
    config = {**open_clip.get_model_preprocess_cfg(clip), **tag_cfg}
    size = clip.visual.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return Classifier(
        net,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        input_size=(3, int(height), int(width)),
        class_names=names,
        name=spec,
        crop_pct=1.0,  # CLIP resizes the short side to the input size and centre-crops it
        interpolation=str(config.get("interpolation", "bicubic")),
        family="clip",
    )
