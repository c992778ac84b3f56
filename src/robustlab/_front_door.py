"""Subpackages that can be called: ``robustlab.perturb(...)`` and ``robustlab.explain(...)``.

The top level offers the functions ``perturb`` and ``explain``, but those names are also subpackages, and Python
binds ``robustlab.perturb`` to the subpackage as soon as anything imports it. Rather than shadow the subpackage
(``from robustlab import explain`` would then stop being the module), the subpackage itself becomes callable and
forwards the call to its front-door function, so both ``robustlab.perturb(images, "fog", 3)`` and
``robustlab.perturb.fog(images, 3)`` work.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["make_callable"]


class _CallableModule(types.ModuleType):
    """A module whose call runs its ``__front_door__`` function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["__front_door__"](*args, **kwargs)


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Make the imported module ``module_name`` callable as ``function``.

    Args:
        module_name: an imported module (a package's ``__name__``).
        function: what calling the module runs.
    """
    module = sys.modules[module_name]
    module.__dict__["__front_door__"] = function
    module.__class__ = _CallableModule
