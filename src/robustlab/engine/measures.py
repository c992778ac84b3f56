"""Suite entries that measure for themselves: adversarial attacks and explanation stability under corruptions.

- ``pgd:eps=8/255,steps=20`` (any registered attack; ``attacks`` = FGSM and PGD-10 at one ε): each setting stores
  ``clean_accuracy``, ``robust_accuracy`` and ``attack_success_rate`` (the fraction of correctly classified samples
  the attack turns wrong). Only correctly classified samples are attacked, as AutoAttack does; the random start of
  every sample comes from its own generator, so a sample's adversarial example does not depend on its batch. An
  option given as a ``+`` list (``eps=1/255+2/255+8/255``) makes one setting per value.
- ``cam_stability`` / ``attention_stability``: per corruption and severity, the mean cosine similarity between the
  explanation of the clean image and of its corrupted version (``cam_cosine`` for CNNs, ``attention_cosine``
  averaged over layers and heads for ViTs). The corrupted images are the same as those of the accuracy cells
  (same per-sample generators). Options ``corruptions=fog+snow`` (default the 15 test corruptions),
  ``severities=1-5``, ``profile=cifar``; ``method=cam|grad_cam`` for CAMs.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab import explain, rng
from robustlab._registry import close_matches_message
from robustlab.attacks import ATTACKS, DEFAULT_EPS
from robustlab.data._base import iter_batches
from robustlab.engine.accuracy import _model_device
from robustlab.engine.conditions import (
    Condition,
    parse_floats,
    parse_int_list,
    parse_option_value,
    parse_severities,
)
from robustlab.models.classifier import Classifier
from robustlab.models.patch_corruptor import load_corruptor
from robustlab.perturb import ALL_CORRUPTIONS, TEST_CORRUPTIONS, VALIDATION_CORRUPTIONS, perturb
from robustlab.perturb.occlusion import corrupt_patches, keep_mask, patch_occlusion
from robustlab.progress import BatchDone, listening

# arguments an attack receives from the engine, never from the suite
_ENGINE_ARGS = ("model", "images", "labels", "generator", "init", "targets", "target_labels", "patches")
ATTACK_METRICS = ("clean_accuracy", "robust_accuracy", "attack_success_rate")


def attack_names() -> list[str]:
    return list(ATTACKS)


def attack_conditions(name: str, options: Mapping[str, str]) -> list[Any]:
    """Conditions for one attack entry of a suite: one per setting (the product of ``+`` lists).

    Raises:
        ValueError: an unknown attack (close matches listed) or option, or a value of the wrong kind.
    """

    fn = ATTACKS.get(name)
    signature = inspect.signature(fn)
    tunable = {
        k: p.default
        for k, p in signature.parameters.items()
        if k not in _ENGINE_ARGS and p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect._empty
    }
    unknown = sorted(set(options) - set(tunable))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for attack {name!r}; it takes {sorted(tunable)}")
    if str(options.get("targeted", "false")).lower() in ("1", "true", "yes", "on"):
        raise ValueError(f"{name}: the suite runs untargeted attacks (targets come from labels); drop targeted")
    choices = {
        k: [parse_option_value(k, v.strip(), tunable[k], name) for v in text.split("+")] for k, text in options.items()
    }
    settings = []
    for values in itertools.product(*choices.values()):
        given = dict(zip(choices, values, strict=True))
        # the stored key holds every parameter, defaults included, so a later change of default cannot mix cells
        params = {k: v for k, v in {**tunable, **given}.items() if isinstance(v, (bool, int, float, str))}
        norm = params.get("norm")
        if "eps" in tunable and "eps" not in params and isinstance(norm, str) and norm in DEFAULT_EPS:
            params["eps"] = DEFAULT_EPS[norm]  # the norm's default ε, written out
        settings.append(Condition(name, 0, params, True, None, ATTACK_METRICS, _attack_measure(name, params),
                                  _attack_finalize, check=functools.partial(_check_attack, fn, params)))  # fmt: skip
    return settings


def _check_attack(fn: Callable[..., Tensor], params: Mapping[str, Any], model: nn.Module, images: Tensor,
                  labels: Tensor) -> None:  # fmt: skip
    # every attack validates its arguments before it returns an empty batch unchanged
    fn(model, images[:0], labels[:0], **params)


def attack_batch(
    name: str, params: Mapping[str, Any], model: nn.Module, images: Tensor, labels: Tensor, indices: Tensor, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Attack the correctly classified samples of a batch, as the suite does.

    Sample ``i``'s random start comes from ``sample_generators(seed, [i], name, params)``, so its adversarial
    example does not depend on the batch.

    Returns:
        ``(adversarial images, clean predictions, adversarial predictions)``; misclassified samples keep their
        clean image.
    """

    with torch.no_grad():
        clean_pred = model(images).argmax(dim=1)
    adv = images.detach().clone()
    adv_pred = clean_pred.clone()
    hit = (clean_pred == labels).nonzero().flatten()
    if len(hit):
        key = json.dumps(dict(params), sort_keys=True)
        gens = rng.sample_generators(seed, indices[hit.cpu()], name, key)
        adv[hit] = ATTACKS.get(name)(model, images[hit], labels[hit], generator=gens, **params)
        with torch.no_grad():
            adv_pred[hit] = model(adv[hit]).argmax(dim=1)
    return adv, clean_pred, adv_pred


def _attack_measure(name: str, params: dict[str, Any]) -> Callable[..., Tensor]:
    def measure(model: nn.Module, images: Tensor, labels: Tensor, indices: Tensor, seed: int) -> Tensor:
        _, clean_pred, adv_pred = attack_batch(name, params, model, images, labels, indices, seed)
        correct, robust = (clean_pred == labels).sum(), (adv_pred == labels).sum()
        return torch.stack([correct, robust, torch.zeros_like(correct)]).double()

    return measure


def _attack_finalize(sums: Tensor, total: int) -> list[float]:
    correct, robust = float(sums[0]), float(sums[1])
    nan = float("nan")
    return [correct / total if total else nan, robust / total if total else nan,
            (correct - robust) / correct if correct else nan]  # fmt: skip


def stability_conditions(kind: str, options: dict[str, str], profile: str | None) -> list[tuple[str, list[Any]]]:
    """``(group name, conditions)`` per corruption for a ``cam_stability`` / ``attention_stability`` entry.

    Raises:
        ValueError: an unknown corruption, method or option.
    """

    method = options.pop("method", "cam") if kind == "cam_stability" else None
    if method is not None and method not in ("cam", "grad_cam"):
        raise ValueError(close_matches_message("cam_stability method", method, ["cam", "grad_cam"]))
    groups = {"corruptions": TEST_CORRUPTIONS, "validation": VALIDATION_CORRUPTIONS, "all_corruptions": ALL_CORRUPTIONS}
    names: list[str] = []
    for entry in options.pop("corruptions", "corruptions").split("+"):
        entry = entry.strip()
        if entry not in groups and entry not in ALL_CORRUPTIONS:
            raise ValueError(close_matches_message("corruption", entry, list(groups) + list(ALL_CORRUPTIONS)))
        names += [c for c in groups.get(entry, (entry,)) if c not in names]
    severities = parse_severities(options.pop("severities", None))
    metric = "cam_cosine" if kind == "cam_stability" else "attention_cosine"
    out = []
    for corruption in names:
        conditions = []
        for s in severities:
            params: dict[str, Any] = {"profile": profile} if profile else {}
            if method is not None:
                params["method"] = method
            measure = _stability_measure(kind, corruption, s, profile, method)
            conditions.append(Condition(corruption, s, params, True, None, (metric,), measure))
        out.append((f"{kind} {corruption}", conditions))
    return out


def _stability_measure(
    kind: str, corruption: str, severity: int, profile: str | None, method: str | None
) -> Callable[..., Tensor]:
    def measure(model: Classifier, images: Tensor, labels: Tensor, indices: Tensor, seed: int) -> Tensor:

        gens = rng.sample_generators(seed, indices, corruption, severity)  # the accuracy cells' corrupted images
        with torch.no_grad():
            corrupted = perturb(images, corruption, severity, generator=gens, profile=profile)
        if kind == "cam_stability":
            cosine = explain.cam_stability(model, images, corrupted, method=method or "cam")
        else:
            cosine = explain.attention_stability(model, images, corrupted).flatten(1).mean(dim=1)
        return cosine.detach().double().sum().view(1)

    return measure


@dataclass(frozen=True)
class AttackOutcome:
    """Per-sample result of attacking a dataset (see :func:`attack_dataset`).

    Shape:
        indices, labels, clean_pred, adv_pred ``(N,)``; adversarial ``(N, C, H, W)`` on the CPU.
    """

    indices: Tensor
    labels: Tensor
    clean_pred: Tensor
    adv_pred: Tensor
    adversarial: Tensor

    @property
    def success(self) -> Tensor:
        """Correctly classified before the attack and wrong after it."""
        return (self.clean_pred == self.labels) & (self.adv_pred != self.labels)

    def values(self) -> list[float]:
        """``[clean accuracy, robust accuracy, attack success rate]`` as the suite stores them."""
        sums = torch.stack([(self.clean_pred == self.labels).sum(), (self.adv_pred == self.labels).sum()]).double()
        return _attack_finalize(sums, len(self.labels))


def attack_dataset(
    model: nn.Module,
    dataset: Any,
    name: str,
    params: Mapping[str, Any],
    *,
    seed: int = 0,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    callback: Callable[[Any], None] | None = None,
) -> AttackOutcome:
    """Attack every correctly classified sample of ``dataset`` and keep the adversarial examples.

    The adversarial examples equal those behind the suite's cells for the same ``(name, params, seed)``.

    Args:
        model: a classifier on [0, 1] pixels, in eval mode.
        dataset: a robustlab ImageDataset.
        name: a registered attack.
        params: its parameters (as :func:`attack_conditions` resolves them).
        seed: seed of the per-sample random starts.
        batch_size: samples per attack batch.
        device: where to run (default: the model's).
        callback: a :class:`~robustlab.progress.BatchDone` after each batch, and the attack's own events
            (AutoAttack's :class:`~robustlab.progress.StageDone`).

    Returns:
        An :class:`AttackOutcome`.
    """

    device = torch.device(device) if device is not None else _model_device(model)
    parts: list[tuple[Tensor, ...]] = []
    total = (len(dataset) + batch_size - 1) // batch_size
    with listening(callback):
        for b, batch in enumerate(iter_batches(dataset, batch_size)):
            images, labels = batch.images.to(device), batch.labels.to(device)
            adv, clean_pred, adv_pred = attack_batch(name, params, model, images, labels, batch.indices, seed)
            parts.append((batch.indices, batch.labels, clean_pred.cpu(), adv_pred.cpu(), adv.cpu()))
            if callback is not None:
                callback(BatchDone(done=b + 1, total=total))
    if not parts:
        raise ValueError("the dataset is empty")
    return AttackOutcome(*(torch.cat(column) for column in zip(*parts, strict=True)))


# ------------------------------------------------------------------------------------------------------------ AFAT
# Suite entries for AFAT's evaluation:
# - ``afat_patch:corruptor=PATH,ratio=0.1``: accuracy when a trained patch-corruption model C (saved by
#   ``robustlab train afat`` as OUT.corruptor.pt) picks the ⌊ρ·N⌋ patches to replace with uniform noise.
# - ``patch_attention_stability:ratios=0.1,patch=4,layers=0-5``: mean attention cosine (clean vs random
#   noise-patch occlusion; the same occluded images as the ``occlusion`` accuracy cells), averaged over layers and
#   heads, plus one ``attention_cosine_layer{i}`` metric per listed layer.

AFAT_TOKENS = ("afat_patch", "patch_attention_stability")


def afat_conditions(name: str, options: dict[str, str], image_size: tuple[int, int] | None) -> list[Any]:
    """Conditions of an ``afat_patch`` / ``patch_attention_stability`` entry (options are consumed).

    Raises:
        ValueError: a missing or unreadable corruptor, a bad ratio, patch size or layer list.
    """

    if name == "afat_patch":
        path = options.pop("corruptor", None)
        if not path:
            raise ValueError("afat_patch needs corruptor=PATH (robustlab train afat writes OUT.corruptor.pt)")
        if not Path(path).is_file():
            raise FileNotFoundError(f"afat_patch: no corruptor file at {path}")
        ratio = parse_floats(options.pop("ratio", "0.1"), "ratio")[0]
        if not 0 < ratio < 1:
            raise ValueError(f"afat_patch ratio must lie in (0, 1), got {ratio}")
        params = {"ratio": ratio, "corruptor": str(path)}
        return [Condition("afat_patch", 0, params, True, None, ("accuracy",), _afat_patch_measure(str(path), ratio))]
    ratios = parse_floats(options.pop("ratios", "0.1"), "ratios")
    default_patch = 4 if image_size is not None and min(image_size) < 64 else 16
    patch = int(options.pop("patch", default_patch))
    layers = parse_int_list(options.pop("layers"), "layers") if "layers" in options else []
    if any(r < 0 or r > 1 for r in ratios) or patch < 1 or any(i < 0 for i in layers):
        raise ValueError(f"patch_attention_stability: ratios in [0, 1], patch >= 1, layers >= 0; got "
                         f"{ratios}, {patch}, {layers}")  # fmt: skip
    metrics = ("attention_cosine", *(f"attention_cosine_layer{i}" for i in layers))
    return [Condition("patch_occlusion_attention", 0, {"ratio": r, "patch_size": patch, "layers": list(layers)}, True,
                      None, metrics, _patch_attention_measure(r, patch, layers)) for r in ratios]  # fmt: skip


def _afat_patch_measure(path: str, ratio: float) -> Callable[..., Tensor]:
    corruptors: dict[str, Any] = {}

    def measure(model: nn.Module, images: Tensor, labels: Tensor, indices: Tensor, seed: int) -> Tensor:
        if "c" not in corruptors:
            corruptors["c"] = load_corruptor(path)
        corruptor = corruptors["c"].to(images.device)
        if corruptor.patch_size * corruptor.grid[0] != images.shape[-2]:
            raise ValueError(f"afat_patch: the corruptor in {path} is for {corruptor.patch_size * corruptor.grid[0]} "
                             f"px images, these are {images.shape[-2]} px")  # fmt: skip
        normalize = getattr(model, "normalize", lambda x: x)
        with torch.no_grad():
            keep = keep_mask(corruptor(normalize(images)).float(), ratio)
            gens = rng.sample_generators(seed, indices, "afat_patch", ratio)
            corrupted = corrupt_patches(images, keep.to(images.dtype), corruptor.patch_size, generator=gens)
            correct = (model(corrupted).argmax(dim=1) == labels).sum()
        return correct.double().view(1)

    return measure


def _patch_attention_measure(ratio: float, patch: int, layers: list[int]) -> Callable[..., Tensor]:
    def measure(model: Classifier, images: Tensor, labels: Tensor, indices: Tensor, seed: int) -> Tensor:

        gens = rng.sample_generators(seed, indices, "patch_occlusion", ratio, patch)  # the occlusion cells' images
        with torch.no_grad():
            occluded = patch_occlusion(images, ratio, patch_size=patch, generator=gens)[0]
        cosine = explain.attention_stability(model, images, occluded).detach()  # (N, L, heads)
        if layers and max(layers) >= cosine.shape[1]:
            raise ValueError(f"patch_attention_stability: layer {max(layers)} requested, the model has "
                             f"{cosine.shape[1]} blocks")  # fmt: skip
        per_layer = cosine.mean(dim=2)
        sums = [cosine.flatten(1).mean(dim=1).sum()] + [per_layer[:, i].sum() for i in layers]
        return torch.stack(sums).double()

    return measure


# ------------------------------------------------------------------------------------------- end of AFAT block
