"""Training data sets for `denas train`. Nothing is downloaded: data is bundled, generated or mounted.

`load_dataset(name, ...)` is a registry lookup. Every loader returns a `DataBundle` whose items
are ``(inputs, targets)`` pairs and whose ``collate`` turns a list of items into one batch shaped
for the space's models (vision: ``(B, C, H, W)``; bert: a dict of tensors; asr: ``(B, T, n_mels)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from denas.data.layouts import LAYOUTS, DataError, dataset_problems

if TYPE_CHECKING:
    from denas.data.common import DataBundle

# name -> "module:function"; modules are imported on use so `digits` never pulls in transformers.
LOADERS: dict[str, str] = {
    "digits": "denas.data.vision:load_digits",
    "cifar10": "denas.data.vision:load_cifar10",
    "imagefolder": "denas.data.vision:load_imagefolder",
    "synthetic-text": "denas.data.text:load_synthetic_text",
    "squad": "denas.data.text:load_squad",
    "librispeech": "denas.data.speech:load_librispeech",
    "spoken-words": "denas.data.speech:load_spoken_words",
}


def load_dataset(
    name: str,
    *,
    path: str | None = None,
    config: Mapping[str, Any] | None = None,
    tokenizer: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Load data set ``name`` shaped for a space whose configuration is ``config``.

    ``limit`` caps the training samples; ``tokenizer`` is a local WordPiece directory (squad).
    Raises DataError naming the path and the expected layout when the data is missing or malformed.
    """
    loader = _loader(name)
    return loader(path=path, config=dict(config or {}), tokenizer=tokenizer, limit=limit, seed=seed)


def _loader(name: str) -> Callable[..., DataBundle]:
    import importlib

    try:
        target = LOADERS[name]
    except KeyError:
        raise DataError(
            f"spec.training.dataset.name: unknown data set {name!r}; choose one of {sorted(LOADERS)}"
        ) from None
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def __getattr__(name: str) -> Any:
    # DataBundle needs torch; importing the package must not (the operator checks data set
    # layouts with `denas.data.layouts` and ships no torch)
    if name == "DataBundle":
        from denas.data.common import DataBundle

        return DataBundle
    raise AttributeError(name)


__all__ = ["LAYOUTS", "LOADERS", "DataBundle", "DataError", "dataset_problems", "load_dataset"]
