"""robustlab: measure, explain and repair the robustness of image classifiers.

The front doors, at the top level::

    import robustlab

    model = robustlab.create_model("cifar:resnet20")              # a Classifier taking [0, 1] pixels
    data = robustlab.load_dataset("cifar10_exact")                 # images in [0, 1] and labels
    foggy = robustlab.perturb(images, "fog", 3)                    # any registered perturbation
    adversarial = robustlab.attack(model, images, labels, "pgd")   # any registered attack
    maps = robustlab.explain(model, images, "grad_cam")            # any registered explainer
    cells = robustlab.evaluate(model, data, ["clean", "noise"], store=robustlab.Store("results.db"))
    mine = robustlab.wrap_model(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32)  # your own network

``perturb`` and ``explain`` are also the subpackages :mod:`robustlab.perturb` and :mod:`robustlab.explain`
(calling the subpackage calls its front door), so ``robustlab.perturb.fog`` works as well.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from robustlab import _compat  # noqa: F401  (must run before anything imports torchvision)

__version__ = "0.1.0"

# public name -> the module that defines it. They are imported on first use (PEP 562): importing the six
# subpackages eagerly added about 0.8-1.0 s to `import robustlab` (7-9 s with torch on the shared 2-core machine).
# perturb and explain resolve to their (callable) subpackages.
_EXPORTS = {
    "Store": "robustlab.store",
    "attack": "robustlab.attacks",
    "create_model": "robustlab.models",
    "evaluate": "robustlab.engine",
    "explain": "robustlab.explain",
    "load_dataset": "robustlab.data",
    "perturb": "robustlab.perturb",
    "wrap_model": "robustlab.models",
}

__all__ = [
    "Store",
    "__version__",
    "attack",
    "create_model",
    "evaluate",
    "explain",
    "load_dataset",
    "perturb",
    "wrap_model",
]

if TYPE_CHECKING:
    from robustlab import explain, perturb
    from robustlab.attacks import attack
    from robustlab.data import load_dataset
    from robustlab.engine.evaluate import evaluate
    from robustlab.models import create_model, wrap_model
    from robustlab.store import Store


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'robustlab' has no attribute {name!r}")
    if name in ("perturb", "explain"):
        value = importlib.import_module(module)  # the subpackage, callable as its front door
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
