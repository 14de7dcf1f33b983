"""Vision data: digits, CIFAR-10 (python and binary layouts), ImageFolder, and clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from denas.data import DataError, load_dataset
from tests.train_support import one_thread  # noqa: F401


def _cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    labels = [i % 10 for i in range(n)]
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[:, 0] = np.array(labels) * 20  # a recognisable pixel: the label survives the round trip
    return data, labels


def write_cifar_pickle(root, n_per_batch: int = 10) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, seed in [*((f"data_batch_{i}", i) for i in range(1, 6)), ("test_batch", 9)]:
        data, labels = _cifar_arrays(n_per_batch, seed)
        with open(d / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels}, fh)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)


def write_cifar_binary(root, n_per_batch: int = 10) -> None:
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    for name, seed in [*((f"data_batch_{i}.bin", i) for i in range(1, 6)), ("test_batch.bin", 9)]:
        data, labels = _cifar_arrays(n_per_batch, seed)
        np.concatenate([np.array(labels, dtype=np.uint8)[:, None], data], axis=1).tofile(d / name)


def test_digits_fit_the_space_shape():
    bundle = load_dataset("digits", config={"in_channels": 3, "image_size": 16})
    x, y = bundle.collate([bundle.train[i] for i in range(5)])
    assert x.shape == (5, 3, 16, 16) and y.dtype == torch.long
    assert bundle.info["train_size"] + bundle.info["test_size"] == 1797
    assert bundle.space_overrides == {"num_classes": 10}


def test_digits_limit_and_split_are_deterministic():
    a = load_dataset("digits", config={}, limit=50, seed=3)
    b = load_dataset("digits", config={}, limit=50, seed=3)
    assert len(a.train) == 50
    assert torch.equal(a.train[7][0], b.train[7][0])


@pytest.mark.parametrize("writer, layout", [(write_cifar_pickle, "python"), (write_cifar_binary, "binary")])
def test_cifar10_layouts(tmp_path, writer, layout):
    writer(tmp_path)
    bundle = load_dataset("cifar10", path=str(tmp_path), config={"in_channels": 3, "image_size": 32})
    assert bundle.info["layout"] == layout
    assert (len(bundle.train), len(bundle.test)) == (50, 10)
    image, label = bundle.train[13]
    assert image.shape == (3, 32, 32) and int(image[0, 0, 0]) == int(label) * 20
    x, _ = bundle.collate([bundle.train[i] for i in range(4)])
    assert x.shape == (4, 3, 32, 32)


def test_cifar10_grey_small_space(tmp_path):
    write_cifar_pickle(tmp_path)
    bundle = load_dataset(
        "cifar10", path=str(tmp_path / "cifar-10-batches-py"), config={"in_channels": 1, "image_size": 8}
    )
    x, _ = bundle.collate([bundle.train[i] for i in range(2)])
    assert x.shape == (2, 1, 8, 8)
    assert bundle.info["classes"][0] == "c0"


def _write_images(directory, classes=("cat", "dog"), n=5, size=12, mode="RGB"):
    for k, cls in enumerate(classes):
        (directory / cls).mkdir(parents=True)
        for i in range(n):
            colour = (k * 200, 50, 50) if mode == "RGB" else k * 200
            Image.new(mode, (size, size + i), colour).save(
                directory / cls / f"{i}.{'png' if i % 2 else 'jpg'}"
            )


def test_imagefolder_with_class_dirs_only(tmp_path):
    _write_images(tmp_path)
    bundle = load_dataset("imagefolder", path=str(tmp_path), config={"in_channels": 3, "image_size": 16})
    assert len(bundle.train) + len(bundle.test) == 10
    assert bundle.info["classes"] == ["cat", "dog"] and bundle.space_overrides == {"num_classes": 2}
    x, y = bundle.collate([bundle.train[i] for i in range(len(bundle.train))])
    assert x.shape == (len(bundle.train), 3, 16, 16)
    # class 1 images are much redder than class 0 ones
    red = x[:, 0].mean(dim=(1, 2))
    assert red[y == 1].min() > red[y == 0].max()


def test_imagefolder_train_val_tree_grey(tmp_path):
    _write_images(tmp_path / "train", n=4, mode="L")
    _write_images(tmp_path / "val", n=2, mode="L")
    bundle = load_dataset("imagefolder", path=str(tmp_path), config={"in_channels": 1, "image_size": 8})
    assert (len(bundle.train), len(bundle.test)) == (8, 4)
    assert bundle.train[0][0].shape == (1, 8, 8)


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("cifar10", lambda p: None, "no such file or directory"),
        ("cifar10", lambda p: p.mkdir(), "no CIFAR-10 data found"),
        ("cifar10", lambda p: (p.mkdir(), (p / "test_batch").write_bytes(b"junk")), "data_batch"),
        ("imagefolder", lambda p: p.mkdir(), "no class sub-directories"),
        ("imagefolder", lambda p: (p.mkdir(), (p / "cat").mkdir()), "no images"),
    ],
)
def test_bad_paths_name_the_path_and_the_layout(tmp_path, name, make, message):
    path = tmp_path / "data"
    make(path)
    with pytest.raises(DataError) as info:
        load_dataset(name, path=str(path), config={})
    assert message in str(info.value) and str(path) in str(info.value)
    assert "expect" in str(info.value)


def test_corrupt_cifar_pickle_is_reported(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(b"not a pickle")
    (d / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR-10 python batch"):
        load_dataset("cifar10", path=str(tmp_path), config={})


def test_missing_path_and_unknown_name():
    with pytest.raises(DataError, match="spec.training.dataset.path"):
        load_dataset("cifar10", config={})
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset("mnist", config={})


@pytest.mark.parametrize("domain, dataset", [("vit", "digits"), ("nb201", "cifar10"), ("cnn", "imagefolder")])
def test_each_vision_space_trains_on_each_layout(tmp_path, domain, dataset):
    import json
    import random

    from denas.spaces import get
    from denas.train.command import main
    from tests.train_support import write_job

    path = None
    if dataset == "cifar10":
        write_cifar_pickle(tmp_path / "cifar")
        path = str(tmp_path / "cifar")
    elif dataset == "imagefolder":
        _write_images(tmp_path / "imgs", n=6)
        path = str(tmp_path / "imgs")
    overrides = {"preset": "tiny"}
    structure = get(domain, overrides).sample(random.Random(0))
    spec_dataset = {"name": dataset, "limit": 64} | ({"path": path} if path else {})
    job = write_job(tmp_path, domain, overrides, epochs=1, batchSize=16, dataset=spec_dataset)
    assert main([str(job), "--structure", json.dumps(structure), "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == dataset and metrics["domain"] == domain
    assert 0.0 <= metrics["metric"] <= 1.0 and metrics["loss"] > 0
