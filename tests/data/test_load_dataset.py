from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import robustlab.data as data
from robustlab.data import Preprocess, list_datasets, load_dataset


def test_known_names_and_exports() -> None:
    assert list_datasets() == sorted(
        ["digits", "cifar10", "cifar10_exact", "cifar100", "cifar100_sample", "imagenet_sample", "cifar10c",
         "cifar100c"]
    )  # fmt: skip
    assert set(data.describe_datasets()) == set(list_datasets())
    for name in (
        "ImageDataset",
        "ArrayDataset",
        "Subset",
        "Batch",
        "iter_batches",
        "Preprocess",
        "load_dataset",
    ):
        assert name in data.__all__ and hasattr(data, name)


def test_unknown_name_lists_close_matches_and_known_names() -> None:
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar_10'.*Did you mean 'cifar10'.*Known datasets: "):
        load_dataset("cifar_10")


def test_missing_data_folder_says_how_to_point_at_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"cifar10_test\.npz.*ROBUSTLAB_DATA.*--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match=r"imagenet_sample/labels\.csv.*looked for"):
        load_dataset("imagenet_sample", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar10/cifar10_test_exact_first932\.npz"):
        load_dataset("cifar10_exact", data_dir=tmp_path)


def test_missing_path_names_the_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected a \.npz file.*class-per-folder"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("./nope.npz")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unrecognised file"):
        load_dataset(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="unrecognised dataset folder"):
        load_dataset(tmp_path / "empty")


def test_names_resolve_under_data_dir_or_env(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, dg: SimpleNamespace
) -> None:
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar100").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10_test_exact_first932.npz", images=dg.random_images(rng, 3),
             labels=np.array([3, 8, 8]))  # fmt: skip
    np.savez(tmp_path / "cifar100" / "cifar100_test_first20.npz", images=dg.random_images(rng, 2),
             labels=np.array([49, 33]))  # fmt: skip
    exact = load_dataset("cifar10_exact", data_dir=tmp_path)
    assert exact.name == "cifar10_exact" and exact.labels.tolist() == [3, 8, 8]
    assert any("bit-exact" in n for n in exact.info["notes"])
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path))
    sample = load_dataset("cifar100_sample")
    assert sample.name == "cifar100_sample" and sample.num_classes == 100 and sample.labels.tolist() == [49, 33]


def test_imagenet_sample_by_name_has_1000_classes(tmp_path: Path, make_labels_csv) -> None:
    make_labels_csv(root=tmp_path / "imagenet_sample", indices=(0, 2, 999))
    ds = load_dataset("imagenet_sample", data_dir=tmp_path, preprocess={"input_size": (3, 12, 12)})
    assert ds.name == "imagenet_sample" and ds.num_classes == 1000 and ds.targets == [0, 2, 999]
    assert ds.info["preprocess"] == Preprocess(resize=13, crop=12).describe()
    assert ds.get_batch([0, 1, 2])[0].shape == (3, 3, 12, 12)


def test_info_is_json_for_the_store(tmp_path: Path, make_class_folder) -> None:
    root, _ = make_class_folder()
    for ds in (load_dataset("digits"), load_dataset(root, preprocess=Preprocess(resize=8, crop=8))):
        record = json.loads(json.dumps(ds.info))
        assert record["source"] and "preprocess" in record


def test_argument_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", split="validation")
    with pytest.raises(ValueError, match="only the test split"):
        load_dataset("cifar100_sample", split="train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="robustlab.perturb"):
        load_dataset("digits", corruption="fog", severity=1)
    with pytest.raises(ValueError, match="severity"):
        load_dataset("cifar10c", data_dir=tmp_path, corruption="fog", severity=9)
    with pytest.raises(ValueError, match="download=True"):
        load_dataset("imagenet_sample", data_dir=tmp_path, download=True)
    with pytest.raises(ValueError, match="preprocess must be"):
        load_dataset("digits", preprocess=224)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name or a path"):
        load_dataset(3)  # type: ignore[arg-type]


def test_paths_are_detected(tmp_path: Path, rng: np.random.Generator, make_cifar10_batches, make_class_folder,
                            dg: SimpleNamespace) -> None:  # fmt: skip
    folder, _ = make_cifar10_batches(root=tmp_path / "tv")
    assert load_dataset(folder).info["format"] == "cifar-python"
    assert load_dataset(tmp_path / "tv", split="train").split == "train"  # torchvision-style root
    np.savez(tmp_path / "a.npz", images=dg.random_images(rng, 2), labels=np.array([1, 2]))
    assert load_dataset(str(tmp_path / "a.npz")).name == "a"
    root, _ = make_class_folder(root=tmp_path / "classes")
    assert load_dataset(root).info["format"] == "image-folder"
    with pytest.raises(ValueError, match="robustlab.perturb"):
        load_dataset(root, severity=2)
    with pytest.raises(ValueError, match="download=True"):
        load_dataset(root, download=True)
