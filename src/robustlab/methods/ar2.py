"""AR2: CAM-guided repair of a pretrained CNN against common corruptions (arXiv 2507.06332).

Two copies of the same pretrained CNN: a frozen *reference* (eval mode, no gradients) that supplies CAM targets
from clean images, and the *repairing* model. Repair alternates two stages for ``T`` outer iterations:

1. **CAM-guided refinement** (backbone only, the GAP + linear classifier frozen)::

       L_CAM = alpha * mean_{c in S} MSE(N(M_c(x)), N(M0_c(x)))
             + (1 - alpha) * mean_{c in S} MSE(N(M_c(x~)), N(M0_c(x)))

   with ``M_c(x) = sum_k W[c, k] * phi(x)[k]`` (last conv map ``phi``, classifier weights ``W``; the model's own
   ``W`` for ``M`` and the reference's for ``M0``), ``N(M) = ReLU(M) / (max ReLU(M) + 1e-8)`` per image and class,
   compared at feature-map resolution, and ``x~`` the corrupted image.
2. **Fine-tuning** (all parameters): ``CE(f(x), y) + CE(f(x~), y)``.

The losses and the BatchNorm policy (CAMs under eval-mode BatchNorm in both models; fine-tuning on one mixed
clean + corrupted batch) live in :mod:`robustlab.methods.ar2_losses`. Choices the paper leaves open (issues 8
and 18), recorded here:

- class set ``S(x)``: the reference's top-``k`` classes on the clean image (``k = 3`` for 10 classes, 5
  otherwise), the true label replacing the ``k``-th when missing; the same ``S`` for every map of an image;
- ``x~``: the corruption at severity 3 (configurable), ``alpha = 0.5``, ``T = 3``;
- each stage has its own learning rate and a fresh optimiser with a cosine schedule within the stage: the
  backbone gradient of ``L_CAM`` is about 100x smaller than that of the cross-entropy, so one shared rate either
  leaves refinement a no-op or lets fine-tuning wreck the pretrained model (see ``experiments/ar2_cifar10``);
  a stage whose relative weight or loss change stays below ``min_update`` raises :class:`NegligibleUpdateWarning`;
- the returned model is the best of the candidates (the pretrained model and the model after each outer
  iteration) by accuracy on a held-out part of the *training* data corrupted the same way — never the test set;
  when the pretrained model wins (ties included) :class:`UnmodifiedModelWarning` says so;
- modes: one corruption (per-corruption repair) or ``"unified"`` (each batch corrupted by a corruption drawn at
  random from a pool).

Each gradient stage is one call of :func:`robustlab.train.fit` with a ``loss_fn`` from this module, so AMP, the
optimiser, the schedule and the crop/flip augmentation are the training loop's. Corruptions are drawn from
generators derived from ``(seed, method, stage, slot, iteration, batch)``; a stage cannot be resumed mid-way.
Not supported under torchrun (:func:`repair` refuses it): the CAMs are read from the unwrapped classifier.

Baselines: ``method="finetune"`` (every stage is a fine-tuning stage), ``"refine"`` (every stage is refinement)
and ``"augmix"`` (AugMix fine-tuning with the Jensen-Shannon loss; it never sees the target corruption) under the
same number of optimiser steps, and ``"bn_adapt"`` (no gradient step: BatchNorm statistics re-estimated on
corrupted training images, :mod:`robustlab.methods.bn_adapt`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from robustlab.data._base import ImageDataset, Subset
from robustlab.methods._registry import METHODS
from robustlab.methods.ar2_losses import (  # noqa: F401  (re-exported: the public names of AR2's losses)
    augmix_loss,
    cam_targets,
    class_set,
    default_k,
    finetune_loss,
    normalize_cam,
    refinement_loss,
    refinement_terms,
)
from robustlab.methods.ar2_stages import (
    UNIFIED,
    Callback,
    NegligibleUpdateWarning,  # noqa: F401  (re-exported beside its twin)
    bn_adapt_stage,
    check_update,
    held_out_batches,
    run_stage,
    score_held_out,
)
from robustlab.models.checkpoint import save_checkpoint
from robustlab.models.classifier import Classifier
from robustlab.models.probes import classifier_weights
from robustlab.perturb import PERTURBATIONS, TEST_CORRUPTIONS
from robustlab.rng import make_generator
from robustlab.train.distributed import launched_by_torchrun

log = logging.getLogger(__name__)

METHOD_NAMES = ("ar2", "finetune", "refine", "augmix", "bn_adapt")
STAGES = {"ar2": ("refine", "finetune"), "finetune": ("finetune", "finetune"), "refine": ("refine", "refine"),
          "augmix": ("augmix", "augmix")}  # fmt: skip
"""Which loss each of the two stages (slots) of an outer iteration uses, per gradient method: equal step budgets
by construction (slot 0 has the refinement stage's length, slot 1 the fine-tuning stage's)."""
SLOTS = ("refine", "finetune")
SCHEDULES = ("cosine", "constant")


class UnmodifiedModelWarning(UserWarning):
    """A repair returned the unmodified input model: no candidate beat it on the held-out split."""


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
    refine_lr: float = 0.3
    """Peak learning rate of each refinement stage (SGD by default). ``L_CAM``'s backbone gradient is 25-40x
    smaller than the cross-entropy's on a pretrained ResNet-20, so refinement needs a far larger rate than
    fine-tuning; 0.3 gave the lowest held-out ``L_CAM`` in the sweep of ``experiments/ar2_cifar10/RESULTS.md``
    (0.03 moved it less, 3 diverged)."""
    finetune_lr: float = 3e-3
    """Peak learning rate of each fine-tuning (and AugMix) stage: in the held-out sweep
    (``experiments/ar2_cifar10/RESULTS.md``) 0.003 beat 0.001 and 0.0003 on corrupted and clean accuracy, and 0.01
    gained 1 corrupted point for 5 clean points."""
    batch_size: int = 128
    """Samples per optimiser step."""
    optimizer: str = "sgd"
    """``"sgd"`` or ``"adamw"``, as :func:`robustlab.train.fit`."""
    weight_decay: float = 5e-4
    """Weight decay of both stages."""
    schedule: str = "cosine"
    """Learning-rate schedule within each stage (``"cosine"``: from the stage's rate to 0, restarting every stage
    with a fresh optimiser; or ``"constant"``)."""
    min_update: float = 1e-3
    """A gradient stage whose relative weight change ``|w' - w| / |w|`` (over the parameters it trains) or
    relative loss change (first vs last fifth of its steps) stays below this raises
    :class:`NegligibleUpdateWarning`; 0 turns the check off."""
    track_cam_loss: bool = True
    """Measure ``L_CAM`` (eval mode, severity ``severity``) on the held-out split after every stage, into the
    history as ``val_cam_loss``: it shows whether refinement does what it is for."""
    bn_adapt_batches: int | None = None
    """Batches of corrupted training images the ``"bn_adapt"`` baseline averages its statistics over; None: one
    pass over the training split."""
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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not self.min_update >= 0:
            raise ValueError(f"min_update must be >= 0, got {self.min_update}")
        if self.bn_adapt_batches is not None and (
            not isinstance(self.bn_adapt_batches, int) or self.bn_adapt_batches < 1
        ):
            raise ValueError(f"bn_adapt_batches must be None or an integer >= 1, got {self.bn_adapt_batches!r}")
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

    ``history`` holds one dict per stage (``iteration`` 1-based, ``stage``, ``slot``, ``lr``, ``steps``,
    ``loss``, ``loss_first`` / ``loss_last`` (mean loss of the first / last fifth of the steps),
    ``weight_change`` (relative), ``val_cam_loss`` when tracked, and for refinement ``cam_clean`` /
    ``cam_corrupted``, the stage's mean unweighted ``L_CAM`` terms) and one per candidate evaluated for
    selection (``stage="select"``, ``iteration`` 0 for the pretrained model, ``val_corrupted_acc``,
    ``val_clean_acc``, ``val_cam_loss`` when tracked).
    """

    model: Classifier
    """The repaired model (the selected candidate), in eval mode."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per-stage and per-candidate records, see the class docstring."""
    selected_iteration: int = 0
    """Outer iteration whose model was selected (0: the pretrained model was best on the held-out split)."""
    val_corrupted_acc: float = math.nan
    """Held-out corrupted accuracy of the selected model."""
    val_clean_acc: float = math.nan
    """Held-out clean accuracy of the selected model."""
    initial_val_corrupted_acc: float = math.nan
    """Held-out corrupted accuracy of the input model (the "before" of before -> after)."""
    initial_val_clean_acc: float = math.nan
    """Held-out clean accuracy of the input model."""
    n_val: int = 0
    """Size of the held-out split the selection used."""
    steps: int = 0
    """Optimiser steps taken in all (the budget, equal across methods for equal settings)."""
    checkpoint: str | None = None
    """Path the selected model was saved to, if any."""
    reference: Classifier | None = None
    """The frozen reference model the CAM targets came from (equal to the input model)."""

    @property
    def unmodified(self) -> bool:
        """True when the returned model is the input model (iteration 0 won the selection)."""
        return self.selected_iteration == 0


def check_corruption(name: str) -> str:
    """Validate a training corruption name (a registered corruption taking a severity).

    Raises:
        ValueError: unknown name (with close matches), or a perturbation that is not a corruption.
    """
    PERTURBATIONS.get(name)  # raises with close matches
    if name.endswith("_sequence") or name in ("patch_occlusion",):
        raise ValueError(f"{name!r} is not a corruption with a severity; pick one of {', '.join(TEST_CORRUPTIONS)}")
    return name


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
        method: ``"ar2"``, or a baseline: ``"finetune"``, ``"refine"``, ``"augmix"``, ``"bn_adapt"``.
        device: where to train (default: CUDA when available).
        checkpoint: write the selected model here (``create_model("file:<checkpoint>")`` restores it).
        callback: progress events ``{"kind": "step", "step", "total", "loss", "lr", "stage", "description"}``
            (steps counted over the whole repair) and ``{"kind": "select", ...}`` (a history entry).

    Returns:
        A :class:`RepairResult` with the selected model, the before -> after held-out accuracies and the history.

    Warns:
        NegligibleUpdateWarning: a gradient stage barely changed the weights or its loss.
        UnmodifiedModelWarning: the input model won the held-out selection (it is what is returned).

    Shape:
        batches of ``train_data``: images ``(B, 3, H, W)`` in [0, 1], labels ``(B,)``.

    Raises:
        ValueError: a model without a CAM head, an unknown corruption or method, bad config or data, or a
            launch under torchrun.

    Example:
        >>> result = repair("cifar:resnet20", train, corruption="fog",
        ...                 config=AR2Config(refine_steps=50, finetune_steps=50))  # doctest: +SKIP
    """
    from robustlab.models import create_model

    if launched_by_torchrun():
        raise ValueError("AR2 repair runs in one process (it reads CAMs from the unwrapped model): start it with "
                         "python or `robustlab repair`, not torchrun")  # fmt: skip
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
    held_out = held_out_batches(val, corruption, config, device)

    def stage_steps(slot: str) -> int:
        steps = config.refine_steps if slot == "refine" else config.finetune_steps
        epochs = config.refine_epochs if slot == "refine" else config.finetune_epochs
        return int(steps) if steps is not None else epochs * -(-len(train) // config.batch_size)

    iterations = 1 if method == "bn_adapt" else config.iterations
    total = 0 if method == "bn_adapt" else iterations * sum(stage_steps(s) for s in SLOTS)
    history: list[dict[str, Any]] = []
    emit = callback or (lambda event: None)

    def score(iteration: int) -> dict[str, Any]:
        entry = {"iteration": iteration, "stage": "select",
                 **score_held_out(student, reference, held_out, config, config.track_cam_loss)}  # fmt: skip
        history.append(entry)
        emit({"kind": "select", **entry})
        return entry

    initial = best = score(0)
    best_state = copy.deepcopy(student.state_dict())
    done = 0
    for iteration in range(1, iterations + 1):
        if method == "bn_adapt":
            history.append(bn_adapt_stage(student, train, corruption, config, device))
        for slot, stage in zip(SLOTS, STAGES.get(method, ()), strict=False):

            def on_step(event: dict[str, Any], offset: int = done, stage: str = stage, it: int = iteration) -> None:
                emit({"kind": "step", "step": offset + event["step"], "total": total, "loss": event["loss"],
                      "lr": event["lr"], "stage": stage,
                      "description": f"{method} iter {it}/{iterations} {stage} loss {event['loss']:.4f}"})  # fmt: skip

            entry = run_stage(student, reference, train, stage=stage, slot=slot, iteration=iteration,
                               corruption=corruption, config=config, device=device, on_step=on_step)  # fmt: skip
            if config.track_cam_loss and stage == "refine":
                entry["val_cam_loss"] = score_held_out(student, reference, held_out, config, True)["val_cam_loss"]
            done += entry["steps"]
            history.append(entry)
            log.info("AR2 %s iteration %d %s: loss %.4f", method, iteration, stage, entry["loss"])
            if config.min_update > 0:
                check_update(entry, config.min_update)
        entry = score(iteration)
        if entry["val_corrupted_acc"] > best["val_corrupted_acc"] or not config.select_best:
            best, best_state = entry, copy.deepcopy(student.state_dict())
    student.load_state_dict(best_state)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(True)
    if best["iteration"] == 0:
        warnings.warn(
            UnmodifiedModelWarning(
                f"{method} repair against {corruption} returned the unmodified model: no iteration beat it on the "
                f"{len(val)} held-out images (corrupted acc {100 * initial['val_corrupted_acc']:.2f} %, ties keep "
                "the input model); try other learning rates, more steps or a larger val_fraction"
            ),
            stacklevel=2,
        )
    path = None
    if checkpoint is not None:
        path = str(save_checkpoint(student, checkpoint))
    return RepairResult(
        model=student, history=history, selected_iteration=best["iteration"],
        val_corrupted_acc=best["val_corrupted_acc"], val_clean_acc=best["val_clean_acc"],
        initial_val_corrupted_acc=initial["val_corrupted_acc"], initial_val_clean_acc=initial["val_clean_acc"],
        n_val=len(val), steps=done, checkpoint=path, reference=reference,
    )  # fmt: skip
