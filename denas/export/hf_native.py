"""The Hugging Face folder of a `huggingface`-domain model: its inner transformers model as is.

The space builds ``AutoModelForSequenceClassification.from_config(...)`` and wraps it only to
return plain logits, so ``save_pretrained`` of the inner model is the whole export; the check
reloads the folder with ``AutoModelForSequenceClassification`` (logits) and ``AutoModel`` (the
encoder's hidden states) and compares both with the trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from denas.export.load import Trained


def export_native(
    trained: Trained, folder: Path, inputs: tuple[torch.Tensor, ...], expected: torch.Tensor
) -> dict[str, Any]:
    from transformers import AutoModel, AutoModelForSequenceClassification

    from denas.export.formats import _size, check, max_abs_diff

    if trained.task != "classification":
        return {
            "skipped": f"the huggingface domain exports sequence classification only (task {trained.task})"
        }
    trained.model.hf.save_pretrained(str(folder), safe_serialization=True)
    kwargs = dict(zip(trained.input_names, inputs))
    with torch.no_grad():
        logits = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()(**kwargs).logits
        hidden = AutoModel.from_pretrained(str(folder)).eval()(**kwargs).last_hidden_state
        reference = trained.model.forward_features(kwargs)
    diff = max(max_abs_diff(logits, expected), max_abs_diff(hidden, reference))
    return {
        "files": [f"huggingface/{p.name}" for p in sorted(folder.iterdir())],
        "bytes": _size([folder]),
        "class": type(trained.model.hf).__name__,
        "inputs": list(trained.input_names),
        "check": check(diff),
    }
