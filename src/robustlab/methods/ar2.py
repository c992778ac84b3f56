"""AR2: CAM-guided repair of a pretrained CNN against common corruptions (seed 000, arXiv 2507.06332).

Two copies of the same pretrained CNN: a frozen *reference* (eval mode, no gradients) that supplies CAM targets
from clean images, and the *repairing* model. Repair alternates two stages for ``T`` outer iterations:

1. **CAM-guided refinement** (backbone only, the GAP + linear classifier frozen)::

       L_CAM = alpha * mean_{c in S} MSE(N(M_c(x)), N(M0_c(x)))
             + (1 - alpha) * mean_{c in S} MSE(N(M_c(x~)), N(M0_c(x)))

   with ``M_c(x) = sum_k W[c, k] * phi(x)[k]`` (last conv map ``phi``, classifier weights ``W``; the model's own
   ``W`` for ``M`` and the reference's for ``M0``), ``N(M) = ReLU(M) / (max ReLU(M) + 1e-8)`` per image and class,
   compared at feature-map resolution, and ``x~`` the corrupted image.
2. **Fine-tuning** (all parameters): ``CE(f(x), y) + CE(f(x~), y)``.

Choices the paper leaves open, fixed by issue 8 and recorded here:

- class set ``S(x)``: the reference's top-``k`` classes on the clean image (``k = 3`` for 10 classes, 5
  otherwise), the true label replacing the ``k``-th when missing; the same ``S`` for every map of an image;
- ``x~``: the corruption at severity 3 (configurable), ``alpha = 0.5``, ``T = 3``;
- the returned model is the best of the candidates (the pretrained model and the model after each outer
  iteration) by accuracy on a held-out part of the *training* data corrupted the same way — never the test set;
- modes: one corruption (per-corruption repair) or ``"unified"`` (each batch corrupted by a corruption drawn at
  random from a pool).

Each stage is one call of :func:`robustlab.train.fit` with a ``loss_fn`` from this module, so AMP, the optimiser
(a fresh one per stage: momentum does not carry over between stages), the learning-rate schedule and the
crop/flip augmentation are the training loop's. Corruptions are drawn from generators derived from
``(seed, stage, iteration, batch)``; a stage therefore cannot be resumed mid-way (``fit``'s ``resume`` is not
used). Not supported under torchrun: the CAMs are read from the unwrapped classifier.

Baselines under the same budget (the same number of optimiser steps): ``method="finetune"`` (every stage is a
fine-tuning stage), ``"refine"`` (every stage is refinement) and ``"augmix"`` (every stage is AugMix fine-tuning
with the Jensen-Shannon consistency loss; it never sees the target corruption).
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.data._base import ImageDataset, Subset
from robustlab.engine.accuracy import evaluate_accuracy
from robustlab.explain.cam import cam
from robustlab.methods._registry import METHODS
from robustlab.methods.augmix import augmix
from robustlab.models.checkpoint import save_checkpoint
from robustlab.models.classifier import Classifier
from robustlab.models.probes import classifier_weights
from robustlab.perturb import PERTURBATIONS, TEST_CORRUPTIONS, perturb
from robustlab.rng import derive_seed, make_generator, sample_generators
from robustlab.train import fit, random_crop_flip

log = logging.getLogger(__name__)

UNIFIED = "unified"
METHOD_NAMES = ("ar2", "finetune", "refine", "augmix")
STAGES = {"ar2": ("refine", "finetune"), "finetune": ("finetune", "finetune"), "refine": ("refine", "refine"),
          "augmix": ("augmix", "augmix")}  # fmt: skip
"""Which loss each of the two stages of an outer iteration uses, per method: equal step budgets by construction."""

Callback = Callable[[dict[str, Any]], None]


@dataclass
class AR2Config:
    """Settings of :func:`repair`. Checked in ``__post_init__``; messages name the field.

    Stage lengths: ``refine_steps`` / ``finetune_steps`` when given (optimiser steps, batches drawn without
    replacement from a fresh permutation of the training split), else ``refine_epochs`` / ``finetune_epochs``
    passes over the training split.
    """

    iterations: int = 3
    """Outer iterations ``T`` (each one refinement stage, then one fine-tuning stage)."""
    alpha: float = 0.5
    """Weight of the clean-image term of ``L_CAM``, in [0, 1]; ``1 - alpha`` weighs the corrupted term."""
    severity: int = 3
    """Severity of the training corruption (and of the held-out selection split)."""
    k: int | None = None
    """Size of the class set ``S``; None: 3 for at most 10 classes, 5 otherwise."""
    refine_epochs: int = 1
    """Epochs per refinement stage (when ``refine_steps`` is None)."""
    finetune_epochs: int = 1
    """Epochs per fine-tuning stage (when ``finetune_steps`` is None)."""
    refine_steps: int | None = None
    """Optimiser steps per refinement stage; overrides ``refine_epochs``."""
    finetune_steps: int | None = None
    """Optimiser steps per fine-tuning stage; overrides ``finetune_epochs``."""
    refine_lr: float = 0.01
    """Learning rate of refinement (SGD by default)."""
    finetune_lr: float = 0.01
    """Learning rate of fine-tuning."""
    batch_size: int = 128
    """Samples per optimiser step."""
    optimizer: str = "sgd"
    """``"sgd"`` or ``"adamw"``, as :func:`robustlab.train.fit`."""
    weight_decay: float = 5e-4
    """Weight decay of both stages."""
    schedule: str = "constant"
    """Learning-rate schedule within each stage (``"constant"`` or ``"cosine"``): fine-tuning a pretrained model
    with a small rate, a per-stage cosine would restart every stage."""
    augment: bool = True
    """Random crop (pad 4) + horizontal flip before corrupting, as in standard CIFAR training."""
    val_fraction: float = 0.1
    """Share of the training data held out (corrupted) for checkpoint selection, in (0, 1)."""
    unified_corruptions: tuple[str, ...] = TEST_CORRUPTIONS
    """Pool of the ``"unified"`` mode; one corruption is drawn per batch (and per held-out sample)."""
    profile: str | None = None
    """Corruption parameter profile; None picks it from the image size."""
    amp: bool | str | None = None
    """Mixed precision, as :func:`robustlab.train.fit` (default: on for CUDA)."""
    augmix_severity: int = 3
    """AugMix operation severity (the ``"augmix"`` baseline)."""
    augmix_jsd_weight: float = 12.0
    """Weight of AugMix's Jensen-Shannon consistency term (12 in the AugMix paper)."""
    select_best: bool = True
    """Return the candidate best on the held-out split; False returns the last model (ablations, tests)."""
    seed: int = 0
    """Seeds the split, the shuffling, the augmentation and every corruption."""

    def __post_init__(self) -> None:
        positive = {"iterations": self.iterations, "batch_size": self.batch_size, "refine_epochs": self.refine_epochs,
                    "finetune_epochs": self.finetune_epochs}  # fmt: skip
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("refine_steps", "finetune_steps", "k"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not isinstance(self.severity, int) or not 1 <= self.severity <= 5:
            raise ValueError(f"severity must be an integer in 1..5, got {self.severity!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        for name in ("refine_lr", "finetune_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        self.unified_corruptions = tuple(self.unified_corruptions)
        if not self.unified_corruptions:
            raise ValueError("unified_corruptions must name at least one corruption")
        for name in self.unified_corruptions:
            check_corruption(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RepairResult:
    """What :func:`repair` returns.

    ``history`` holds one dict per stage (``iteration`` 1-based, ``stage``, ``loss``, ``steps``) and one per
    candidate evaluated for selection (``stage="select"``, ``iteration`` 0 for the pretrained model,
    ``val_corrupted_acc``, ``val_clean_acc``).
    """

    model: Classifier
    """The repaired model (the selected candidate), in eval mode."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per-stage and per-candidate records, see the class docstring."""
    selected_iteration: int = 0
    """Outer iteration whose model was selected (0: the pretrained model was best on the held-out split)."""
    val_corrupted_acc: float = math.nan
    """Held-out corrupted accuracy of the selected model."""
    steps: int = 0
    """Optimiser steps taken in all (the budget, equal across methods for equal settings)."""
    checkpoint: str | None = None
    """Path the selected model was saved to, if any."""
    reference: Classifier | None = None
    """The frozen reference model the CAM targets came from (equal to the input model)."""


def check_corruption(name: str) -> str:
    """Validate a training corruption name (a registered corruption taking a severity).

    Raises:
        ValueError: unknown name (with close matches), or a perturbation that is not a corruption.
    """
    PERTURBATIONS.get(name)  # raises with close matches
    if name.endswith("_sequence") or name in ("patch_occlusion",):
        raise ValueError(f"{name!r} is not a corruption with a severity; pick one of {', '.join(TEST_CORRUPTIONS)}")
    return name


def default_k(num_classes: int) -> int:
    """Size of the class set: 3 for at most 10 classes, 5 otherwise (never more than ``num_classes``)."""
    return min(3 if num_classes <= 10 else 5, num_classes)


@torch.no_grad()
def class_set(reference: Classifier, images: Tensor, labels: Tensor, k: int) -> Tensor:
    """The classes whose CAMs are aligned: the reference's top-``k`` on the clean images, true label included.

    When the true label is not among the top ``k``, it replaces the ``k``-th (lowest-ranked) class.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> classes ``(N, k)`` int64, the true label in every row.
    """
    top = reference(images).topk(k, dim=1).indices
    labels = labels.to(top.device)
    missing = ~(top == labels[:, None]).any(dim=1)
    top[missing, -1] = labels[missing]
    return top


def normalize_cam(raw: Tensor, eps: float = 1e-8) -> Tensor:
    """``N(M) = ReLU(M) / (max ReLU(M) + eps)`` per image and class, at the maps' own resolution.

    Unlike :func:`robustlab.explain.normalize_maps` (min-max for display) this keeps zero at zero, so a map that
    is negative everywhere stays all zeros. Differentiable.

    Shape:
        ``(N, k, h, w)`` -> ``(N, k, h, w)`` in [0, 1).
    """
    positive = F.relu(raw.float())
    return positive / (positive.amax(dim=(-2, -1), keepdim=True) + eps)


def cam_targets(reference: Classifier, images: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The reference's class set and its normalised clean CAMs (the alignment targets), without gradients.

    Returns:
        ``(classes, targets)``.

    Shape:
        images ``(N, C, H, W)`` -> classes ``(N, k)``, targets ``(N, k, h, w)``.
    """
    classes = class_set(reference, images, labels, k)
    return classes, normalize_cam(cam(reference, images, labels=classes).raw)


def refinement_loss(
    model: Classifier,
    reference: Classifier,
    images: Tensor,
    corrupted: Tensor,
    labels: Tensor,
    *,
    alpha: float = 0.5,
    k: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``L_CAM``: MSE between the repairing model's normalised CAMs (clean and corrupted) and the reference's.

    ``L = alpha * MSE(N(M(x)), N(M0(x))) + (1 - alpha) * MSE(N(M(x~)), N(M0(x)))`` over the class set of
    :func:`class_set`; a term with weight 0 is not computed. Averaging over all ``(N, k, h, w)`` elements equals
    the mean over classes of per-class MSEs, since every class map has the same size.

    Args:
        model: the repairing model; the graph through its CAMs is kept.
        reference: the frozen reference (called without gradients).
        images: clean pixels ``x``.
        corrupted: the corrupted pixels ``x~`` of the same images.
        labels: true labels.
        alpha: weight of the clean term.
        k: class-set size (default :func:`default_k`).

    Returns:
        ``(loss, logits)``: logits of the corrupted images (None when ``alpha == 1``).

    Shape:
        images, corrupted ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, num_classes)``.
    """
    k = k or default_k(reference.num_classes)
    classes, targets = cam_targets(reference, images, labels, k)
    loss = images.new_zeros((), dtype=torch.float32)
    logits = None
    if alpha > 0:
        clean = normalize_cam(cam(model, images, labels=classes, differentiable=True).raw)
        loss = loss + alpha * F.mse_loss(clean, targets)
    if alpha < 1:
        result = cam(model, corrupted, labels=classes, differentiable=True)
        loss = loss + (1 - alpha) * F.mse_loss(normalize_cam(result.raw), targets)
        logits = result.logits
    return loss, logits


def finetune_loss(model: nn.Module, images: Tensor, corrupted: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``CE(f(x), y) + CE(f(x~), y)``.

    Returns:
        ``(loss, logits)``: logits of the corrupted images.

    Shape:
        images, corrupted ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, K)``.
    """
    logits = model(corrupted)
    return F.cross_entropy(model(images), labels) + F.cross_entropy(logits, labels), logits


def augmix_loss(
    model: nn.Module, images: Tensor, labels: Tensor, *, jsd_weight: float = 12.0, severity: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """AugMix training loss: ``CE(f(x), y) + jsd_weight * JSD(p(x), p(aug1), p(aug2))`` (Hendrycks et al.).

    Returns:
        ``(loss, logits)`` of the clean images.
    """
    views = torch.cat([images, augmix(images, severity=severity, generator=generator),
                       augmix(images, severity=severity, generator=generator)])  # fmt: skip
    logits_all = model(views)
    clean, aug1, aug2 = logits_all.split(len(images))
    probs = [F.softmax(z.float(), dim=1) for z in (clean, aug1, aug2)]
    mixture = torch.clamp(sum(probs) / 3, 1e-7, 1).log()
    jsd = sum(F.kl_div(mixture, p, reduction="batchmean") for p in probs) / 3
    return F.cross_entropy(clean, labels) + jsd_weight * jsd, clean


def corrupt_batch(images: Tensor, corruption: str, config: AR2Config, generator: torch.Generator) -> Tensor:
    """Corrupt a training batch: the corruption itself, or one drawn from the pool in ``"unified"`` mode."""
    if corruption == UNIFIED:
        pool = config.unified_corruptions
        corruption = pool[int(torch.randint(len(pool), (1,), generator=generator))]
    with torch.no_grad():
        return perturb(images, corruption, config.severity, generator=generator, profile=config.profile)


def refine_step(
    model: Classifier, reference: Classifier, images: Tensor, labels: Tensor, *, corruption: str,
    config: AR2Config, generator: torch.Generator,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """Loss of one refinement step (corrupt, then :func:`refinement_loss`); ``fit`` does the update."""
    corrupted = corrupt_batch(images, corruption, config, generator)
    return refinement_loss(model, reference, images, corrupted, labels, alpha=config.alpha, k=config.k)


def finetune_step(
    model: nn.Module, images: Tensor, labels: Tensor, *, corruption: str, config: AR2Config,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Loss of one fine-tuning step (corrupt, then :func:`finetune_loss`); ``fit`` does the update."""
    return finetune_loss(model, images, corrupt_batch(images, corruption, config, generator), labels)


def make_reference(model: Classifier) -> Classifier:
    """A frozen copy of ``model``: eval mode, ``requires_grad=False`` everywhere."""
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def _check_model(model: object) -> Classifier:
    if not isinstance(model, Classifier):
        raise ValueError(f"AR2 repairs a robustlab Classifier (from create_model), got {type(model).__name__}")
    was_training = model.training
    model.eval()  # classifier_weights verifies the GAP + linear head only in eval mode
    try:
        classifier_weights(model)
    except ValueError as exc:
        raise ValueError(
            f"AR2 needs a CNN with a CAM head (global average pooling + one linear layer): {exc}"
        ) from None
    finally:
        model.train(was_training)
    return model


def _split(data: ImageDataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    n = len(data)
    n_val = max(1, round(fraction * n))
    if n - n_val < 1:
        raise ValueError(f"train_data has {n} samples: too few to hold out val_fraction={fraction} for selection")
    order = torch.randperm(n, generator=make_generator(seed, "ar2-split")).tolist()
    return Subset(data, sorted(order[n_val:])), Subset(data, sorted(order[:n_val]))


def _held_out_perturb(corruption: str, config: AR2Config) -> Callable[[Tensor, Tensor], Tensor]:
    """Corrupt held-out samples reproducibly: per-sample generators, per-sample corruption in unified mode."""
    pool = config.unified_corruptions if corruption == UNIFIED else (corruption,)

    def apply(images: Tensor, indices: Tensor) -> Tensor:
        idx = [int(i) for i in indices]
        picks = [derive_seed(config.seed, "ar2-val-pick", i) % len(pool) for i in idx]
        out = images.clone()
        for p in sorted(set(picks)):  # one call per corruption present, not per image
            rows = [j for j, q in enumerate(picks) if q == p]
            gens = sample_generators(config.seed, [idx[j] for j in rows], "ar2-val", pool[p])
            out[rows] = perturb(images[rows], pool[p], config.severity, generator=gens, profile=config.profile)
        return out

    return apply


def _stage_data(train: ImageDataset, steps: int | None, batch_size: int, seed: int, *keys: object) -> ImageDataset:
    if steps is None:
        return train
    need = steps * batch_size
    order: list[int] = []
    round_ = 0
    while len(order) < need:  # cycle through fresh permutations when the budget exceeds one epoch
        perm = torch.randperm(len(train), generator=make_generator(seed, "ar2-stage", *keys, round_)).tolist()
        order += perm
        round_ += 1
    return Subset(train, order[:need])


def _head_params(model: Classifier) -> tuple[Tensor, Tensor | None]:
    linear = model.net.get_classifier()
    return linear.weight, linear.bias


def _stage_loss(
    stage: str, reference: Classifier, corruption: str, config: AR2Config, iteration: int
) -> Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor | None]]:
    """The ``fit`` loss of one stage; each call draws its corruption from the next generator of the stage."""
    calls = 0

    def next_generator() -> torch.Generator:
        nonlocal calls
        calls += 1
        return make_generator(config.seed, "ar2", stage, iteration, calls)

    def loss_fn(net: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor | None]:
        generator = next_generator()
        if stage == "refine":
            # CAMs are read from the classifier itself (a DDP wrapper would hide forward_features)
            clf = getattr(net, "module", net)
            return refine_step(
                clf, reference, images, labels, corruption=corruption, config=config, generator=generator
            )
        if stage == "finetune":
            return finetune_step(net, images, labels, corruption=corruption, config=config, generator=generator)
        return augmix_loss(net, images, labels, jsd_weight=config.augmix_jsd_weight, severity=config.augmix_severity,
                           generator=generator)  # fmt: skip

    return loss_fn


@METHODS.register(name="ar2")
def repair(
    model: Classifier | str,
    train_data: ImageDataset,
    *,
    corruption: str,
    config: AR2Config | None = None,
    method: str = "ar2",
    device: torch.device | str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    callback: Callback | None = None,
) -> RepairResult:
    """Repair a pretrained CNN against ``corruption`` with AR2 (or a baseline under the same step budget).

    The input model is not modified: the repairing model is a copy (two copies when given a spec), and so is the
    frozen reference.

    Args:
        model: a CNN classifier with a GAP + linear head, or a :func:`robustlab.models.create_model` spec.
        train_data: training data; ``config.val_fraction`` of it is held out, corrupted the same way, to select
            the returned model.
        corruption: a corruption name (per-corruption repair) or ``"unified"`` (a random corruption per batch
            from ``config.unified_corruptions``).
        config: settings (default :class:`AR2Config`).
        method: ``"ar2"``, or a baseline: ``"finetune"``, ``"refine"``, ``"augmix"``.
        device: where to train (default: CUDA when available).
        checkpoint: write the selected model here (``create_model("file:<checkpoint>")`` restores it).
        callback: progress events ``{"kind": "step", "step", "total", "loss", "description"}`` (steps counted
            over the whole repair) and ``{"kind": "select", ...}`` (a history entry).

    Returns:
        A :class:`RepairResult` with the selected model and the history.

    Shape:
        batches of ``train_data``: images ``(B, 3, H, W)`` in [0, 1], labels ``(B,)``.

    Raises:
        ValueError: a model without a CAM head, an unknown corruption or method, bad config or data.

    Example:
        >>> result = repair("cifar:resnet20", train, corruption="fog",
        ...                 config=AR2Config(refine_steps=50, finetune_steps=50))  # doctest: +SKIP
    """
    from robustlab.models import create_model

    config = config or AR2Config()
    if not isinstance(config, AR2Config):
        raise ValueError(f"config must be an AR2Config, got {type(config).__name__}")
    if method not in METHOD_NAMES:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHOD_NAMES)}")
    if not isinstance(corruption, str):
        raise ValueError(f"corruption must be a corruption name or 'unified', got {type(corruption).__name__}")
    if corruption != UNIFIED:
        check_corruption(corruption)
    if not (hasattr(train_data, "get_batch") and hasattr(train_data, "__len__")):
        raise ValueError(f"train_data must be a robustlab ImageDataset, got {type(train_data).__name__}")
    source = create_model(model) if isinstance(model, str) else model
    _check_model(source)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    reference = make_reference(source).to(device)
    student = copy.deepcopy(source).to(device).eval()
    for p in student.parameters():
        p.requires_grad_(True)
    k = config.k or default_k(student.num_classes)
    if k > student.num_classes:
        raise ValueError(f"k={k} exceeds the model's {student.num_classes} classes")
    train, val = _split(train_data, config.val_fraction, config.seed)
    held_out = _held_out_perturb(corruption, config)
    stages = STAGES[method]
    steps_of = {
        "refine": config.refine_steps, "finetune": config.finetune_steps,
    }  # fmt: skip
    epochs_of = {"refine": config.refine_epochs, "finetune": config.finetune_epochs}
    lr_of = {"refine": config.refine_lr, "finetune": config.finetune_lr, "augmix": config.finetune_lr}
    # the budget slot decides the length: slot 0 has the refinement stage's length, slot 1 the fine-tuning one's
    slots = ("refine", "finetune")

    def stage_steps(slot: str) -> int:
        if steps_of[slot] is not None:
            return int(steps_of[slot])
        return epochs_of[slot] * -(-len(train) // config.batch_size)

    total = config.iterations * sum(stage_steps(s) for s in slots)
    history: list[dict[str, Any]] = []
    emit = callback or (lambda event: None)

    def score(iteration: int) -> dict[str, Any]:
        student.eval()
        bs = config.batch_size
        corrupted = evaluate_accuracy(student, val, batch_size=bs, device=device, amp=config.amp, perturb=held_out)
        clean = evaluate_accuracy(student, val, batch_size=bs, device=device, amp=config.amp)
        entry = {"iteration": iteration, "stage": "select", "val_corrupted_acc": corrupted[0] / corrupted[1],
                 "val_clean_acc": clean[0] / clean[1]}  # fmt: skip
        history.append(entry)
        emit({"kind": "select", **entry})
        return entry

    best = score(0)
    best_state = copy.deepcopy(student.state_dict())
    done = 0
    for iteration in range(1, config.iterations + 1):
        for slot, stage in zip(slots, stages, strict=True):
            loss_fn = _stage_loss(stage, reference, corruption, config, iteration)
            data = _stage_data(train, steps_of[slot], config.batch_size, config.seed, stage, iteration, slot)
            epochs = 1 if steps_of[slot] is not None else epochs_of[slot]
            offset = done

            def on_event(event: dict[str, Any], offset: int = offset, stage: str = stage, it: int = iteration) -> None:
                if event.get("kind") == "step":
                    emit(
                        {
                            "kind": "step",
                            "step": offset + event["step"],
                            "total": total,
                            "loss": event["loss"],
                            "description": f"{method} iter {it}/{config.iterations} {stage} loss {event['loss']:.4f}",
                        }
                    )

            # refinement updates the backbone only: the classifier (the CAM weights) is frozen for the stage
            head = _head_params(student)
            for p in head:
                if p is not None:
                    p.requires_grad_(stage != "refine")
            try:
                result = fit(
                    student, data, epochs=epochs, lr=lr_of[stage], batch_size=config.batch_size,
                    optimizer=config.optimizer, weight_decay=config.weight_decay, schedule=config.schedule,
                    amp=config.amp, loss_fn=loss_fn, augment=random_crop_flip if config.augment else None,
                    seed=derive_seed(config.seed, "ar2-fit", stage, iteration, slot) & 0x7FFFFFFF, device=device,
                    callback=on_event,
                )  # fmt: skip
            finally:
                for p in head:
                    if p is not None:
                        p.requires_grad_(True)
            done += result.steps
            history.append({"iteration": iteration, "stage": stage, "loss": result.train_loss, "steps": result.steps})
            log.info("AR2 %s iteration %d %s: loss %.4f", method, iteration, stage, result.train_loss)
        entry = score(iteration)
        if entry["val_corrupted_acc"] > best["val_corrupted_acc"] or not config.select_best:
            best, best_state = entry, copy.deepcopy(student.state_dict())
    student.load_state_dict(best_state)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(True)
    path = None
    if checkpoint is not None:
        path = str(save_checkpoint(student, checkpoint))
    return RepairResult(
        model=student, history=history, selected_iteration=best["iteration"],
        val_corrupted_acc=best["val_corrupted_acc"], steps=done, checkpoint=path, reference=reference,
    )  # fmt: skip
