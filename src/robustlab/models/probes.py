"""Probes: what CAM, Grad-CAM, attention rollouts and AFAT read from inside a model.

CNNs: :func:`cam_features` gives the last convolutional feature map (with its autograd graph) and the logits
computed from it; :func:`classifier_weights` gives the linear layer that follows global average pooling, so
that ``CAM_k = sum_c W[k, c] * features[:, c]``. Every CNN net in the zoo offers the timm pair
``forward_features`` / ``forward_head`` (timm models natively; the CIFAR ResNets and EfficientNet-Lite by
construction).

ViTs: :func:`vit_probe` runs the model once and returns every block's tokens and attention probabilities.
timm's fused attention (``scaled_dot_product_attention``) never materialises the attention matrix, so the
probe switches each timm ``Attention`` to its explicit path for the call and reads the softmax output where it
enters ``attn_drop``; ``nn.MultiheadAttention`` (open_clip's CLIP towers) is asked for per-head weights
instead. Flags and hooks are restored even if the forward raises. The token grid is read from the model, never
assumed 14x14.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab._checks import check_images
from robustlab.models.classifier import Classifier

_GAP_LINEAR = (
    "CAM needs global average pooling followed by a single linear layer "
    "(CAM_k = sum_c W[k, c] * features_c); {name} has {what}. Use a gradient method (Grad-CAM) on "
    "cam_features() instead"
)


def _check_classifier(model: object, what: str) -> Classifier:
    if not isinstance(model, Classifier):
        raise ValueError(f"{what} needs a robustlab Classifier (from create_model), got {type(model).__name__}")
    return model


class CNNNet(Protocol):
    """A network with timm's feature / head split, the part of a CNN that CAM and Grad-CAM read."""

    training: bool

    def forward_features(self, x: Tensor) -> Tensor: ...

    def forward_head(self, x: Tensor) -> Tensor: ...


def cnn_net(model: Classifier) -> CNNNet:
    """``model.net`` after checking that it offers ``forward_features`` / ``forward_head`` (a CNN of the zoo).

    Raises:
        ValueError: a ViT or CLIP, or a network without the pair.
    """
    net = model.net
    if model.family in ("vit", "clip") or not (
        callable(getattr(net, "forward_features", None)) and callable(getattr(net, "forward_head", None))
    ):
        raise ValueError(
            f"{model.name or type(net).__name__} (family {model.family!r}) has no convolutional feature map "
            "to read: cam_features/classifier_weights need a CNN whose network offers "
            "forward_features/forward_head; for vision transformers use vit_probe"
        )
    return cast(CNNNet, net)  # cast: both methods were checked above; nn.Module's typing cannot see them


def cam_features(model: Classifier, images: Tensor) -> tuple[Tensor, Tensor]:
    """Run a CNN and return its last convolutional feature map and its logits.

    The feature map stays in the autograd graph, so Grad-CAM can take
    ``torch.autograd.grad(logits, features)`` and training losses on CAMs (AR2) back-propagate into the
    backbone. The model's mode is left as it is.

    Args:
        model: a CNN classifier (family ``"cnn"`` or ``"hybrid"`` with a convolutional final stage).
        images: pixels in [0, 1].

    Returns:
        ``(features, logits)``.

    Shape:
        images ``(N, C, H, W)`` -> features ``(N, K_c, h, w)``, logits ``(N, num_classes)``.

    Raises:
        ValueError: not a Classifier, images outside the contract, or a model without a convolutional feature
            map.
    """
    model = _check_classifier(model, "cam_features")
    net = cnn_net(model)
    check_images(images, channels=model.input_size[0])
    features = net.forward_features(model.normalize(images))
    if not isinstance(features, Tensor) or features.ndim != 4:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{model.name}: forward_features gave {shape}, not a feature map (N, C, h, w)")
    return features, net.forward_head(features)


def classifier_weights(model: Classifier) -> tuple[Tensor, Tensor | None]:
    """The weights of the linear layer that follows global average pooling in a CNN (the CAM channel weights).

    In eval mode the head is verified numerically: ``forward_head(f) == f.mean((2, 3)) @ W.T + b`` on a small
    synthetic feature map, which rejects heads with extra layers after pooling (MobileNetV3's conv head,
    ConvNeXt's norm) as well as flattening heads.

    Args:
        model: a CNN classifier.

    Returns:
        ``(weight, bias)``: the layer's own parameters (not copies; ``bias`` may be ``None``).

    Shape:
        weight ``(num_classes, K_c)``, bias ``(num_classes,)``; ``K_c`` is the channel count of
        :func:`cam_features`' feature map.

    Raises:
        ValueError: not a Classifier, or the model's head is not global average pooling + one linear layer.
    """
    model = _check_classifier(model, "classifier_weights")
    net = cnn_net(model)
    name = model.name or type(net).__name__
    get = getattr(net, "get_classifier", None)
    linear = get() if callable(get) else None
    if not isinstance(linear, nn.Linear):
        what = "no such head (it flattens?)" if linear is None else f"a {type(linear).__name__} classifier"
        raise ValueError(_GAP_LINEAR.format(name=name, what=what))
    # dropout in train mode would make the comparison random; the structure is what matters, and eval mode
    # (what create_model returns) shows it
    if not net.training:
        _verify_gap_linear(net, linear, name)
    return linear.weight, linear.bias


@torch.no_grad()
def _verify_gap_linear(net: CNNNet, linear: nn.Linear, name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.rand((2, linear.in_features, 3, 2), generator=generator).to(linear.weight)
    expected = F.linear(features.mean(dim=(2, 3)), linear.weight, linear.bias)
    try:
        actual = net.forward_head(features)
    except (RuntimeError, ValueError) as e:
        what = f"a head that does not take pooled features ({e})"
        raise ValueError(_GAP_LINEAR.format(name=name, what=what)) from e
    same = (
        isinstance(actual, Tensor)
        and actual.shape == expected.shape
        and torch.allclose(actual, expected, rtol=1e-4, atol=1e-5)
    )
    if not same:
        what = "more than pooling and one linear layer in its head"
        raise ValueError(_GAP_LINEAR.format(name=name, what=what))


@dataclass(frozen=True)
class ViTProbe:
    """Everything one forward pass of a vision transformer exposes to explainers.

    Attributes:
        logits: the model's output.
        tokens: per block, the block's output tokens (prefix tokens first).
        attentions: per block, the attention probabilities (softmax over keys, before attention dropout); they
            stay in the autograd graph.
        num_prefix_tokens: class / register / distillation tokens before the patch tokens.
        grid: ``(h, w)`` of the patch-token grid.

    Shape:
        logits ``(N, K)``; tokens ``(N, T, D)``; attentions ``(N, heads, T, T)``;
        ``T = num_prefix_tokens + h * w``.
    """

    logits: Tensor
    tokens: list[Tensor]
    attentions: list[Tensor]
    num_prefix_tokens: int
    grid: tuple[int, int]

    @property
    def num_blocks(self) -> int:
        return len(self.tokens)

    def token_map(self, block: int = -1) -> Tensor:
        """Patch tokens of one block as a feature map ``(N, D, h, w)`` (prefix tokens dropped)."""
        patches = self.tokens[block][:, self.num_prefix_tokens :]
        return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], *self.grid)


@dataclass
class _ViTParts:
    blocks: list[nn.Module]
    attentions: list[nn.Module]
    num_prefix_tokens: int
    grid: tuple[int, int]
    batch_first: bool


def _vit_parts(model: Classifier) -> _ViTParts:
    net = model.net
    name = model.name or type(net).__name__
    visual = getattr(getattr(net, "clip", None), "visual", None)
    # open_clip ViT image tower
    if visual is not None and hasattr(visual, "transformer") and hasattr(visual, "grid_size"):
        blocks = list(visual.transformer.resblocks)
        attentions: list[nn.Module] = [
            a for b in blocks if isinstance(a := getattr(b, "attn", None), nn.MultiheadAttention)
        ]
        if len(attentions) != len(blocks):
            raise ValueError(f"{name}: vit_probe reads nn.MultiheadAttention in open_clip towers; this one differs")
        grid = tuple(int(v) for v in visual.grid_size)
        return _ViTParts(blocks, attentions, 1, (grid[0], grid[1]), bool(visual.transformer.batch_first))
    # timm VisionTransformer and relatives
    if hasattr(net, "blocks") and hasattr(net, "patch_embed") and hasattr(net.patch_embed, "grid_size"):
        blocks = list(net.get_submodule("blocks").children())
        found_attentions = [getattr(b, "attn", None) for b in blocks]
        attentions = [
            a
            for a in found_attentions
            if isinstance(a, nn.Module)
            and hasattr(a, "fused_attn")
            and isinstance(getattr(a, "attn_drop", None), nn.Module)
        ]
        if not blocks or len(attentions) != len(blocks):
            found = type(found_attentions[0]).__name__ if found_attentions else "absent"
            raise ValueError(
                f"{name}: vit_probe reads timm Attention modules (fused_attn + attn_drop); block attention "
                f"here is {found}"
            )
        # cast: timm's PatchEmbed.grid_size is an (h, w) pair of ints (its presence is checked above)
        grid = tuple(int(v) for v in cast("tuple[int, int]", net.patch_embed.grid_size))
        prefix = int(getattr(net, "num_prefix_tokens", 1))
        return _ViTParts(blocks, attentions, prefix, (grid[0], grid[1]), True)
    raise ValueError(
        f"{name} (family {model.family!r}) is not a vision transformer vit_probe can read: it needs "
        "timm-style blocks + patch_embed.grid_size, or an open_clip ViT image tower"
    )


class _TimmAttention(Protocol):
    """What the probe switches on a timm ``Attention``: the fused-kernel flag and the dropout after the softmax."""

    fused_attn: bool
    attn_drop: nn.Module


def _ask_for_weights(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return args, {**kwargs, "need_weights": True, "average_attn_weights": False}


@contextmanager
def _capture(parts: _ViTParts) -> Iterator[tuple[list[Tensor], list[Tensor]]]:
    tokens: list[Tensor] = []
    attentions: list[Tensor] = []
    handles: list[torch.utils.hooks.RemovableHandle] = []
    fused: list[tuple[_TimmAttention, bool]] = []

    def keep_tokens(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        tokens.append(output if parts.batch_first else output.transpose(0, 1))

    def keep_softmax(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        attentions.append(args[0])  # the input of attn_drop: probabilities before dropout

    def keep_mha_weights(module: nn.Module, args: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        attentions.append(output[1])

    try:
        for block in parts.blocks:
            handles.append(block.register_forward_hook(keep_tokens))
        for attn in parts.attentions:
            if isinstance(attn, nn.MultiheadAttention):
                handles.append(attn.register_forward_pre_hook(_ask_for_weights, with_kwargs=True))
                handles.append(attn.register_forward_hook(keep_mha_weights))
            else:
                timm_attn = cast(_TimmAttention, attn)  # cast: _vit_parts checked fused_attn and attn_drop
                fused.append((timm_attn, bool(timm_attn.fused_attn)))
                timm_attn.fused_attn = False
                handles.append(timm_attn.attn_drop.register_forward_hook(keep_softmax))
        yield tokens, attentions
    finally:
        for handle in handles:
            handle.remove()
        for timm_attn, flag in fused:
            timm_attn.fused_attn = flag


def vit_probe(model: Classifier, images: Tensor) -> ViTProbe:
    """Run a vision transformer once and capture every block's tokens and attention probabilities.

    Works on timm ViTs (including ``cifar:vit_tiny_patch4``) and open_clip ViT image towers. Fused attention
    is switched off for this call only; flags and hooks are restored afterwards, also when the forward raises.
    The model's mode is left as it is, and gradients flow through every returned tensor.

    Args:
        model: a ViT classifier.
        images: pixels in [0, 1].

    Returns:
        A :class:`ViTProbe`.

    Shape:
        images ``(N, C, H, W)`` -> see :class:`ViTProbe`.

    Raises:
        ValueError: not a Classifier, images outside the contract, a model that is not a readable ViT, or a
            token count that does not match the grid (e.g. an input size other than the model's).
    """
    model = _check_classifier(model, "vit_probe")
    parts = _vit_parts(model)
    check_images(images, channels=model.input_size[0])
    with _capture(parts) as (tokens, attentions):
        logits = model(images)
    name = model.name or type(model.net).__name__
    if len(tokens) != len(parts.blocks) or len(attentions) != len(parts.blocks):
        raise ValueError(
            f"{name}: captured {len(attentions)} attention maps and {len(tokens)} token sets for "
            f"{len(parts.blocks)} blocks; this attention implementation is not supported by vit_probe"
        )
    expected = parts.num_prefix_tokens + parts.grid[0] * parts.grid[1]
    if tokens[0].shape[1] != expected:
        raise ValueError(
            f"{name}: {tokens[0].shape[1]} tokens, but {parts.num_prefix_tokens} prefix tokens + a "
            f"{parts.grid} grid make {expected}; feed images of the model's input size {model.input_size[1:]}"
        )
    return ViTProbe(logits, list(tokens), list(attentions), parts.num_prefix_tokens, parts.grid)
