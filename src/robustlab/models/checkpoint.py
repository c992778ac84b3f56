"""robustlab checkpoints: weights plus everything needed to rebuild the :class:`Classifier` (``file:<path>``).

Format (version 1). A checkpoint records the *architecture spec* it was built from (``"cifar:resnet20"``,
``"timm:resnet50.a1_in1k"``, ``"openclip:ViT-B-32/openai"``), the network's state dict and the pixel contract:

- torch file (any suffix but ``.safetensors``): ``torch.save`` of a plain dict, only tensors and plain data,
  so it loads with ``weights_only=True``::

      {"format": "robustlab-checkpoint", "version": 1, "arch": str, "state_dict": {name: Tensor},
       "class_names": [str], "mean": [float], "std": [float], "input_size": [int], "crop_pct": float,
       "interpolation": str, "family": str}

- ``.safetensors``: the state dict as tensors, the rest as JSON under the metadata key ``"robustlab"``.

Loading rebuilds ``arch`` with random weights (``pretrained=False``), loads the state dict strictly and
restores the pixel contract. An optional ``"a3"`` entry (plain data) records A3 modules attached to the network
(:func:`robustlab.methods.a3.attach`); they are re-attached before the state dict is loaded. Nothing is ever
unpickled beyond tensors and plain data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab.models._common import resolve_class_names
from robustlab.models._weights import load_into, read_file
from robustlab.models._zoo import LOADERS, Loader, create_model, is_user_model
from robustlab.models.a3_module import attach_from_spec
from robustlab.models.classifier import Classifier
from robustlab.models.custom import create_custom_model

FORMAT = "robustlab-checkpoint"
VERSION = 1
_METADATA_KEY = "robustlab"
_NOT_A_CHECKPOINT = (
    "{path} is not a robustlab checkpoint ({why}). Save one with robustlab.models.save_checkpoint; a plain "
    "state dict loads with create_model(<architecture spec>, weights={path!r})"
)


def save_checkpoint(classifier: Classifier, path: str | os.PathLike[str], *, arch: str | None = None) -> Path:
    """Write ``classifier`` as a robustlab checkpoint that ``create_model("file:<path>")`` restores exactly.

    Args:
        classifier: the model to save (its ``net`` state dict and pixel contract).
        path: target file; ``.safetensors`` writes safetensors with JSON metadata, any other suffix a torch
            file.
        arch: architecture spec to record; default ``classifier.arch`` (set by :func:`create_model`).

    Returns:
        The written path.

    Raises:
        ValueError: not a Classifier, or no buildable architecture spec is known.
    """
    if not isinstance(classifier, Classifier):
        raise ValueError(f"save_checkpoint needs a robustlab Classifier, got {type(classifier).__name__}")
    arch = arch or classifier.arch
    if not arch or arch.startswith("file:"):
        raise ValueError(
            f"cannot tell which architecture {classifier.name or 'this model'} is (arch={arch!r}); build it "
            "with create_model or pass arch='<spec>' (e.g. 'cifar:resnet20')"
        )
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "class_names": list(classifier.class_names),
        "mean": [float(v) for v in classifier.mean.flatten()],
        "std": [float(v) for v in classifier.std.flatten()],
        "input_size": list(classifier.input_size),
        "crop_pct": classifier.crop_pct,
        "interpolation": classifier.interpolation,
        "family": classifier.family,
    }
    plugin = getattr(classifier.net, "a3", None)  # A3 modules: recorded here, re-attached on load
    if plugin is not None and hasattr(plugin, "spec"):
        meta["a3"] = plugin.spec()
    # clone: safetensors refuses tensors that share memory (tied weights), and the file must not alias the
    # model
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in classifier.net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={_METADATA_KEY: json.dumps(meta)})
    else:
        torch.save({**meta, "state_dict": state}, path)
    return path


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    content, metadata = read_file(path)
    if path.suffix == ".safetensors":
        if _METADATA_KEY not in metadata:
            raise ValueError(_NOT_A_CHECKPOINT.format(path=str(path), why="no 'robustlab' metadata"))
        try:
            meta = json.loads(metadata[_METADATA_KEY])
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: corrupt robustlab metadata ({e})") from e
        state = content
    else:
        if not isinstance(content, Mapping) or "arch" not in content or "state_dict" not in content:
            why = "no 'arch' and 'state_dict' entries"
            raise ValueError(_NOT_A_CHECKPOINT.format(path=str(path), why=why))
        meta = {k: v for k, v in content.items() if k != "state_dict"}
        state = content["state_dict"]
    if not isinstance(meta, Mapping) or meta.get("format", FORMAT) != FORMAT:
        raise ValueError(_NOT_A_CHECKPOINT.format(path=str(path), why="unknown format"))
    if int(meta.get("version", VERSION)) > VERSION:
        raise ValueError(f"{path} is a version {meta['version']} checkpoint; this robustlab reads up to {VERSION}")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: 'state_dict' must map names to tensors")
    return dict(meta), dict(state)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> Classifier:
    """Rebuild a :class:`Classifier` from a robustlab checkpoint (what ``create_model("file:<path>")`` calls).

    Args:
        path: a file written by :func:`save_checkpoint`.
        class_names: optional new names for the same outputs (must match the checkpoint's count).
        num_classes: optional; must equal the checkpoint's count.

    Returns:
        The classifier with the saved weights, normalisation and preprocessing facts (mode and device as
        built; :func:`create_model` sets eval mode and the device).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable or corrupt file, pickled objects, not a robustlab checkpoint, an unbuildable
            architecture, or weights that do not fit it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (create_model('file:<path>') needs a file)")
    meta, state = _read_checkpoint(path)
    arch = meta.get("arch")
    if not isinstance(arch, str) or not arch or arch.startswith("file:"):
        raise ValueError(f"{path}: 'arch' must be a model spec such as 'cifar:resnet20', got {arch!r}")
    saved = meta.get("class_names")
    if isinstance(saved, list) and saved:
        saved_names = [str(n) for n in saved]
        names = resolve_class_names(class_names, num_classes, default=saved_names, spec=f"file:{path}")
        if len(names) != len(saved_names):
            raise ValueError(f"{path} has {len(saved_names)} outputs; got {len(names)} class names / num_classes")
        if is_user_model(arch):  # the user's own network, with the pixel contract it was saved with
            model = create_custom_model(arch, mean=meta.get("mean"), std=meta.get("std"),
                                        input_size=meta.get("input_size"), class_names=saved_names)  # fmt: skip
        else:
            model = create_model(arch, pretrained=False, class_names=saved_names)
    else:
        model = create_model(arch, pretrained=False, class_names=class_names, num_classes=num_classes)
        names = model.class_names
    if isinstance(meta.get("a3"), Mapping):
        attach_from_spec(model, dict(meta["a3"]))
    load_into(model.net, state, path)
    if "mean" in meta and "std" in meta:
        channels = model.input_size[0]
        if len(meta["mean"]) != channels or len(meta["std"]) != channels:
            raise ValueError(f"{path}: mean/std need {channels} entries, got {meta['mean']} and {meta['std']}")
        model.mean.copy_(torch.tensor(meta["mean"], dtype=torch.float32).view(1, -1, 1, 1))
        model.std.copy_(torch.tensor(meta["std"], dtype=torch.float32).view(1, -1, 1, 1))
    if "input_size" in meta:
        channels, height, width = (int(v) for v in meta["input_size"])  # (C, H, W), as Classifier keeps it
        model.input_size = (channels, height, width)
    model.crop_pct = float(meta.get("crop_pct", model.crop_pct))
    model.interpolation = str(meta.get("interpolation", model.interpolation))
    model.class_names = list(names)
    return model


def _load_file(
    name: str,
    *,
    pretrained: bool,
    weights: str | os.PathLike[str] | None,
    class_names: Sequence[str] | None,
    num_classes: int | None,
) -> Classifier:
    """The ``file:`` loader: ``pretrained`` is ignored, the file holds the weights."""
    if weights is not None:
        raise ValueError(f"file:{name} already names the weights; do not pass weights= as well")
    return load_checkpoint(name, class_names=class_names, num_classes=num_classes)


LOADERS["file"] = Loader(
    "file:<path>", "a robustlab checkpoint written by save_checkpoint (torch or .safetensors)", _load_file
)
