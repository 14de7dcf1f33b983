"""What every loader returns, and the helpers they share (splits, limits, path checks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from denas.data.layouts import DataError  # noqa: F401  (re-exported: the loaders raise it)


@dataclass
class DataBundle:
    name: str
    train: Dataset
    test: Dataset
    #: "classification" (logits vs class ids) or "ctc" (per-frame logits vs label sequences)
    task: str
    collate: Callable[[list], Any] | None = None
    #: space configuration the data needs (e.g. ``num_classes``); applied where the space has the key
    space_overrides: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic shuffled train/test split of ``range(n)``."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g).tolist()
    n_test = max(1, round(n * test_fraction)) if n > 1 else 0
    return order[n_test:], order[:n_test]


def apply_limit(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """At most ``limit`` items, drawn at random (``seed``) so that every class stays represented."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return dataset
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    return Subset(dataset, sorted(chosen.tolist()))


def require_path(path: str | None, name: str, layout: str) -> Path:
    """``path`` as a Path, or a DataError telling which layout ``name`` expects there."""
    if not path:
        raise DataError(
            f"spec.training.dataset.path: data set {name!r} needs a path; expected layout: {layout}"
        )
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory; data set {name!r} expects: {layout}")
    return p


def first(config: dict[str, Any], keys: Sequence[str], default: Any) -> Any:
    """The first of ``keys`` present in a space configuration (spaces name dimensions differently)."""
    for key in keys:
        if key in config:
            return config[key]
    return default
