"""Evaluation suites: what to measure, parsed once at the boundary into groups of conditions.

A suite is a list of tokens (``["clean", "corruptions", "noise"]``) or one comma-separated string. Options follow a
colon as ``key=value`` pairs, also comma-separated: a part with ``=`` but no ``:`` continues the previous token
(``"clean,noise:sigmas=0.02+0.04,corruptions:severities=1-3,profile=cifar"``). List values are joined with ``+``,
ranges written ``1-5``, fractions ``8/255``. Tokens:

- ``clean``: unperturbed data.
- ``corruptions``: the 15 test corruptions x severities 1..5; ``validation``: the 4 validation corruptions;
  ``all_corruptions``: both. Options ``severities=1+3+5`` or ``1-5``, ``profile=cifar``.
- any corruption name (``fog``, ``glass_blur:severities=3``).
- ``noise``: additive pixel-space Gaussian noise (the Gaussian-noise study), option ``sigmas=0.02+0.04+...``.
- ``occlusion``: random uniform-noise patch occlusion (AFAT), options ``ratios=0.1+0.2``, ``patch=16``.
- ``sequences`` / ``validation_sequences`` / ``all_sequences`` or a sequence name: ImageNet-P style flip rates.
- an attack name (``pgd:eps=8/255,steps=20``, ``fgsm:eps=1/255+2/255``, ``autoattack:eps=8/255``) or ``attacks``
  (FGSM and PGD-10, option ``eps``): clean and robust accuracy and attack success rate per setting (see
  :mod:`robustlab.engine.measures`).
- ``cam_stability`` / ``attention_stability``: mean cosine similarity between clean and corrupted explanations,
  per corruption and severity (options ``corruptions=fog+snow``, ``severities``, ``method=cam|grad_cam``).
- ``afat_patch:corruptor=PATH,ratio=0.1``: accuracy when a trained AFAT corruption model picks the noise patches;
  ``patch_attention_stability:ratios=0.1,patch=4,layers=0-5``: attention cosine under random noise patches, overall
  and per layer (AFAT; see :mod:`robustlab.engine.measures`).

Each condition is one store cell family (perturbation, severity, params); conditions of a group share one pass over
the data (a corruption's five severities, the noise levels), so a killed run resumes at group granularity at worst.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from robustlab import rng
from robustlab._registry import close_matches_message
from robustlab.engine.conditions import (
    Condition,
    Group,
    parse_floats,
    parse_severities,
    parse_suite,
)
from robustlab.engine.measures import (
    AFAT_TOKENS,
    afat_conditions,
    attack_conditions,
    attack_names,
    stability_conditions,
)
from robustlab.perturb import (
    ALL_CORRUPTIONS,
    NOISE_SEQUENCES,
    PERTURBATIONS,
    PROFILES,
    SEQUENCES,
    TEST_CORRUPTIONS,
    VALIDATION_CORRUPTIONS,
    additive_gaussian_noise,
    perturb,
    perturbation_sequence,
)
from robustlab.perturb.occlusion import patch_occlusion
from robustlab.perturb.sequences import TEST_SEQUENCES, VALIDATION_SEQUENCES

# pixel-space σ levels of the default noise sweep: the CIFAR-C and ImageNet-C Gaussian-noise range
DEFAULT_SIGMAS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)
DEFAULT_RATIOS = (0.05, 0.1, 0.2, 0.3, 0.5)
SUITE_TOKENS = (
    "clean", "corruptions", "validation", "all_corruptions", "noise", "occlusion", "sequences", "validation_sequences",
    "all_sequences", "attacks", "cam_stability", "attention_stability",
)  # fmt: skip


def split_file_corruptions(suite: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate a suite's corruption entries (read from files with :func:`file_groups`) from the rest.

    Returns:
        ``(corruptions, rest)``: corruption names in suite order, and the other entries as suite tokens.
    """
    corruptions: list[str] = []
    rest: list[str] = []
    groups = {"corruptions": TEST_CORRUPTIONS, "validation": VALIDATION_CORRUPTIONS, "all_corruptions": ALL_CORRUPTIONS}
    for name, options in parse_suite(suite):
        if name in groups or name in ALL_CORRUPTIONS:
            corruptions += [c for c in groups.get(name, (name,)) if c not in corruptions]
        else:
            pairs = [f"{k}={v}" for k, v in options.items()]
            rest.append(f"{name}:{','.join(pairs)}" if pairs else name)
    return corruptions, rest


def file_groups(
    root: str | os.PathLike[str],
    *,
    corruptions: Sequence[str] = TEST_CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    class_names: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> list[Group]:
    """Groups that read pre-made corrupted data instead of corrupting on the fly.

    Args:
        root: a CIFAR-10-C / CIFAR-100-C folder (``<corruption>.npy`` + ``labels.npy``) or an ImageNet-C tree
            (``<corruption>/<severity>/<wnid>/``).
        corruptions: which corruptions to read; those missing from ``root`` raise.
        severities: which severities.
        class_names: class names of the clean dataset (keeps labels and names consistent).
        classes: for ImageNet-C trees, the full ordered list of class folders (wnids) of the clean dataset, so that a
            partial tree keeps the right label indices.

    Returns:
        One group per corruption; conditions are stored with ``params={"source": "files"}``, so they never mix with
        on-the-fly cells.

    Raises:
        FileNotFoundError: ``root`` is neither layout. ValueError: a corruption missing from it.
    """
    from robustlab.data import list_cifar_c_corruptions, list_imagenet_c_corruptions, load_cifar_c, load_imagenet_c

    root = Path(root)
    if (root / "labels.npy").is_file():
        present = list_cifar_c_corruptions(root)

        def load(c: str, s: int) -> Any:
            return load_cifar_c(root, c, s, class_names=list(class_names) if class_names else None)
    elif list_imagenet_c_corruptions(root):
        present = list_imagenet_c_corruptions(root)

        def load(c: str, s: int) -> Any:
            return load_imagenet_c(root, c, s, classes=classes, class_names=class_names)
    else:
        raise FileNotFoundError(
            f"{root} is neither a CIFAR-10-C folder (<corruption>.npy + labels.npy) nor an ImageNet-C tree "
            "(<corruption>/<severity>/<class>/*.JPEG)"
        )
    missing = [c for c in corruptions if c not in present]
    if missing:
        raise ValueError(f"{root} has no data for {missing}; it holds {present}")
    # each (corruption, severity) is its own dataset, hence its own group and pass
    return [
        Group(f"{c} s{s} (files)", (Condition(c, s, {"source": "files"}, False, None),), load(c, s))
        for c in corruptions
        for s in severities
    ]


def _corruption(name: str, severity: int, profile: str | None) -> Condition:
    def apply(images: Tensor, indices: Tensor, seed: int) -> Tensor:
        gens = rng.sample_generators(seed, indices, name, severity)
        return perturb(images, name, severity, generator=gens, profile=profile)

    return Condition(name, severity, {"profile": profile} if profile else {}, True, apply)


def _sequence(name: str, profile: str | None) -> Condition:
    key = name if name.endswith("_sequence") else f"{name}_sequence"

    def apply(images: Tensor, indices: Tensor, seed: int) -> Tensor:
        gens = rng.sample_generators(seed, indices, key)
        return perturbation_sequence(images, key, generator=gens, profile=profile)

    compare = "first" if key in NOISE_SEQUENCES else "previous"
    params = {"compare": compare, **({"profile": profile} if profile else {})}
    return Condition(key, 0, params, True, apply, ("flip_probability", "top5_distance"))


def _noise(sigma: float) -> Condition:
    def apply(images: Tensor, indices: Tensor, seed: int) -> Tensor:
        gens = rng.sample_generators(seed, indices, "gaussian_noise_sigma", sigma)
        return additive_gaussian_noise(images, sigma, generator=gens)

    return Condition("gaussian_noise_sigma", 0, {"sigma": sigma}, True, apply)


def _occlusion(ratio: float, patch: int) -> Condition:
    def apply(images: Tensor, indices: Tensor, seed: int) -> Tensor:
        gens = rng.sample_generators(seed, indices, "patch_occlusion", ratio, patch)
        return patch_occlusion(images, ratio, patch_size=patch, generator=gens)[0]

    return Condition("patch_occlusion", 0, {"ratio": ratio, "patch_size": patch}, True, apply)


def build_suite(
    suite: str | Sequence[str],
    *,
    profile: str | None = None,
    sigmas: Sequence[float] | None = None,
    ratios: Sequence[float] | None = None,
    patch_size: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[Group]:
    """Parse ``suite`` into groups of conditions.

    Args:
        suite: tokens (see the module docstring), as a list or one comma-separated string.
        profile: corruption parameter profile for every corruption (default: chosen from the image size).
        sigmas: noise levels for ``noise`` (default :data:`DEFAULT_SIGMAS`).
        ratios: occlusion ratios for ``occlusion`` (default :data:`DEFAULT_RATIOS`).
        patch_size: occlusion patch size (default 16, or 4 when ``image_size`` is under 64 px).
        image_size: ``(H, W)`` of the images, for size-dependent defaults.

    Returns:
        Groups in the order given; duplicates are dropped.

    Raises:
        ValueError: an unknown token (with close matches), a bad option or value.
    """
    if profile is not None and profile not in PROFILES:
        raise ValueError(close_matches_message("profile", profile, list(PROFILES)))
    groups: list[Group] = []
    seen: set[tuple[str, int, str]] = set()

    def add(name: str, conditions: list[Condition]) -> None:
        fresh = tuple(c for c in conditions if c.identity not in seen)
        seen.update(c.identity for c in fresh)
        if fresh:
            groups.append(Group(name, fresh))

    for name, options in parse_suite(suite):
        prof = options.pop("profile", profile)
        if prof is not None and prof not in PROFILES:
            raise ValueError(close_matches_message("profile", prof, list(PROFILES)))
        if name == "clean":
            add("clean", [Condition("clean", 0, {}, False, None)])
        elif name in ("corruptions", "validation", "all_corruptions") or name in ALL_CORRUPTIONS:
            names = {"corruptions": TEST_CORRUPTIONS, "validation": VALIDATION_CORRUPTIONS,
                     "all_corruptions": ALL_CORRUPTIONS}.get(name, (name,))  # fmt: skip
            severities = parse_severities(options.pop("severities", None))
            for corruption in names:
                if corruption not in PERTURBATIONS:
                    raise ValueError(f"corruption {corruption!r} is not available in this installation")
                add(corruption, [_corruption(corruption, s, prof) for s in severities])
        elif name in ("sequences", "validation_sequences", "all_sequences") or {name, f"{name}_sequence"} & set(
            SEQUENCES
        ):
            # corruption names were taken above, so "gaussian_noise" is the corruption and "rotate" the sequence
            key = name if name in SEQUENCES else f"{name}_sequence"
            names = {"sequences": TEST_SEQUENCES, "validation_sequences": VALIDATION_SEQUENCES,
                     "all_sequences": SEQUENCES}.get(name, (key,))  # fmt: skip
            for seq in names:
                add(seq, [_sequence(seq, prof)])
        elif name == "noise":
            given = options.pop("sigmas", None)
            levels = parse_floats(given, "sigmas") if given else tuple(sigmas or DEFAULT_SIGMAS)
            if any(s < 0 for s in levels):
                raise ValueError(f"noise sigmas must be >= 0, got {levels}")
            add("noise", [_noise(s) for s in levels])
        elif name == "occlusion":
            given = options.pop("ratios", None)
            levels = parse_floats(given, "ratios") if given else tuple(ratios or DEFAULT_RATIOS)
            # AFAT occludes 16-px ViT patches at 224 px; 4-px patches keep the same grid density at 32 px
            default_patch = 4 if image_size is not None and min(image_size) < 64 else 16
            patch = int(options.pop("patch", patch_size or default_patch))
            add("occlusion", [_occlusion(r, patch) for r in levels])
        elif name == "attacks":
            # the headline pair: one-step and ten-step ℓ∞ attacks at a shared ε
            eps = options.pop("eps", "8/255")
            conditions = [c for a in ("fgsm", "pgd") for c in attack_conditions(a, {"eps": eps})]
            add("attacks", conditions)
        elif name in attack_names():
            add(name, attack_conditions(name, options))
            options = {}
        elif name in ("cam_stability", "attention_stability"):
            for group_name, conditions in stability_conditions(name, options, prof):
                add(group_name, conditions)
        elif name in AFAT_TOKENS:  # AFAT: see the AFAT block of robustlab.engine.measures
            add(name, afat_conditions(name, options, image_size))
        else:
            known = list(SUITE_TOKENS) + list(AFAT_TOKENS) + list(ALL_CORRUPTIONS) + list(SEQUENCES) + attack_names()
            raise ValueError(close_matches_message("suite entry", name, known))
        if options:
            raise ValueError(f"unknown option(s) {sorted(options)} for suite entry {name!r}")
    if not groups:
        raise ValueError("the suite is empty; pass e.g. 'clean,corruptions,noise'")
    return groups


def check_conditions(conditions: Sequence[Condition], model: nn.Module, dataset: Any, device: Any) -> None:
    """Run every condition's ``check`` on one sample of ``dataset``, so a setting that cannot run fails before any
    work (nothing measured, stored or recorded).

    Raises:
        ValueError: from the first check that refuses its setting.
    """
    checks = [c.check for c in conditions if c.check is not None]
    if checks and len(dataset):
        images, labels = dataset.get_batch([0])
        for check in checks:
            check(model, images.to(device), labels.to(device))
