"""Dataset base types: every reader yields ``images`` float [0, 1] ``(N, 3, H, W)`` and ``labels`` int64."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from robustlab.data.preprocess import Preprocess


class Batch(NamedTuple):
    """One batch: dataset ``indices`` (for per-sample generators), ``images`` and ``labels``.

    Shape:
        indices ``(N,)`` int64, images ``(N, C, H, W)`` float32 in [0, 1], labels ``(N,)`` int64.
    """

    indices: Tensor
    images: Tensor
    labels: Tensor


class ImageDataset(Dataset):
    """Map-style dataset of ``(image (C, H, W) float32 in [0, 1], label int)``.

    Subclasses set ``name``, ``split``, ``class_names`` and ``info`` (where the data came from and any
    preprocessing applied, recorded in the store), and implement ``__len__`` and ``__getitem__``. Readers
    that hold their data in memory override :meth:`get_batch` with a vectorised version. ``pre_cropped``
    marks benchmark images already at their evaluation size (ImageNet-C): they are never resized or cropped
    again.
    """

    name: str = "dataset"
    split: str = "test"
    pre_cropped: bool = False
    class_names: list[str]
    info: dict[str, Any]

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def get_batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Images ``(N, C, H, W)`` and labels ``(N,)`` for ``indices``."""
        items = [self[int(i)] for i in indices]
        images = torch.stack([im for im, _ in items])
        labels = torch.tensor([lab for _, lab in items], dtype=torch.int64)
        return images, labels

    def original_indices(self, positions: Sequence[int]) -> list[int]:
        """The sample indices reported in batches for ``positions`` of this dataset (views map them back)."""
        return [int(i) for i in positions]

    def with_preprocess(self, preprocess: Preprocess | None) -> ImageDataset:
        """A view of this dataset with ``preprocess`` replacing (never composing with) the current one.

        Raises:
            ValueError: this dataset type cannot be preprocessed.
        """
        raise ValueError(f"{self.name}: {type(self).__name__} does not support preprocessing")

    # DataLoader calls __getitems__ with a whole batch of indices when present (torch >= 2.0)
    def __getitems__(self, indices: list[int]) -> Batch:
        images, labels = self.get_batch(indices)
        return Batch(torch.as_tensor(self.original_indices(indices), dtype=torch.int64), images, labels)


def _to_float_nchw(images: np.ndarray | Tensor) -> Tensor:
    if isinstance(images, np.ndarray):
        array = np.ascontiguousarray(images)
        # torch warns on read-only buffers (PIL pixels, memory maps); the float conversion copies anyway
        t = torch.from_numpy(array if array.flags.writeable else array.copy())
    else:
        t = images
    if t.dtype == torch.uint8:
        # HWC uint8 as stored on disk -> CHW float
        return t.permute(0, 3, 1, 2).float().div_(255.0)
    return t.float()


class ArrayDataset(ImageDataset):
    """An in-memory dataset over uint8 ``(N, H, W, C)`` arrays or float ``(N, C, H, W)`` tensors.

    Args:
        images: uint8 HWC pixels (as stored by CIFAR files) or float CHW pixels in [0, 1].
        labels: integer labels ``(N,)``.
        class_names: one name per class.
        name: dataset name recorded in the store.
        split: split name recorded in the store.
        info: provenance recorded in the store.
        preprocess: resize / crop applied per batch (uint8 images through PIL, exactly like timm; float images
            through :meth:`Preprocess.apply_tensor`). Recorded in ``info["preprocess"]``.

    Raises:
        ValueError: wrong rank, channel layout or a label count that does not match the images.
    """

    def __init__(
        self,
        images: np.ndarray | Tensor,
        labels: np.ndarray | Tensor | Sequence[int],
        *,
        class_names: Sequence[str],
        name: str,
        split: str = "test",
        info: dict[str, Any] | None = None,
        preprocess: Preprocess | None = None,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"{name}: images must be 4-D (N, H, W, C) uint8 or (N, C, H, W) float, got {images.shape}")
        is_uint8 = (images.dtype == np.uint8) if isinstance(images, np.ndarray) else images.dtype == torch.uint8
        if is_uint8 and images.shape[-1] not in (1, 3):
            raise ValueError(f"{name}: uint8 images must be (N, H, W, C) with C in (1, 3), got {images.shape}")
        if not is_uint8 and images.shape[1] not in (1, 3):
            raise ValueError(f"{name}: float images must be (N, C, H, W) with C in (1, 3), got {tuple(images.shape)}")
        self._images = images
        self._uint8 = is_uint8
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if len(self.labels) != len(images):
            raise ValueError(f"{name}: {len(images)} images but {len(self.labels)} labels")
        self.class_names = list(class_names)
        self.name = name
        self.split = split
        self.preprocess = preprocess
        self.info = dict(info or {})
        self.info["preprocess"] = preprocess.describe() if preprocess is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def with_preprocess(self, preprocess: Preprocess | None) -> ArrayDataset:
        """The same arrays (not copied) with ``preprocess`` replacing the current preprocessing."""
        return ArrayDataset(
            self._images,
            self.labels,
            class_names=self.class_names,
            name=self.name,
            split=self.split,
            info=self.info,
            preprocess=preprocess,
        )

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        images, labels = self.get_batch([index])
        return images[0], int(labels[0])

    def get_batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        idx = np.asarray(indices.tolist() if isinstance(indices, Tensor) else indices, dtype=np.int64)
        raw = self._images[idx] if isinstance(self._images, np.ndarray) else self._images[torch.from_numpy(idx)]
        if self.preprocess is not None and self._uint8:
            # PIL per image: the same pixels timm's eval transform produces from these uint8 images
            arr = raw if isinstance(raw, np.ndarray) else raw.numpy()
            channels = arr.shape[-1]
            out = [
                np.asarray(self.preprocess(Image.fromarray(a[..., 0] if channels == 1 else a))).reshape(
                    *self.preprocess.output_size(a.shape[:2]), channels
                )
                for a in arr
            ]
            images = _to_float_nchw(np.stack(out))
        else:
            images = _to_float_nchw(raw)
            if self.preprocess is not None:
                images = self.preprocess.apply_tensor(images)
        return images, self.labels[torch.from_numpy(idx)]


class Subset(ImageDataset):
    """A view of the given indices of a dataset, keeping the original indices in batches.

    ``subset[i]`` is ``dataset[indices[i]]``; :class:`Batch` es from :func:`iter_batches` report
    ``indices[i]``, so per-sample generators give a sample the same randomness in the subset as in the whole
    dataset.
    """

    def __init__(self, dataset: ImageDataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.name = dataset.name
        self.split = dataset.split
        self.class_names = dataset.class_names
        self.pre_cropped = dataset.pre_cropped
        self.info = dict(dataset.info, subset=len(self.indices))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.dataset[self.indices[index]]

    def get_batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        return self.dataset.get_batch([self.indices[int(i)] for i in indices])

    def original_indices(self, positions: Sequence[int]) -> list[int]:
        return self.dataset.original_indices([self.indices[int(i)] for i in positions])

    def with_preprocess(self, preprocess: Preprocess | None) -> Subset:
        """The same subset of ``dataset.with_preprocess(preprocess)``."""
        return Subset(self.dataset.with_preprocess(preprocess), self.indices)


def head(dataset: ImageDataset, n: int | None) -> ImageDataset:
    """The first ``n`` samples as a :class:`Subset` named ``"<name>[:n]"`` (the name the store records), or the
    dataset itself when ``n`` is None or not smaller than its length.

    Raises:
        ValueError: ``n`` < 1.
    """
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    subset = Subset(dataset, range(n))
    subset.name = f"{dataset.name}[:{n}]"
    return subset


def _identity(batch: Batch) -> Batch:
    return batch


def iter_batches(
    dataset: ImageDataset,
    batch_size: int = 128,
    *,
    indices: Sequence[int] | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """Stream ``dataset`` in order as :class:`Batch` es without loading it whole.

    Args:
        dataset: any :class:`ImageDataset`.
        batch_size: samples per batch.
        indices: the dataset indices to visit (default: all, in order). Batches report these indices
            (mapped back to the underlying dataset for a :class:`Subset`).
        num_workers: DataLoader worker processes (useful for image folders that decode JPEGs).
        pin_memory: pin batches for faster host-to-GPU copies.

    Returns:
        An iterator of :class:`Batch` in the order of ``indices``.

    Shape:
        images ``(B, C, H, W)`` float in [0, 1], labels and indices ``(B,)`` int64, ``B <= batch_size``.

    Raises:
        ValueError: ``batch_size`` < 1, ``num_workers`` < 0 or an index outside the dataset.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    bad = [i for i in order if not 0 <= i < len(dataset)]
    if bad:
        raise ValueError(f"indices must lie in [0, {len(dataset)}) for {dataset.name}, got {bad[:5]}")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if num_workers == 0:
        for chunk in chunks:
            images, labels = dataset.get_batch(chunk)
            yield Batch(torch.as_tensor(dataset.original_indices(chunk), dtype=torch.int64), images, labels)
        return
    # the sampler hands whole index lists to __getitems__, so decoding happens batched inside workers; torch
    # types collate_fn's input as a list of samples, but with __getitems__ it receives the Batch returned
    loader = DataLoader(
        dataset,
        batch_sampler=chunks,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=_identity,  # type: ignore[arg-type]
    )
    yield from loader


def fit_to_model(dataset: ImageDataset, data_config: dict[str, Any]) -> ImageDataset:
    """The dataset as a model expects it: resized and centre-cropped by the model's own config when needed.

    In-memory arrays already at the model's input size are returned unchanged (CIFAR into a 32-px model);
    pre-cropped benchmark trees (ImageNet-C) are never resized again; everything else gets
    :meth:`Preprocess.from_config` of the model's ``data_config`` (recorded in ``dataset.info``).

    Args:
        dataset: the loaded dataset.
        data_config: the model's timm-style config (``Classifier.data_config``).
    """
    from robustlab.data.preprocess import Preprocess

    if dataset.pre_cropped or len(dataset) == 0:
        return dataset
    height, width = (int(v) for v in data_config["input_size"][-2:])
    if isinstance(dataset, ArrayDataset) or (isinstance(dataset, Subset) and isinstance(dataset.dataset, ArrayDataset)):
        first, _ = dataset.get_batch([0])
        if tuple(first.shape[-2:]) == (height, width):
            return dataset
    return dataset.with_preprocess(Preprocess.from_config(data_config))
