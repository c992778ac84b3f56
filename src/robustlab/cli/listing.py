"""`robustlab list`: everything a name can pick (suite entries, corruptions, attacks, explainers, models,
datasets), one line each, so nobody has to provoke a typo error to learn the names."""

from __future__ import annotations

import re
from collections.abc import Callable

import typer

from robustlab.cli._app import app
from robustlab.cli._common import user_errors

# what each suite entry measures; a test checks that every entry of engine.suite has one line here
SUITE_HELP: dict[str, str] = {
    "clean": "accuracy on the unperturbed data",
    "corruptions": "the 15 ImageNet-C test corruptions x severities 1-5, mCE (options severities=, profile=)",
    "validation": "the 4 ImageNet-C validation corruptions x severities 1-5",
    "all_corruptions": "corruptions and validation together",
    "noise": "additive pixel-space Gaussian noise, noise slope (option sigmas=0.02+0.04)",
    "occlusion": "random uniform-noise patch occlusion (options ratios=0.1+0.2, patch=16)",
    "sequences": "ImageNet-P style flip rates on the test perturbation sequences",
    "validation_sequences": "flip rates on the validation perturbation sequences",
    "all_sequences": "both sets of perturbation sequences",
    "attacks": "FGSM and PGD-10, clean and robust accuracy and success rate (option eps=)",
    "cam_stability": "cosine of clean and corrupted CAMs per corruption and severity (method=cam|grad_cam)",
    "attention_stability": "cosine of clean and corrupted ViT attention maps per corruption and severity",
    "afat_patch": "accuracy when a trained AFAT corruption model picks noise patches (corruptor=PATH, ratio=)",
    "patch_attention_stability": "ViT attention cosine under random noise patches, overall and per layer",
}

KINDS = ("suites", "corruptions", "attacks", "explainers", "models", "datasets")


def first_sentence(obj: object) -> str:
    """The first sentence of an object's docstring, on one line ("" when it has none)."""
    paragraph = " ".join((getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0].split())
    paragraph = re.sub(r":\w+:`~?([^`]*)`", r"\1", paragraph).replace("``", "")  # reST roles read as plain names
    # a sentence ends at a full stop before a capital, not at "et al. 2015" or "e.g. fog"
    match = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z])", paragraph)
    return paragraph if match is None else paragraph[: match.start() + 1]


def _suites() -> list[tuple[str, str]]:
    from robustlab.engine.measures import AFAT_TOKENS
    from robustlab.engine.suite import SUITE_TOKENS

    rows = [(name, SUITE_HELP[name]) for name in (*SUITE_TOKENS, *AFAT_TOKENS)]
    rows.append(("<corruption>", "one corruption by name, e.g. fog:severities=1-3 (robustlab list corruptions)"))
    rows.append(("<attack>", "one attack with options, e.g. pgd:eps=8/255,steps=20 (robustlab list attacks)"))
    return rows


def _corruptions() -> list[tuple[str, str]]:
    from robustlab.perturb import ALL_CORRUPTIONS, PERTURBATIONS, TEST_CORRUPTIONS

    return [(name, ("" if name in TEST_CORRUPTIONS else "[validation] ") + first_sentence(PERTURBATIONS.get(name)))
            for name in ALL_CORRUPTIONS]  # fmt: skip


def _attacks() -> list[tuple[str, str]]:
    from robustlab.attacks import ATTACKS

    return [(name, first_sentence(ATTACKS.get(name))) for name in ATTACKS.names()]


def _explainers() -> list[tuple[str, str]]:
    import robustlab.explain as explain

    # the registry holds thin adapters; the public function of the same name carries the documentation
    return [(name, first_sentence(getattr(explain, name, None))) for name in explain.list_explainers()]


def _models() -> list[tuple[str, str]]:
    from robustlab.models import list_models

    return list_models()


def _datasets() -> list[tuple[str, str]]:
    from robustlab.data import list_datasets

    return [(name, "") for name in list_datasets()]


SECTIONS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "suites": _suites, "corruptions": _corruptions, "attacks": _attacks, "explainers": _explainers,
    "models": _models, "datasets": _datasets,
}  # fmt: skip


@app.command("list")
def list_command(
    what: str = typer.Argument("", help=f"One of {', '.join(KINDS)} (default: all of them)."),
) -> None:
    """List the names robustlab accepts: suite entries, corruptions, attacks, explainers, models, datasets."""
    with user_errors():
        what = f"{what}s" if f"{what}s" in KINDS else what  # "robustlab list attack" reads as well
        if what and what not in KINDS:
            raise ValueError(f"robustlab list takes one of {', '.join(KINDS)} (or nothing, for all), got {what!r}")
        kinds = [what] if what else list(KINDS)
        sections = {kind: SECTIONS[kind]() for kind in kinds}
    for kind, rows in sections.items():
        if len(kinds) > 1:
            typer.echo(f"{kind}:")
        width = max(len(name) for name, _ in rows)
        indent = "  " if len(kinds) > 1 else ""
        for name, description in rows:
            typer.echo(f"{indent}{name:<{width}}  {description}".rstrip())
