"""Explicit random number generation (DESIGN.md, contract 3).

Library code never touches global RNG state. Values are drawn on a CPU generator and moved to the target device,
so the same seed gives the same values on CPU and CUDA. :func:`sample_generators` derives one generator per sample
from ``(seed, *keys, sample_index)``, so a sample's randomness does not depend on its batch, batch size or model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator] | None
"""What every stochastic function's keyword-only ``generator=`` accepts: one generator for the batch, one per
sample (so a sample's randomness does not depend on its batch), or ``None`` for torch's default generator."""


def derive_seed(*keys: object) -> int:
    """A stable 63-bit seed from any printable keys (stable across processes, unlike ``hash``)."""
    text = "\x1f".join(repr(k) for k in keys)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)


def make_generator(seed: int | None = None, *keys: object) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and optional extra keys; ``seed=None`` seeds from OS entropy."""
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(derive_seed(seed, *keys) if keys else int(seed))
    return g


def sample_generators(seed: int, indices: Sequence[int] | Tensor, *keys: object) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from ``(seed, *keys, index)``."""
    idx = indices.tolist() if isinstance(indices, Tensor) else list(indices)
    return [make_generator(seed, *keys, int(i)) for i in idx]


def _draw(
    kind: str,
    shape: Sequence[int],
    generator: Generators,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    fn = torch.rand if kind == "rand" else torch.randn
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        # per-sample generators: the first dimension is the sample
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        parts = [fn(tuple(shape[1:]), generator=g, dtype=torch.float32) for g in generator]
        out = torch.stack(parts) if parts else torch.empty(tuple(shape), dtype=torch.float32)
    else:
        gen = generator
        if gen is not None and gen.device.type != "cpu":
            return fn(tuple(shape), generator=gen, device=gen.device, dtype=dtype).to(device)
        out = fn(tuple(shape), generator=gen, dtype=torch.float32)
    return out.to(device=device, dtype=dtype)


def rand(
    shape: Sequence[int],
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform [0, 1) values drawn on CPU (or per sample), then moved to ``device``.

    Args:
        shape: output shape.
        generator: one generator, a list with one generator per leading index, or None (global default).
        device: target device.
        dtype: target dtype.
    """
    return _draw("rand", shape, generator, device, dtype)


def randn(
    shape: Sequence[int],
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal values drawn on CPU (or per sample), then moved to ``device``. See :func:`rand`."""
    return _draw("randn", shape, generator, device, dtype)


def uniform(
    shape: Sequence[int],
    low: float,
    high: float,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform [low, high) values; see :func:`rand`."""
    return low + (high - low) * rand(shape, generator=generator, device=device, dtype=dtype)


def randint(
    low: int,
    high: int,
    shape: Sequence[int],
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Integers uniform in ``[low, high)`` (int64), drawn on CPU (or per sample), then moved to ``device``."""
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        parts = [torch.randint(low, high, tuple(shape[1:]), generator=g) for g in generator]
        out = torch.stack(parts) if parts else torch.empty(tuple(shape), dtype=torch.int64)
    elif generator is not None and generator.device.type != "cpu":
        return torch.randint(low, high, tuple(shape), generator=generator, device=generator.device).to(device)
    else:
        out = torch.randint(low, high, tuple(shape), generator=generator)
    return out.to(device)


def poisson(
    rates: Tensor,
    *,
    generator: Generators = None,
) -> Tensor:
    """Poisson samples with the given ``rates``, drawn on CPU (per sample along dim 0 for a generator list).

    Returns a float tensor on ``rates``' device and dtype.
    """
    cpu = rates.detach().to("cpu", torch.float32)
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        if len(generator) != cpu.shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {cpu.shape[0]}")
        parts = [torch.poisson(r, generator=g) for r, g in zip(cpu, generator, strict=True)]
        out = torch.stack(parts) if parts else torch.empty_like(cpu)
    else:
        out = torch.poisson(cpu, generator=generator)
    return out.to(device=rates.device, dtype=rates.dtype)


def generator_list(generator: Generators, n: int) -> list[torch.Generator | None]:
    """One entry per sample: the given list, or the single generator (or None) repeated ``n`` times.

    Useful when a random parameter must be drawn per sample (an angle, a crop offset) in a way that also works when
    the caller passes one generator for the whole batch.
    """
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        if len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for a batch of {n}")
        return list(generator)
    return [generator] * n
