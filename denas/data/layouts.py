"""What each data set expects on disk, and a quick check of it before any work starts.

The loaders (vision.py, text.py, speech.py) read the data; this module only looks: is the
path there, readable, and shaped like the layout the loader expects? It reads a directory
listing and at most one small file, so `denas validate` can run it on a mounted data set of any
size in milliseconds, and it imports no torch (the operator and `denas validate` use it).

`dataset_problems(dataset, local=...)` returns one line per problem, field path first, with the
expected layout and the fix. Path existence and layout only make sense where the path is
resolved: locally (`denas run`, `denas validate`); on a cluster the path is inside the pod, so
the operator (``local=False``) only checks that a path is given where the data set needs one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Training data is missing or malformed. The message names the path and the expected layout."""


CIFAR_PY_LAYOUT = (
    "a directory 'cifar-10-batches-py' (or the path itself) holding the python pickles "
    "data_batch_1..data_batch_5 and test_batch, each a dict with b'data' (N x 3072 uint8) and b'labels'"
)
CIFAR_BIN_LAYOUT = (
    "a directory 'cifar-10-batches-bin' holding data_batch_1.bin..data_batch_5.bin and test_batch.bin, "
    "records of 1 label byte + 3072 pixel bytes"
)
IMAGEFOLDER_LAYOUT = (
    "one sub-directory per class holding PNG/JPEG files (<path>/<class>/<image>.png), or "
    "<path>/train/<class>/... with <path>/val/<class>/... (or test/)"
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
SQUAD_LAYOUT = (
    "a SQuAD v1.1 JSON file ({'data': [{'paragraphs': [{'context', 'qas': [{'id', 'question', "
    "'answers': [{'text', 'answer_start'}]}]}]}]}), or a directory holding train-v1.1.json (and dev-v1.1.json)"
)
TOKENIZER_LAYOUT = (
    "a local directory with a WordPiece vocab.txt (or tokenizer.json), or the vocab.txt file itself"
)
LIBRISPEECH_LAYOUT = (
    "<path>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt with one '<utterance-id> TRANSCRIPT' "
    "line per <utterance-id>.flac beside it (splits named train-*, dev-*, test-*), or one split directory itself"
)
SPOKEN_WORDS_LAYOUT = "<path>/<word>/<clip>.wav (one directory per word; e.g. made by denas.data.speech.synthesize_spoken_words)"


@dataclass(frozen=True)
class Layout:
    """What one data set needs: a path (and its shape), a tokenizer."""

    description: str
    #: looks at an existing, readable path; raises DataError naming what is wrong (None: no path)
    check: Callable[[Path], None] | None = None
    needs_tokenizer: bool = False

    @property
    def needs_path(self) -> bool:
        return self.check is not None


def _is_dir(root: Path, layout: str) -> None:
    if not root.is_dir():
        raise DataError(f"is a file, not a directory; expected {layout}")


def _check_cifar10(root: Path) -> None:
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise DataError(
            f"is the CIFAR-10 archive; extract it (tar xzf {root} -C {root.parent}) and set the path to "
            f"{root.parent / 'cifar-10-batches-py'}"
        )
    _is_dir(root, CIFAR_PY_LAYOUT)
    for name, marker, batch, layout in (
        ("cifar-10-batches-py", "test_batch", "data_batch_[0-9]", CIFAR_PY_LAYOUT),
        ("cifar-10-batches-bin", "test_batch.bin", "data_batch_[0-9].bin", CIFAR_BIN_LAYOUT),
    ):
        for directory in (root / name, root):
            if (directory / marker).is_file():
                if not any(directory.glob(batch)):
                    raise DataError(f"{directory} has {marker} but no {batch} files; expected {layout}")
                return
    raise DataError(f"no CIFAR-10 batches found; expected {CIFAR_PY_LAYOUT}; or {CIFAR_BIN_LAYOUT}")


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(d for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))


def _has_image(directory: Path) -> bool:
    for _, _, files in os.walk(directory):
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            return True
    return False


def _check_imagefolder(root: Path) -> None:
    _is_dir(root, IMAGEFOLDER_LAYOUT)
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    top = root / "train" if (root / "train").is_dir() and test_dir is not None else root
    classes = _class_dirs(top)
    if not classes:
        loose = any(p.suffix.lower() in IMAGE_SUFFIXES for p in top.iterdir())
        detail = "images lie directly in it, " if loose else ""
        raise DataError(f"{detail}no class sub-directories in {top}; expected {IMAGEFOLDER_LAYOUT}")
    if not any(_has_image(c) for c in classes):
        raise DataError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class directories of {top}; "
            f"expected {IMAGEFOLDER_LAYOUT}"
        )


def _check_squad(root: Path) -> None:
    if root.is_dir():
        file = root / "train-v1.1.json"
        if not file.is_file():
            candidates = sorted(root.glob("*.json"))
            if not candidates:
                raise DataError(f"no JSON files in the directory; expected {SQUAD_LAYOUT}")
            file = candidates[0]
    else:
        file = root
    with open(file, "rb") as f:
        head = f.read(256).lstrip()
    if not head.startswith(b"{"):
        raise DataError(f"{file} is not a JSON object; expected {SQUAD_LAYOUT}")


def _check_librispeech(root: Path) -> None:
    _is_dir(root, LIBRISPEECH_LAYOUT)
    for directory, _, files in os.walk(root):
        trans = next((f for f in sorted(files) if f.endswith(".trans.txt")), None)
        if trans is None:
            continue
        file = Path(directory) / trans
        with open(file, encoding="utf-8", errors="replace") as f:
            first = next((line.strip() for line in f if line.strip()), "")
        utt = first.partition(" ")[0]
        if utt and not any((file.parent / f"{utt}{ext}").is_file() for ext in (".flac", ".wav")):
            raise DataError(f"{file}: no {utt}.flac (or .wav) beside it; expected {LIBRISPEECH_LAYOUT}")
        return
    raise DataError(f"no *.trans.txt transcripts found; expected {LIBRISPEECH_LAYOUT}")


def _check_spoken_words(root: Path) -> None:
    _is_dir(root, SPOKEN_WORDS_LAYOUT)
    if not any(any(d.glob("*.wav")) for d in _class_dirs(root)):
        raise DataError(f"no <word>/<clip>.wav clips found; expected {SPOKEN_WORDS_LAYOUT}")


#: one entry per data set of `denas.data.LOADERS` (a test keeps the two and the CRD's enum in step)
LAYOUTS: dict[str, Layout] = {
    "digits": Layout("scikit-learn's bundled 8x8 digits (no path)"),
    "synthetic-text": Layout("generated sequence classification (no path)"),
    "cifar10": Layout(f"{CIFAR_PY_LAYOUT}; or {CIFAR_BIN_LAYOUT}", _check_cifar10),
    "imagefolder": Layout(IMAGEFOLDER_LAYOUT, _check_imagefolder),
    "squad": Layout(SQUAD_LAYOUT, _check_squad, needs_tokenizer=True),
    "librispeech": Layout(LIBRISPEECH_LAYOUT, _check_librispeech),
    "spoken-words": Layout(SPOKEN_WORDS_LAYOUT, _check_spoken_words),
}


def _check_readable(p: Path) -> str | None:
    if not p.exists():
        return "no such file or directory"
    if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
        return "not readable by this user (check its permissions)"
    return None


def _check_tokenizer(p: Path) -> None:
    if p.is_dir() and not ((p / "vocab.txt").is_file() or (p / "tokenizer.json").is_file()):
        raise DataError(f"no vocab.txt or tokenizer.json in it; expected {TOKENIZER_LAYOUT}")


def dataset_problems(
    dataset: Mapping[str, Any] | None, *, local: bool, field: str = "spec.training.dataset"
) -> list[str]:
    """Problems of a job's ``training.dataset``: one line each, field path first, then the fix.

    ``local``: the path resolves on this machine (relative paths against the working directory),
    so check it exists, is readable and has the expected layout; else only that it is given."""
    dataset = dataset or {}
    name = dataset.get("name")
    layout = LAYOUTS.get(name) if isinstance(name, str) else None
    if layout is None:
        return [
            f"{field}.name: Unsupported value: {json.dumps(name)}: supported values: "
            + ", ".join(f'"{n}"' for n in LAYOUTS)
        ]
    problems: list[str] = []
    wanted = [("path", layout.description, layout.check)] if layout.needs_path else []
    if layout.needs_tokenizer:
        wanted.append(("tokenizer", TOKENIZER_LAYOUT, _check_tokenizer))
    for key, description, check in wanted:
        value = dataset.get(key)
        if not value:
            problems.append(
                f"{field}.{key}: Required value: data set {name!r} needs a {key}: {description}; "
                f"set {field}.{key}"
                + (" (for the operator: where it is mounted in the pods)" if not local else "")
            )
            continue
        if not local or check is None:
            continue
        p = Path(str(value)).expanduser()
        detail = _check_readable(p)
        if detail is None:
            try:
                check(p)
            except DataError as exc:
                detail = str(exc)
            except OSError as exc:
                detail = f"cannot read it ({exc.strerror or exc})"
        if detail is not None:
            where = f" (resolved to {p.resolve()})" if not p.is_absolute() else ""
            problems.append(
                f"{field}.{key}: Invalid value: {json.dumps(str(value))}{where}: {detail}"
                + ("" if "expected" in detail else f"; data set {name!r} expects {description}")
            )
    return problems
