"""Create a model and the dataset it is evaluated on, preprocessed to its input — shared by the CLI verbs and
library workflows (noise sweeps, repairs) so both see exactly the same data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def load_model_and_data(
    model: str,
    data: str,
    *,
    split: str = "test",
    n: int | None = None,
    data_dir: Any = None,
    pretrained: bool = True,
    device: Any = None,
    weights: str | os.PathLike[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[Any, Any]:
    """Create the model and its dataset, labelled by the model's classes, preprocessed to the model's input (and
    cut to the first ``n`` samples).

    Args:
        model: a spec for :func:`robustlab.models.create_model`, or your own network
            (``path/to/file.py:ClassName``, ``package.module:factory``; see :mod:`robustlab.models.custom`).
        data: a dataset name or path for :func:`robustlab.data.load_dataset`.
        split: the split to load.
        n: only the first ``n`` samples.
        data_dir: the shared data folder (default ``$ROBUSTLAB_DATA``).
        pretrained: load published weights (built-in specs).
        device: where to put the model.
        weights: a weights file for the architecture.
        mean: your network's normalisation mean (own networks only).
        std: your network's normalisation std (own networks only).
        input_size: your network's input size (own networks only; default: the data's image size).
        num_classes: the model's outputs.

    Returns:
        ``(classifier, dataset)``; class folders are relabelled by the model's class names
        (:func:`robustlab.data.match_model_classes`).

    Raises:
        ValueError: ``mean`` / ``std`` / ``input_size`` for a model that brings its own, or whatever the loaders
            refuse (unknown spec or dataset, class folders that name no class of the model...).
    """
    from robustlab.data import fit_to_model, head, load_dataset, match_model_classes
    from robustlab.models import create_custom_model, create_model, is_user_model

    dataset = load_dataset(data, split=split, data_dir=data_dir)
    if is_user_model(model):
        if input_size is None and len(dataset):
            input_size = tuple(dataset.get_batch([0])[0].shape[1:])  # the data's size unless the net says otherwise
        clf = create_custom_model(model, weights=weights, mean=mean, std=std, input_size=input_size,
                                  num_classes=num_classes)  # fmt: skip
        if device is not None:
            clf.to(device)
    else:
        given = [flag for flag, v in (("mean", mean), ("std", std), ("input_size", input_size)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} describe your own network (path/to/file.py:ClassName); {model} "
                             "brings its own normalisation and input size")  # fmt: skip
        clf = create_model(
            model,
            pretrained=pretrained,
            weights=weights,
            num_classes=num_classes,
            data_dir=data_dir,
            device=device,
            class_names=dataset.class_names if model.startswith("openclip:") else None,
        )
    dataset = fit_to_model(match_model_classes(dataset, clf.class_names), clf.data_config)
    return clf, head(dataset, n)
