"""Create a model and the dataset it is evaluated on, preprocessed to its input — shared by the CLI verbs and
library workflows (noise sweeps, repairs) so both see exactly the same data."""

from __future__ import annotations

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
) -> tuple[Any, Any]:
    """Create the model and its dataset, preprocessed to the model's input (and cut to the first ``n`` samples).

    Returns:
        ``(classifier, dataset)``.
    """
    from robustlab.data import fit_to_model, head, load_dataset
    from robustlab.models import create_model

    dataset = load_dataset(data, split=split, data_dir=data_dir)
    clf = create_model(
        model,
        pretrained=pretrained,
        data_dir=data_dir,
        device=device,
        class_names=dataset.class_names if model.startswith("openclip:") else None,
    )
    dataset = fit_to_model(dataset, clf.data_config)
    return clf, head(dataset, n)
