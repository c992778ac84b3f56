"""A context manager that records what named submodules compute, and the gradients flowing back into it.

pytorch-grad-cam's ``ActivationsAndGradients`` idea, torch-native: hooks live exactly as long as the ``with``
block (also when the forward raises), and gradients are taken with :func:`torch.autograd.grad`, so recording
inside a training step never touches parameter ``.grad``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from robustlab._checks import did_you_mean

_READS = ("output", "input")


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, Tensor)), None)
    if isinstance(value, Mapping):
        return next((v for v in value.values() if isinstance(v, Tensor)), None)
    return None


def _resolve(model: nn.Module, targets: Sequence[str] | Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    if isinstance(targets, Mapping):
        modules = dict(targets)
        bad = [name for name, m in modules.items() if not isinstance(m, nn.Module)]
        if bad:
            raise ValueError(f"targets must map names to nn.Module instances; not modules: {bad}")
    else:
        if isinstance(targets, str):
            targets = [targets]
        named = dict(model.named_modules())
        modules = {}
        for name in targets:
            if name not in named:
                hint = did_you_mean(name, named)
                raise ValueError(
                    f"{type(model).__name__} has no submodule {name!r}.{hint} "
                    "Names are those of model.named_modules(), e.g. 'net.layer3'."
                )
            modules[name] = named[name]
    if not modules:
        raise ValueError("ActivationHooks needs at least one module to watch")
    return modules


class ActivationHooks:
    """Record the outputs (or inputs) of named submodules during the forward passes run inside a ``with`` block.

    Entering registers one forward hook (``read="output"``) or forward pre-hook (``read="input"``) per module;
    leaving removes every hook, also when the block raises, so no handle outlives the block. When a module runs
    more than once inside the block, the last call wins.

    With ``with_gradients=True`` each recorded tensor that requires grad also gets a tensor hook that stores the
    gradient reaching it during any ``torch.autograd.grad`` (or ``backward``) call made inside the block.
    :meth:`grad` is the direct way: it differentiates a score with respect to the recorded tensors.

    Args:
        model: the model whose submodules to watch.
        targets: names from ``model.named_modules()`` (``"net.layer3"``), or a mapping of your own names to
            modules.
        read: ``"output"`` records what a module returns (the first tensor of a tuple, e.g. of
            ``nn.MultiheadAttention``); ``"input"`` records its first tensor argument.
        with_gradients: also record gradients flowing back into the recorded tensors.

    Attributes:
        activations: name -> recorded tensor (still in the autograd graph).
        gradients: name -> gradient recorded by the tensor hooks (``with_gradients=True`` only).

    Raises:
        ValueError: an unknown module name (with close matches), an empty target list, an unknown ``read``.

    Example:
        >>> with ActivationHooks(model, ["net.layer3"]) as hooks:
        ...     logits = model(images)
        ...     grads = hooks.grad(logits[:, 0].sum())
        >>> hooks.activations["net.layer3"].shape, grads["net.layer3"].shape
    """

    def __init__(
        self,
        model: nn.Module,
        targets: Sequence[str] | Mapping[str, nn.Module],
        *,
        read: Literal["output", "input"] = "output",
        with_gradients: bool = False,
    ) -> None:
        if read not in _READS:
            raise ValueError(f"read must be one of {_READS}, got {read!r}")
        self.modules = _resolve(model, targets)
        self.read = read
        self.with_gradients = with_gradients
        self.activations: dict[str, Tensor] = {}
        self.gradients: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        self._tensor_handles: list[RemovableHandle] = []
        self._active = False

    def _keep(self, name: str, value: Any) -> None:
        tensor = _first_tensor(value)
        if tensor is None:
            return
        self.activations[name] = tensor
        if self.with_gradients and tensor.requires_grad:

            def keep_grad(grad: Tensor) -> None:
                self.gradients[name] = grad

            self._tensor_handles.append(tensor.register_hook(keep_grad))

    def _hook_for(self, name: str) -> tuple[Any, bool]:
        if self.read == "output":

            def on_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                self._keep(name, output)

            return on_output, False

        def on_input(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self._keep(name, args if _first_tensor(args) is not None else kwargs)

        return on_input, True

    def __enter__(self) -> ActivationHooks:
        if self._active:
            raise RuntimeError("this ActivationHooks is already active; create one per with-block")
        self._active = True
        self.activations.clear()
        self.gradients.clear()
        try:
            for name, module in self.modules.items():
                hook, is_pre = self._hook_for(name)
                if is_pre:
                    self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
                else:
                    self._handles.append(module.register_forward_hook(hook))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in (*self._handles, *self._tensor_handles):
            handle.remove()
        self._handles.clear()
        self._tensor_handles.clear()
        self._active = False

    def grad(
        self,
        outputs: Tensor,
        *,
        names: Sequence[str] | None = None,
        create_graph: bool = False,
    ) -> dict[str, Tensor]:
        """Gradients of ``outputs`` (a scalar, e.g. a summed class score) with respect to recorded tensors.

        Uses :func:`torch.autograd.grad`, so parameter ``.grad`` is never touched.

        Args:
            outputs: a scalar tensor computed from the recorded activations.
            names: which recorded tensors (default: all).
            create_graph: keep the graph of the gradients (for losses on gradient-based maps).

        Returns:
            name -> gradient, each shaped like its activation.

        Raises:
            ValueError: a name that recorded nothing, or an activation that is not in ``outputs``' graph.
        """
        names = list(self.activations) if names is None else list(names)
        missing = [n for n in names if n not in self.activations]
        if missing or not names:
            raise ValueError(
                f"nothing recorded for {missing or 'any module'}; run the forward pass inside the with-block "
                f"(recorded: {sorted(self.activations)})"
            )
        inputs = [self.activations[n] for n in names]
        detached = [n for n, t in zip(names, inputs, strict=True) if not t.requires_grad]
        if detached:
            raise ValueError(
                f"recorded tensors {detached} do not require grad (recorded under torch.no_grad(), or nothing "
                "upstream requires grad); record them with grad enabled"
            )
        grads = torch.autograd.grad(outputs, inputs, create_graph=create_graph, allow_unused=True)
        unused = [n for n, g in zip(names, grads, strict=True) if g is None]
        if unused:
            raise ValueError(f"outputs do not depend on the recorded tensors {unused}")
        return dict(zip(names, grads, strict=True))
