"""Image classification data: scikit-learn's digits, CIFAR-10 (python or binary layout), ImageFolder.

Images are kept as uint8 ``(C, H, W)`` tensors; `ImageBatch` converts a whole batch at once to the
space's ``in_channels`` x ``image_size`` and normalises it, so CIFAR-10 stays 150 MB in memory.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

from denas.data.common import DataBundle, DataError, apply_limit, first, require_path, split_indices
from denas.data.layouts import CIFAR_BIN_LAYOUT, CIFAR_PY_LAYOUT, IMAGE_SUFFIXES, IMAGEFOLDER_LAYOUT


class ImageBatch:
    """Collate uint8 ``(C, H, W)`` images into a float batch of the space's shape."""

    def __init__(self, in_channels: int, image_size: int, mean: float = 0.5, std: float = 0.25):
        self.in_channels, self.image_size, self.mean, self.std = in_channels, image_size, mean, std

    def __call__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([x for x, _ in items]).float().div_(255.0)
        labels = torch.stack([torch.as_tensor(y) for _, y in items]).long()
        return self.fit(images), labels

    def fit(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.in_channels:
            if self.in_channels == 1:
                images = images.mean(dim=1, keepdim=True)
            elif images.shape[1] == 1:
                images = images.expand(-1, self.in_channels, -1, -1)
            else:
                raise DataError(
                    f"cannot map {images.shape[1]}-channel images to in_channels={self.in_channels}"
                )
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return (images - self.mean) / self.std


def _bundle(
    name: str,
    train: Dataset,
    test: Dataset,
    classes: list[str],
    config: dict[str, Any],
    native: tuple[int, int],
    **info: Any,
) -> DataBundle:
    in_channels = int(first(config, ["in_channels"], native[0]))
    image_size = int(first(config, ["image_size", "img_size"], native[1]))
    return DataBundle(
        name=name,
        train=train,
        test=test,
        task="classification",
        collate=ImageBatch(in_channels, image_size),
        space_overrides={"num_classes": len(classes)},
        info={"classes": classes, "train_size": len(train), "test_size": len(test), **info},  # type: ignore[arg-type]
    )


# ----- digits (bundled with scikit-learn) --------------------------------------------------------
def load_digits(
    *, path: str | None, config: dict[str, Any], limit: int | None, seed: int, **_: Any
) -> DataBundle:
    """scikit-learn's 1797 8x8 grey digits; a fixed 80/20 split (``seed``)."""
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    images = torch.from_numpy((raw.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(raw.target.astype(np.int64))
    train_idx, test_idx = split_indices(len(labels), 0.2, seed)
    full = TensorDataset(images, labels)
    train = apply_limit(Subset(full, train_idx), limit, seed)
    return _bundle(
        "digits", train, Subset(full, test_idx), [str(i) for i in range(10)], config, (1, 8), path="sklearn"
    )


# ----- CIFAR-10 -----------------------------------------------------------------------------------
def load_cifar10(
    *, path: str | None, config: dict[str, Any], limit: int | None, seed: int, **_: Any
) -> DataBundle:
    """CIFAR-10 from its python-pickle or binary layout under ``path``."""
    root = require_path(path, "cifar10", CIFAR_PY_LAYOUT)
    py_dir = _find_dir(root, "cifar-10-batches-py", "test_batch")
    bin_dir = _find_dir(root, "cifar-10-batches-bin", "test_batch.bin")
    if py_dir is not None:
        reader, directory, layout = _read_cifar_pickle, py_dir, "python"
        train_files = sorted(py_dir.glob("data_batch_[0-9]"))
        test_file = py_dir / "test_batch"
    elif bin_dir is not None:
        reader, directory, layout = _read_cifar_binary, bin_dir, "binary"
        train_files = sorted(bin_dir.glob("data_batch_[0-9].bin"))
        test_file = bin_dir / "test_batch.bin"
    else:
        raise DataError(f"{root}: no CIFAR-10 data found; expected {CIFAR_PY_LAYOUT}; or {CIFAR_BIN_LAYOUT}")
    if not train_files:
        raise DataError(
            f"{directory}: no data_batch_* files; expected {CIFAR_PY_LAYOUT if layout == 'python' else CIFAR_BIN_LAYOUT}"
        )
    x_train, y_train = _concat([reader(f) for f in train_files])
    x_test, y_test = reader(test_file)
    classes = _cifar_classes(directory)
    train = apply_limit(TensorDataset(x_train, y_train), limit, seed)
    return _bundle(
        "cifar10",
        train,
        TensorDataset(x_test, y_test),
        classes,
        config,
        (3, 32),
        path=str(directory),
        layout=layout,
    )


def _find_dir(root: Path, name: str, marker: str) -> Path | None:
    for candidate in (root / name, root):
        if (candidate / marker).is_file():
            return candidate
    return None


def _read_cifar_pickle(file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(file, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64)
        images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError) as exc:
        raise DataError(f"{file}: not a CIFAR-10 python batch ({exc}); expected {CIFAR_PY_LAYOUT}") from exc
    if len(labels) != len(images):
        raise DataError(f"{file}: {len(images)} images but {len(labels)} labels")
    return images, torch.from_numpy(labels)


def _read_cifar_binary(file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        raw = np.fromfile(file, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{file}: cannot read ({exc}); expected {CIFAR_BIN_LAYOUT}") from exc
    if raw.size == 0 or raw.size % 3073:
        raise DataError(
            f"{file}: size {raw.size} bytes is not a multiple of 3073; expected {CIFAR_BIN_LAYOUT}"
        )
    records = raw.reshape(-1, 3073)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    return torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy()), labels


def _concat(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def _cifar_classes(directory: Path) -> list[str]:
    meta = directory / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as fh:
                names = pickle.load(fh, encoding="bytes")[b"label_names"]
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        except (OSError, pickle.UnpicklingError, KeyError, EOFError):
            pass
    text = directory / "batches.meta.txt"
    if text.is_file():
        names = [line.strip() for line in text.read_text().splitlines() if line.strip()]
        if names:
            return names
    return ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----- ImageFolder ------------------------------------------------------------------------------
class ImageFolder(Dataset):
    """``(uint8 image, label)`` pairs read lazily from image files, resized on read."""

    def __init__(self, files: list[tuple[Path, int]], mode: str, image_size: int):
        self.files, self.mode, self.image_size = files, mode, image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image, UnidentifiedImageError

        file, label = self.files[index]
        try:
            with Image.open(file) as img:
                img = img.convert(self.mode).resize((self.image_size, self.image_size), Image.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{file}: not a readable image ({exc})") from exc
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array.transpose(2, 0, 1).copy()), torch.tensor(label)


def load_imagefolder(
    *, path: str | None, config: dict[str, Any], limit: int | None, seed: int, **_: Any
) -> DataBundle:
    """Class-per-directory images; ``train/`` + ``val/``|``test/`` if present, else an 80/20 split."""
    root = require_path(path, "imagefolder", IMAGEFOLDER_LAYOUT)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; imagefolder expects {IMAGEFOLDER_LAYOUT}")
    in_channels = int(first(config, ["in_channels"], 3))
    image_size = int(first(config, ["image_size", "img_size"], 32))
    mode = "L" if in_channels == 1 else "RGB"
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes = _class_dirs(root / "train")
        train_files, test_files = _scan(root / "train", classes), _scan(test_dir, classes)
    else:
        classes = _class_dirs(root)
        files = _scan(root, classes)
        train_idx, test_idx = split_indices(len(files), 0.2, seed)
        train_files, test_files = [files[i] for i in train_idx], [files[i] for i in test_idx]
    if not train_files:
        raise DataError(
            f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found; expected {IMAGEFOLDER_LAYOUT}"
        )
    train = apply_limit(ImageFolder(train_files, mode, image_size), limit, seed)
    test = ImageFolder(test_files, mode, image_size)
    return _bundle("imagefolder", train, test, classes, config, (in_channels, image_size), path=str(root))


def _class_dirs(directory: Path) -> list[str]:
    classes = sorted(d.name for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{directory}: no class sub-directories; imagefolder expects {IMAGEFOLDER_LAYOUT}")
    return classes


def _scan(directory: Path, classes: list[str]) -> list[tuple[Path, int]]:
    files = []
    for label, name in enumerate(classes):
        for file in sorted((directory / name).rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                files.append((file, label))
    return files
