"""The learnable text prompt of test-time prompt tuning (CoOp-style context vectors) and its one-step update.

Only the ``n_ctx`` context vectors that replace the words of the initial prompt ("a photo of a") are learned; the
start token, the class-name tokens, the full stop, the end token and every CLIP weight stay frozen. The text tower
is run on embeddings instead of token ids, mirroring open_clip's ``CLIP.encode_text``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.classifier import Classifier

DEFAULT_CTX_INIT = "a photo of a"


class CLIPParts(Protocol):
    """The attributes of an open_clip ``CLIP`` that prompt tuning, its attacks and its attention maps read.

    Through ``nn.Module.__getattr__`` every submodule and buffer reads as ``Tensor | Module``; this names them.
    """

    token_embedding: nn.Embedding
    positional_embedding: Tensor
    transformer: nn.Module
    ln_final: nn.Module
    text_projection: Tensor | nn.Linear
    attn_mask: Tensor | None
    logit_scale: Tensor
    visual: nn.Module

    def encode_image(self, image: Tensor) -> Tensor: ...


def clip_of(model: Classifier) -> CLIPParts:
    """The open_clip CLIP inside a zero-shot CLIP classifier (``model.net.clip``), typed by the parts read here."""
    # cast: the type system sees an nn.Module attribute; create_model("openclip:...") puts an open_clip CLIP there
    return cast(CLIPParts, model.net.clip)


def clip_tokenizer(model: Classifier) -> Callable[[list[str]], Tensor]:
    """The open_clip tokenizer of a zero-shot CLIP classifier (``model.net.tokenizer``): strings -> ``(B, L)`` ids."""
    # cast: as in clip_of, the attribute is ZeroShotCLIP's tokenizer, which nn.Module's typing cannot see
    return cast("Callable[[list[str]], Tensor]", model.net.tokenizer)


def _clip_parts(model: Classifier) -> CLIPParts:
    clip = getattr(getattr(model, "net", None), "clip", None)
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    if clip is None or not all(hasattr(clip, name) for name in needed):
        raise ValueError(
            f"test-time prompt tuning needs an open_clip CLIP classifier with a plain text tower "
            f"(create_model('openclip:<arch>/<tag>', class_names=[...])), got {getattr(model, 'name', '') or model!r}"
        )
    return cast(CLIPParts, clip)  # cast: every attribute of CLIPParts that text_features reads was checked above


class PromptLearner(nn.Module):
    """Per-class text embeddings from learnable context vectors ``ctx`` (shared by all classes).

    Args:
        model: a zero-shot CLIP :class:`Classifier` (``create_model("openclip:...")``); its CLIP stays frozen.
        class_names: one name per class; default the model's.
        ctx_init: the initial prompt words; the prompt of class ``c`` is ``"{ctx_init} {c}."``.

    Attributes:
        ctx: the learnable context vectors, a parameter.
        init_ctx: the token embeddings of ``ctx_init`` (a buffer; :meth:`reset` copies it into ``ctx``).

    Shape:
        ctx ``(n_ctx, width)``; :meth:`text_features` -> ``(K, embed_dim)``.
    """

    tokens: Tensor
    prefix: Tensor
    suffix: Tensor
    init_ctx: Tensor

    def __init__(
        self, model: Classifier, class_names: Sequence[str] | None = None, ctx_init: str = DEFAULT_CTX_INIT
    ) -> None:
        super().__init__()
        clip = _clip_parts(model)
        tokenizer = clip_tokenizer(model)
        names = list(class_names if class_names is not None else model.class_names)
        if not names:
            raise ValueError("PromptLearner needs at least one class name")
        words = ctx_init.replace("_", " ").strip()
        if not words:
            raise ValueError("ctx_init must contain at least one word, e.g. 'a photo of a'")
        device = clip.token_embedding.weight.device
        # tokens of the context alone: start token, the words, end token
        ctx_ids = tokenizer([words]).to(device)
        n_ctx = int(ctx_ids.argmax(dim=-1)) - 1
        prompts = tokenizer([f"{words} {name.replace('_', ' ')}." for name in names]).to(device)
        if getattr(clip, "attn_mask", None) is not None:
            # under the causal mask nothing after the last end token reaches an end token's output, so the
            # padding is cut (77 -> a dozen tokens: the same features, several times faster)
            prompts = prompts[:, : int(prompts.argmax(dim=-1).max()) + 1]
        with torch.no_grad():
            embedded = clip.token_embedding(prompts)
            init = clip.token_embedding(ctx_ids)[0, 1 : 1 + n_ctx]
        self._clip = [clip]  # not a submodule: CLIP stays outside this module's parameters and state dict
        self.n_ctx = n_ctx
        self.class_names = names
        self.register_buffer("tokens", prompts, persistent=False)
        self.register_buffer("prefix", embedded[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", embedded[:, 1 + n_ctx :].clone(), persistent=False)
        self.register_buffer("init_ctx", init.clone())
        self.ctx = nn.Parameter(init.clone())

    @property
    def clip(self) -> CLIPParts:
        return self._clip[0]

    @torch.no_grad()
    def reset(self) -> None:
        """Copy the initial context back into :attr:`ctx` (done before anything else for every test sample)."""
        self.ctx.copy_(self.init_ctx)

    def text_features(self, ctx: Tensor | None = None) -> Tensor:
        """Unit-norm class text features for the context ``ctx`` (default :attr:`ctx`), differentiable in it."""
        clip = self.clip
        ctx = self.ctx if ctx is None else ctx
        k = self.prefix.shape[0]
        x = torch.cat([self.prefix, ctx.unsqueeze(0).expand(k, -1, -1), self.suffix], dim=1)
        get_cast_dtype = getattr(clip.transformer, "get_cast_dtype", None)
        dtype = get_cast_dtype() if get_cast_dtype is not None else x.dtype
        length = x.shape[1]
        x = x.to(dtype) + clip.positional_embedding[:length].to(dtype)
        mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
        x = clip.transformer(x, attn_mask=mask)
        x = clip.ln_final(x)
        # the end token has the largest id in CLIP's vocabulary (open_clip's "argmax" text pooling)
        x = x[torch.arange(k, device=x.device), self.tokens.argmax(dim=-1)]
        projection = clip.text_projection
        x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
        return F.normalize(x.float(), dim=-1)

    def logits(self, image_features: Tensor, ctx: Tensor | None = None) -> Tensor:
        """CLIP logits ``logit_scale * image_features @ text_features(ctx).T`` for unit-norm image features."""
        scale = self.clip.logit_scale.exp().float()
        logits = scale * image_features.float() @ self.text_features(ctx).T
        bias = getattr(self.clip, "logit_bias", None)
        return logits + bias.float() if bias is not None else logits


def encode_images(model: Classifier, images: Tensor) -> Tensor:
    """Unit-norm CLIP image features of [0, 1] pixels (the classifier's normalisation applied first).

    Shape:
        ``(N, 3, H, W)`` -> ``(N, embed_dim)``.
    """
    normalised = (images - model.mean.to(images.dtype)) / model.std.to(images.dtype)
    return F.normalize(clip_of(model).encode_image(normalised).float(), dim=-1)


def adamw_steps(
    ctx: Tensor,
    loss_fn: object,
    *,
    steps: int = 1,
    lr: float = 5e-3,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    create_graph: bool = False,
) -> Tensor:
    """``steps`` AdamW updates of ``ctx`` from a fresh optimiser state, as a differentiable function of ``ctx``.

    Exactly :class:`torch.optim.AdamW`'s update (decoupled weight decay, bias-corrected moments); TPT resets the
    optimiser state for every test sample, so the state always starts at zero. Written out so that gradients can
    flow through the tuning step (``create_graph=True``) for adaptive attacks. One step from a zero state is
    ``ctx * (1 - lr * wd) - lr * g / (|g| + eps)`` (up to the bias corrections' rounding).

    Args:
        ctx: the starting context (need not require grad).
        loss_fn: ``loss_fn(ctx) -> scalar`` to minimise.
        steps: number of updates (TPT and A-TPT: 1).
        lr, weight_decay, betas, eps: AdamW's hyper-parameters (torch defaults except ``lr``).
        create_graph: keep the graph of the gradients (second order).

    Returns:
        The updated context.
    """
    m = torch.zeros_like(ctx)
    v = torch.zeros_like(ctx)
    beta1, beta2 = betas
    if not create_graph:
        ctx = ctx.detach()
    for t in range(1, steps + 1):
        current = ctx if ctx.requires_grad else ctx.detach().requires_grad_(True)
        loss = loss_fn(current)  # type: ignore[operator]
        (grad,) = torch.autograd.grad(loss, current, create_graph=create_graph)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        ctx = current * (1 - lr * weight_decay) - lr * m_hat / (v_hat.sqrt() + eps)
        if not create_graph:
            ctx = ctx.detach()
    return ctx
