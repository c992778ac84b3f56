"""Noise on native pixels before the model's resize (the Gaussian-noise study's setup), and the Ray backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import load_dataset
from robustlab.data.preprocess import Preprocess
from robustlab.store import Store
from robustlab.study.noise import PIXEL_NOISE, PixelNoiseDataset, StudyFailed, noise_study


@pytest.fixture()
def folder(tmp_path):
    """Six images of two native sizes (64x64, 48x56) in two class folders: a 32-px model must resize them.

    The folders carry CIFAR-10 class names: a folder set is labelled by the model's class names, by name.
    """
    rng = np.random.default_rng(0)
    for i in range(6):
        size = (64, 64) if i % 2 else (48, 56)
        cls = tmp_path / "imgs" / ("cat" if i < 3 else "dog")
        cls.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(60, 196, size=(*size, 3), dtype=np.uint8)  # away from 0/255: little clipping
        Image.fromarray(pixels).save(cls / f"{i}.png")
    return tmp_path / "imgs"


def test_pixel_noise_is_added_before_the_resize_and_per_sample(folder) -> None:
    native = load_dataset(str(folder))
    pre = Preprocess(resize=32, crop=32, interpolation="bilinear")
    clean = PixelNoiseDataset(native, pre, 0.0, seed=0)
    noisy = PixelNoiseDataset(native, pre, 0.2, seed=0)
    images, labels = clean.get_batch(range(6))
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    # σ = 0 is exactly the float resize of the native image
    first = native.get_batch([1])[0]
    assert torch.equal(images[1:2], pre.apply_tensor(first))
    # a sample's noise does not depend on the batch it is read in
    assert torch.equal(noisy.get_batch([4])[0], noisy.get_batch([2, 4])[0][1:])
    # downsampling 64 -> 32 averages the noise away: well under σ after the resize (the theory's 1/s)
    residual = (noisy.get_batch([1])[0] - images[1:2]).std().item()
    assert 0.05 < residual < 0.6 * 0.2
    # a different seed gives different noise
    assert not torch.equal(PixelNoiseDataset(native, pre, 0.2, seed=1).get_batch([1])[0], noisy.get_batch([1])[0])


def test_noise_study_pixels_resizing_model_stores_pixel_cells_and_resumes(folder, tmp_path) -> None:
    kwargs = {"pretrained": False, "device": "cpu", "batch_size": 4}
    with Store(tmp_path / "r.db") as store:
        first = noise_study(["cifar:small_cnn"], str(folder), "0,0.1,0.5", store=store, **kwargs)
        again = noise_study(["cifar:small_cnn"], str(folder), "0,0.1,0.5", store=store, **kwargs)
        after_resize = noise_study(["cifar:small_cnn"], str(folder), "0,0.1,0.5", store=store, noise_at="input",
                                   **kwargs)  # fmt: skip
        rows = store.results(perturbation=PIXEL_NOISE)
    assert first.new_cells == 3 and again.new_cells == 0 and first.accuracy == again.accuracy
    assert len(rows) == 3 and set(rows["n"]) == {6}
    assert after_resize.new_cells == 3  # the engine's clean + noise cells, a different measurement


def test_noise_study_rejects_unknown_backend(tmp_path) -> None:
    with Store(tmp_path / "r.db") as store, pytest.raises(ValueError, match="backend"):
        noise_study(["cifar:small_cnn"], "digits", "0,0.1", store=store, backend="dask")


@pytest.mark.slow
def test_ray_backend_gives_the_local_numbers_and_reports_failed_models(tmp_path) -> None:
    ray = pytest.importorskip("ray")
    from robustlab.models import create_model, save_checkpoint

    # fixed weights in a file: a random init would differ between this process and the Ray worker
    torch.manual_seed(0)
    net = f"file:{save_checkpoint(create_model('cifar:small_cnn', pretrained=False), tmp_path / 'net.safetensors')}"
    kwargs = {"n": 16, "batch_size": 16, "device": "cpu"}
    with Store(tmp_path / "local.db") as store:
        local = noise_study([net], "digits", "0,0.2", store=store, **kwargs)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with Store(tmp_path / "ray.db") as store:
            with pytest.raises(StudyFailed, match="cifar:no_such_net") as info:
                noise_study([net, "cifar:no_such_net"], "digits", "0,0.2", store=store,
                            backend="ray", retries=1, **kwargs)  # fmt: skip
            # the finished model's cells were written by the driver before the failure was raised
            assert info.value.study.accuracy == local.accuracy
            assert len(store.results(model=net)) == 2
            # the worker's attributes reach the driver's store with its cells
            assert store.attributes(model=net)[net]["stem_kernel"] == 3
            assert "cifar:no_such_net" in info.value.study.failed
            resumed = noise_study([net], "digits", "0,0.2", store=store, backend="ray", **kwargs)
    finally:
        ray.shutdown()
    assert resumed.new_cells == 0 and resumed.accuracy == local.accuracy
