from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import (
    FolderDataset,
    Preprocess,
    iter_batches,
    list_imagenet_c_corruptions,
    load_coop_split,
    load_dataset,
    load_image_folder,
    load_imagenet_c,
    load_labels_csv_folder,
)

MODEL_224 = {"input_size": (3, 224, 224), "crop_pct": 0.875, "interpolation": "bicubic"}


def _as_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float() / 255


# ------------------------------------------------------------------------------------------ class folders
def test_class_folder_sorted_classes_exact_pixels(make_class_folder) -> None:
    root, pixels = make_class_folder(classes=("n02", "n01", "n03"), per_class=2)
    (root / "n01" / "notes.txt").write_text("not an image")
    (root / "n01" / ".hidden.png").write_bytes(b"")
    ds = load_image_folder(root)
    assert isinstance(ds, FolderDataset)
    assert ds.class_names == ["n01", "n02", "n03"] and ds.class_ids == ["n01", "n02", "n03"]
    assert ds.name == "folder" and len(ds) == 6
    assert [f.relative_to(root).as_posix() for f in ds.files] == [
        f"{c}/img_{i}.png" for c in ("n01", "n02", "n03") for i in range(2)
    ]
    images, labels = ds.get_batch(range(6))
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    for k, path in enumerate(ds.files):
        assert torch.equal(images[k], _as_float(pixels[path]))
    assert ds.info["preprocess"] is None and ds.info["format"] == "image-folder"


def test_fixed_class_list_keeps_indices_when_classes_are_missing(make_class_folder) -> None:
    root, _ = make_class_folder(classes=("b", "d"), per_class=1)
    ds = load_image_folder(root, classes=["a", "b", "c", "d"], class_names=["A", "B", "C", "D"])
    assert ds.targets == [1, 3] and ds.class_names == ["A", "B", "C", "D"]


def test_streaming_with_two_workers_matches_in_process(make_class_folder) -> None:
    root, _ = make_class_folder(classes=("a", "b", "c"), per_class=3)
    ds = load_image_folder(root)
    serial = list(iter_batches(ds, batch_size=4))
    workers = list(iter_batches(ds, batch_size=4, num_workers=2))
    assert [b.indices.tolist() for b in workers] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    for a, b in zip(serial, workers, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_mixed_sizes_need_a_preprocess(make_class_folder) -> None:
    root, _ = make_class_folder(classes=("a", "b"), per_class=2, sizes=((20, 24), (31, 17)))
    ds = load_image_folder(root)
    with pytest.raises(ValueError, match="equal sizes.*Preprocess"):
        ds.get_batch([0, 1])
    p = Preprocess(resize=16, crop=14)
    pre = load_image_folder(root, preprocess=p)
    assert pre.info["preprocess"] == p.describe()
    images, _ = pre.get_batch(range(4))
    assert images.shape == (4, 3, 14, 14)
    with Image.open(pre.files[1]) as im:
        expected = np.asarray(p(im.convert("RGB")))
    assert torch.equal(images[1], _as_float(expected))
    # with_preprocess replaces, never composes
    assert torch.equal(pre.with_preprocess(p).get_batch(range(4))[0], images)


def test_grey_and_rgba_files_become_rgb(tmp_path: Path, dg: SimpleNamespace) -> None:
    Image.fromarray(np.full((6, 6), 77, np.uint8), "L").save(tmp_path / "a.png")
    Image.fromarray(np.full((6, 6, 4), 200, np.uint8), "RGBA").save(tmp_path / "b.png")
    (tmp_path / "x").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / name).rename(tmp_path / "x" / name)
    images, _ = load_image_folder(tmp_path).get_batch([0, 1])
    assert images.shape == (2, 3, 6, 6)
    assert torch.all(images[0] == 77 / 255) and torch.all(images[1] == 200 / 255)


def test_corrupt_image_raises_naming_the_file(make_class_folder) -> None:
    root, _ = make_class_folder(classes=("a",), per_class=2, suffix=".jpg")
    bad = root / "a" / "img_1.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    ds = load_image_folder(root)
    ds.get_batch([0])
    with pytest.raises(ValueError, match=r"img_1\.jpg: not a decodable image"):
        ds.get_batch([0, 1])


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="class-per-folder"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path)


# ------------------------------------------------------------------------------------------ ImageNet-C
def test_imagenet_c_tree_layout_and_labels(make_imagenet_c) -> None:
    root = make_imagenet_c(wnids=("n01443537", "n01440764"), per_class=2)
    assert list_imagenet_c_corruptions(root) == ["fog", "gaussian_noise"]
    ds = load_imagenet_c(root, "fog", 3)
    assert ds.name == "imagenet_c" and ds.pre_cropped
    assert ds.info["corruption"] == "fog" and ds.info["severity"] == 3 and ds.info["format"] == "imagenet-c"
    assert ds.class_names == ["n01440764", "n01443537"]
    assert ds.targets == [0, 0, 1, 1]
    assert all(f.parent.parent == root / "fog" / "3" for f in ds.files)
    assert ds.get_batch([0, 3])[0].shape == (2, 3, 224, 224)


def test_imagenet_c_preprocess_is_recorded_but_never_applied(make_imagenet_c) -> None:
    root = make_imagenet_c()
    plain = load_imagenet_c(root, "gaussian_noise", 1)
    p = Preprocess.from_config(MODEL_224)  # resize 256, crop 224: would blur the pre-cropped images
    ds = load_imagenet_c(root, "gaussian_noise", 1, preprocess=p)
    assert ds.preprocess is None and ds.info["preprocess"] is None
    assert ds.info["preprocess_requested"] == p.describe() and ds.info["pre_cropped"] is True
    assert torch.equal(ds.get_batch([0, 1])[0], plain.get_batch([0, 1])[0])
    again = ds.with_preprocess(p)
    assert again.preprocess is None and torch.equal(again.get_batch([0])[0], plain.get_batch([0])[0])
    by_path = load_dataset(root, corruption="gaussian_noise", severity=1, preprocess=MODEL_224)
    assert by_path.pre_cropped and torch.equal(by_path.get_batch([1])[0], plain.get_batch([1])[0])


def test_imagenet_c_refuses_other_model_sizes(make_imagenet_c) -> None:
    root = make_imagenet_c()
    with pytest.raises(ValueError, match="pre-cropped to 224x224.*256x256"):
        load_imagenet_c(root, "fog", 1, preprocess=Preprocess.from_config({"input_size": (3, 256, 256)}))
    ds = load_imagenet_c(root, "fog", 1)
    with pytest.raises(ValueError, match="pre-cropped"):
        ds.with_preprocess(Preprocess(crop=200))


def test_imagenet_c_errors(make_imagenet_c) -> None:
    root = make_imagenet_c(severities=(1,))
    with pytest.raises(ValueError, match="Did you mean 'gaussian_noise'"):
        load_imagenet_c(root, "gaussian_nosie", 1)
    with pytest.raises(FileNotFoundError, match="no severity 4"):
        load_imagenet_c(root, "fog", 4)
    with pytest.raises(ValueError, match="severity"):
        load_imagenet_c(root, "fog", 6)
    with pytest.raises(FileNotFoundError, match="ImageNet-C"):
        load_imagenet_c(root / "nothing", "fog", 1)


def test_imagenet_c_paths_are_detected_at_every_level(make_imagenet_c) -> None:
    root = make_imagenet_c()
    for path, kwargs in [
        (root, {"corruption": "fog", "severity": 3}),
        (root / "fog", {"severity": 3}),
        (root / "fog" / "3", {}),
    ]:
        ds = load_dataset(path, **kwargs)
        assert ds.pre_cropped and ds.info["corruption"] == "fog" and ds.info["severity"] == 3, path
    with pytest.raises(ValueError, match="pass corruption= and severity=.*fog, gaussian_noise"):
        load_dataset(root)
    with pytest.raises(ValueError, match="severity 3"):
        load_dataset(root / "fog" / "3", severity=1)


# ------------------------------------------------------------------------------------------ labels.csv
def test_labels_csv_folder(make_labels_csv) -> None:
    root, rows = make_labels_csv(indices=(0, 1, 7))
    ds = load_labels_csv_folder(root)
    assert ds.targets == [0, 1, 7] and ds.num_classes == 8
    assert ds.class_names[7] == "name7" and ds.class_names[3] == "class_3"
    assert ds.class_ids is not None and ds.class_ids[7] == "n00000007"
    assert [f.name for f in ds.files] == [r["file"] for r in rows]
    assert load_labels_csv_folder(root, num_classes=1000).num_classes == 1000
    assert load_dataset(root).targets == [0, 1, 7]
    assert load_dataset(root / "labels.csv").targets == [0, 1, 7]


@pytest.mark.parametrize(
    ("header", "row", "error", "match"),
    [
        ("file,label", "a.png,0", ValueError, "missing column"),
        ("file,class_index", "a.png,zero", ValueError, "labels.csv:2: class_index must be an integer"),
        ("file,class_index", "a.png,-1", ValueError, ">= 0"),
        ("file,class_index", "nothere.png,0", FileNotFoundError, "nothere.png"),
    ],
)
def test_labels_csv_errors(tmp_path: Path, dg: SimpleNamespace, header: str, row: str, error, match: str) -> None:
    dg.write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "labels.csv").write_text(f"{header}\n{row}\n")
    with pytest.raises(error, match=match):
        load_labels_csv_folder(tmp_path)


def _coop_tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    entries = []
    for i, (label, name) in enumerate([(1, "dog_house"), (0, "cat"), (1, "dog_house")]):
        Image.fromarray(np.full((6, 8, 3), 40 * i, dtype=np.uint8)).save(root / "a" / f"{i}.png")
        entries.append([f"a/{i}.png", label, name])
    split = tmp_path / "split_zhou_Toy.json"
    split.write_text(json.dumps({"train": entries[:1], "val": [], "test": entries}))
    return root, split


def test_coop_split_file_lists_its_images_labels_and_class_names(tmp_path: Path) -> None:
    root, split = _coop_tree(tmp_path)
    data = load_coop_split(root, split)
    assert (data.name, data.split, len(data)) == ("Toy", "test", 3)
    assert data.class_names == ["cat", "dog house"]
    images, labels = data.get_batch([0, 1, 2])
    assert labels.tolist() == [1, 0, 1] and images.shape == (3, 3, 6, 8)
    assert abs(float(images[2].mean()) - 80 / 255) < 1e-6
    train = load_coop_split(root, split, "train")  # one image of class 1: the class names still come from all splits
    assert len(train) == 1 and train.class_names == ["cat", "dog house"]


def test_coop_split_file_errors_name_the_problem(tmp_path: Path) -> None:
    root, split = _coop_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_coop_split(root, tmp_path / "absent.json")
    with pytest.raises(ValueError, match="expected"):
        load_coop_split(root, split, "holdout")
    (root / "a" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match="1 images of .* are missing"):
        load_coop_split(root, split)
