"""Class folders labelled by the model's class names, not by folder order.

A class-per-folder tree labels its images 0, 1, ... in sorted folder order. That is right only when the folders
are the model's full, ordered label set (the 1,000 ImageNet wnid folders). A folder tree with only ``cat/`` and
``dog/`` would label them 0 and 1, which a CIFAR-10 model calls airplane and automobile: 0.00 % accuracy and no
error. :func:`match_model_classes` relabels such a tree by name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from robustlab._registry import close_matches_message


def _key(name: str) -> str:
    # "Tabby_Cat", "tabby-cat" and "tabby cat" are one class
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower()))


def is_placeholder(class_names: Sequence[str]) -> bool:
    """Whether names only number the outputs (``class_0 ..`` or ``0 ..``): the model knows no class names."""
    return all(str(n) in (f"class_{i}", str(i)) for i, n in enumerate(class_names))


def match_model_classes(dataset: Any, class_names: Sequence[str]) -> Any:
    """Label a class-per-folder dataset by the model's class names (or keep it as it is where that is moot).

    Only datasets read from a class-per-folder tree (``info["format"] == "image-folder"``) change; others are
    returned as they are. Folders named like a model class (case, ``_`` and ``-`` ignored) take that class's
    index; folders named ``0`` .. ``K-1`` are taken as indices. A model without class names (``class_0 ..``)
    keeps the folder order, and so do WordNet-id folders (``n01440764``), whose sorted order is the ILSVRC index.

    Args:
        dataset: a dataset from :func:`robustlab.data.load_dataset`.
        class_names: the model's class names, one per output.

    Returns:
        The dataset, relabelled to the model's indices, with the model's class names.

    Raises:
        ValueError: a folder that names no model class (close matches listed), or more folders than the model
            has classes when it has no names.
    """
    if getattr(dataset, "info", {}).get("format") != "image-folder" or not hasattr(dataset, "targets"):
        return dataset
    folders = list(dataset.class_ids or dataset.class_names)
    names = [str(n) for n in class_names]
    if is_placeholder(names):
        if len(folders) > len(names):
            raise ValueError(f"{dataset.name}: {len(folders)} class folders but the model has {len(names)} outputs")
        return dataset
    if folders == names or all(re.fullmatch(r"n\d{8}", f) for f in folders):
        # WordNet ids: load_image_folder's sorted order is the standard ILSVRC index (pass classes= for a subset)
        return dataset
    index = {_key(n): i for i, n in enumerate(names)}
    mapping: dict[int, int] = {}
    unmatched: list[str] = []
    for old, folder in enumerate(folders):
        key = _key(folder)
        if key in index:
            mapping[old] = index[key]
        elif folder.isdigit() and int(folder) < len(names):
            mapping[old] = int(folder)
        else:
            unmatched.append(folder)
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        hint = close_matches_message("class", unmatched[0], names).split(".", 1)[1].split(" Known")[0].strip()
        raise ValueError(
            f"{dataset.name}: class folder(s) {shown} name no class of the model, so their images cannot be "
            f"labelled. {hint + ' ' if hint else ''}Rename each folder to one of the model's class names "
            f"({', '.join(names[:10])}{', ...' if len(names) > 10 else ''}) or to its index 0..{len(names) - 1}"
        )
    from robustlab.data.folder import FolderDataset

    relabelled = FolderDataset(
        dataset.files,
        [mapping[t] for t in dataset.targets],
        class_names=names,
        name=dataset.name,
        split=dataset.split,
        info={**dataset.info, "labels": "class folders matched to the model's class names"},
        preprocess=dataset.preprocess,
        pre_cropped=dataset.pre_cropped,
    )
    return relabelled
