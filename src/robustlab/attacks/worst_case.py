"""Worst case over several attacks, as AutoAttack runs them: a cascade over the points still robust.

Each attack runs only on the images no earlier stage has fooled (clean mistakes count as fooled before any
attack), so later, costlier attacks see fewer images, and robust accuracy can only fall from stage to stage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.progress import StageDone, emit
from robustlab.rng import Generators

__all__ = ["AttackSpec", "WorstCaseResult", "worst_case"]

AttackFn = Callable[..., Tensor]
AttackSpec = str | tuple[str, Mapping[str, Any]] | AttackFn
"""An attack in a cascade: a registered name (``"pgd"``), a name with parameters
(``("pgd", {"eps": 8 / 255, "steps": 20})``), or any callable with the uniform signature
``attack(model, images, labels, *, generator=None) -> images``."""


@dataclass(frozen=True)
class WorstCaseResult:
    """What a cascade of attacks found.

    Attributes:
        adversarial: per image, the output of the first attack that fooled the model; the clean image for images
            misclassified from the start and for images no attack fooled.
        robust: per image, correct on the clean image and under every attack.
        stages: ``"clean"`` then one label per attack (its name, with its parameters if any).
        accuracies: robust accuracy after each stage, clean accuracy first; non-increasing.
        fooled_at: per image, the stage that first fooled it (0 = already wrong on the clean image, ``i`` = the
            i-th attack), or -1 if it is robust.

    Shape:
        adversarial ``(N, C, H, W)``; robust ``(N,)`` bool; fooled_at ``(N,)`` int64.
    """

    adversarial: Tensor
    robust: Tensor
    stages: tuple[str, ...]
    accuracies: tuple[float, ...]
    fooled_at: Tensor

    @property
    def robust_accuracy(self) -> float:
        """Accuracy under the worst case over all attacks (the last entry of :attr:`accuracies`)."""
        return self.accuracies[-1]

    def as_dict(self) -> dict[str, float]:
        """``{stage label: robust accuracy after it}`` (repeated labels get a ``#k`` suffix)."""
        out: dict[str, float] = {}
        for stage, value in zip(self.stages, self.accuracies, strict=True):
            key, k = stage, 2
            while key in out:
                key, k = f"{stage}#{k}", k + 1
            out[key] = value
        return out


def _format_value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _resolve(spec: object, position: int) -> tuple[str, AttackFn, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, ATTACKS.get(spec), {}
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        name, params = spec[0], dict(spec[1])
        if "generator" in params:
            raise ValueError(f"attack {position} ({name}): pass generator= to worst_case, not in the parameters")
        label = name
        shown = {k: v for k, v in params.items() if not isinstance(v, Tensor)}
        if shown:
            label += ":" + ",".join(f"{k}={_format_value(v)}" for k, v in sorted(shown.items()))
        return label, ATTACKS.get(name), params
    if callable(spec):
        inner = spec.func if isinstance(spec, functools.partial) else spec
        return getattr(inner, "__name__", type(inner).__name__), spec, {}
    raise ValueError(
        f"attack {position} must be a registered name ({', '.join(ATTACKS.names())}), a (name, params) pair or a "
        f"callable attack(model, images, labels, *, generator=None); got {type(spec).__name__}"
    )


def _predict(model: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        return model(images).argmax(dim=1)


def worst_case(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    attacks: AttackSpec | Sequence[AttackSpec],
    *,
    generator: Generators = None,
) -> WorstCaseResult:
    """Run attacks as an AutoAttack-style cascade: each one only on the images still classified correctly.

    Per-image tensors among an attack's parameters (``target_labels``, ``init``, ``patches``: any tensor whose
    first dimension is N) are indexed along with the images.

    Args:
        model: maps [0, 1] pixels to logits. Its mode is not changed.
        images: clean pixels in [0, 1].
        labels: true classes.
        attacks: the cascade, in order (or one attack); see :data:`AttackSpec`.
        generator: passed to every attack; a list of one generator per image is subset to the images attacked,
            so an image's randomness does not depend on which other images are still robust.

    Returns:
        A :class:`WorstCaseResult`.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)``.

    Raises:
        ValueError: bad images or labels, an empty cascade, an unknown attack name (with close matches), an
            attack whose output is not shaped like its input; plus whatever the attacks raise for their
            parameters.

    Example:
        >>> result = worst_case(model, x, y, ["fgsm", ("pgd", {"steps": 20})])
        >>> result.stages, result.accuracies  # doctest: +SKIP
        (('clean', 'fgsm', 'pgd:steps=20'), (0.92, 0.31, 0.02))
    """
    model = c.check_model(model, "worst_case")
    images, labels = c.check_inputs(model, images, labels, "worst_case")
    single_pair = isinstance(attacks, tuple) and len(attacks) == 2 and isinstance(attacks[1], Mapping)
    # casts: a ("name", {...}) pair is itself a Sequence, so only the checks here tell one spec from a cascade
    if isinstance(attacks, str) or single_pair or callable(attacks) or not isinstance(attacks, Sequence):
        specs: Sequence[AttackSpec] = [cast(AttackSpec, attacks)]  # a single spec
    else:
        specs = cast(Sequence[AttackSpec], attacks)
    if not specs:
        raise ValueError("attacks is empty; give at least one attack, e.g. ['pgd']")
    resolved = [_resolve(spec, i) for i, spec in enumerate(specs)]
    n = images.shape[0]
    generator = c.check_generators(generator, n)

    x = c.as_normal_tensor(images)
    adversarial = x.clone()
    robust = _predict(model, x) == labels if n else torch.zeros(0, dtype=torch.bool, device=x.device)
    fooled_at = torch.where(robust, -1, 0).to(torch.int64)
    accuracies = [float(robust.double().mean()) if n else float("nan")]
    for stage, (_, attack, params) in enumerate(resolved, start=1):
        index = robust.nonzero().squeeze(1)
        if index.numel():
            sub_params = {
                k: v[index.to(v.device)] if isinstance(v, Tensor) and v.ndim and v.shape[0] == n else v
                for k, v in params.items()
            }
            out = attack(
                model, x[index], labels[index], generator=c.subset_generators(generator, index.cpu()), **sub_params
            )
            if not isinstance(out, Tensor) or out.shape != x[index].shape:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(f"attack {resolved[stage - 1][0]!r} returned {got}, expected {tuple(x[index].shape)}")
            fooled = _predict(model, out) != labels[index]
            hit = index[fooled]
            adversarial[hit] = out[fooled].to(adversarial.dtype)
            robust[hit] = False
            fooled_at[hit] = stage
        accuracies.append(float(robust.double().mean()) if n else float("nan"))
        # AutoAttack prints the robust accuracy after every stage; whoever listens (the CLI) can do the same
        emit(StageDone(stage=resolved[stage - 1][0], index=stage, total=len(resolved), robust=int(robust.sum()), n=n))
    return WorstCaseResult(
        adversarial=adversarial,
        robust=robust,
        stages=("clean", *(label for label, _, _ in resolved)),
        accuracies=tuple(accuracies),
        fooled_at=fooled_at,
    )
