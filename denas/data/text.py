"""Text data for the ``bert`` space: a generated classification task and SQuAD v1.1.

``synthetic-text``: each class owns a few keyword tokens; a sequence holds random filler tokens,
three keywords of its class and one of another class (a distractor), so the label is the class
in the majority among keywords: learnable, but not from a single token.

``squad``: extractive QA. One feature per question: ``[CLS] question [SEP] context [SEP]`` cut
to the space's ``seq_len`` (no document stride; an answer cut off points at [CLS]). The model
gets start/end heads (``denas.train.tasks.SpanQA``); the metric is SQuAD's token F1 (EM beside).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from denas.data.common import DataBundle, DataError, first, require_path, split_indices
from denas.data.layouts import SQUAD_LAYOUT, TOKENIZER_LAYOUT

SYNTHETIC_CLASSES = 4
KEYWORDS_PER_CLASS = 5


class TensorDict(Dataset):
    """Items ``({name: tensor[i]}, target[i])`` from a dict of equally long tensors."""

    def __init__(self, inputs: dict[str, torch.Tensor], targets: Any):
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], Any]:
        target = (
            self.targets[i]
            if not isinstance(self.targets, dict)
            else {k: v[i] for k, v in self.targets.items()}
        )
        return {k: v[i] for k, v in self.inputs.items()}, target


def collate_dicts(items: list[tuple[dict[str, Any], Any]]) -> tuple[dict[str, torch.Tensor], Any]:
    """Stack tensors key by key; targets that are dicts keep non-tensor values as lists."""
    inputs = {k: torch.stack([x[k] for x, _ in items]) for k in items[0][0]}
    first_target = items[0][1]
    if isinstance(first_target, dict):
        targets = {
            k: torch.stack([t[k] for _, t in items])
            if isinstance(first_target[k], torch.Tensor)
            else [t[k] for _, t in items]
            for k in first_target
        }
    else:
        targets = torch.stack([torch.as_tensor(t) for _, t in items]).long()
    return inputs, targets


# ----- synthetic-text ---------------------------------------------------------------------------
def make_synthetic_text(
    n: int, seq_len: int, vocab_size: int, seed: int, num_classes: int = SYNTHETIC_CLASSES
) -> TensorDict:
    """``n`` deterministic sequences (see the module docstring); token 1 starts each like [CLS]."""
    keywords_end = 2 + num_classes * KEYWORDS_PER_CLASS
    if vocab_size < keywords_end + 10 or seq_len < 8:
        raise DataError(
            f"synthetic-text needs vocab_size >= {keywords_end + 10} and seq_len >= 8 (got {vocab_size}, {seq_len})"
        )
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (n,), generator=g)
    ids = torch.randint(keywords_end, min(vocab_size, keywords_end + 2000), (n, seq_len), generator=g)
    ids[:, 0] = 1
    for i in range(n):
        label, length = int(labels[i]), int(lengths[i])
        other = (label + 1 + int(torch.randint(0, num_classes - 1, (1,), generator=g))) % num_classes
        chosen = [label, label, label, other]
        slots = 1 + torch.randperm(length - 1, generator=g)[: len(chosen)]
        for slot, cls in zip(slots.tolist(), chosen):
            ids[i, slot] = (
                2 + cls * KEYWORDS_PER_CLASS + int(torch.randint(0, KEYWORDS_PER_CLASS, (1,), generator=g))
            )
    mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    return TensorDict(
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}, labels
    )


def load_synthetic_text(*, config: dict[str, Any], limit: int | None, seed: int, **_: Any) -> DataBundle:
    seq_len = int(first(config, ["seq_len", "max_seq_len"], 64))
    vocab = int(first(config, ["vocab_size"], 30522))
    n_train = limit or 2000
    train = make_synthetic_text(n_train, seq_len, vocab, seed)
    test = make_synthetic_text(500, seq_len, vocab, seed + 10_000)
    return DataBundle(
        name="synthetic-text",
        train=train,
        test=test,
        task="classification",
        collate=collate_dicts,
        space_overrides={"num_labels": SYNTHETIC_CLASSES},
        info={"train_size": len(train), "test_size": len(test), "seq_len": seq_len, "path": "generated"},
    )


# ----- SQuAD v1.1 -------------------------------------------------------------------------------
def load_tokenizer(path: str | None):
    """A WordPiece tokenizer from a local directory or vocab.txt; never touches the network."""
    if not path:
        raise DataError(f"spec.training.dataset.tokenizer: squad needs a tokenizer: {TOKENIZER_LAYOUT}")
    from transformers import BertTokenizerFast

    p = Path(path)
    if p.is_file():
        return BertTokenizerFast(vocab_file=str(p))
    if (p / "tokenizer.json").is_file() or (p / "vocab.txt").is_file():
        try:
            return BertTokenizerFast.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError) as exc:
            if (p / "vocab.txt").is_file():
                return BertTokenizerFast(vocab_file=str(p / "vocab.txt"))
            raise DataError(f"{p}: cannot load a tokenizer ({exc}); expected {TOKENIZER_LAYOUT}") from exc
    raise DataError(f"{p}: no tokenizer found; expected {TOKENIZER_LAYOUT}")


def read_squad(file: Path) -> list[dict[str, Any]]:
    """Flatten SQuAD JSON into ``{id, question, context, answers: [(text, start)]}`` records."""
    try:
        data = json.loads(file.read_text())["data"]
        records = []
        for article in data:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = [(a["text"], int(a["answer_start"])) for a in qa["answers"]]
                    records.append(
                        {"id": qa["id"], "question": qa["question"], "context": context, "answers": answers}
                    )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{file}: not SQuAD v1.1 JSON ({type(exc).__name__}: {exc}); expected {SQUAD_LAYOUT}"
        ) from exc
    if not records:
        raise DataError(f"{file}: no questions found; expected {SQUAD_LAYOUT}")
    return records


def encode_squad(records: list[dict[str, Any]], tokenizer: Any, seq_len: int) -> TensorDict:
    enc = tokenizer(
        [r["question"] for r in records],
        [r["context"] for r in records],
        truncation="only_second",
        max_length=seq_len,
        padding="max_length",
        return_offsets_mapping=True,
    )
    starts, ends, offsets = [], [], []
    for i, record in enumerate(records):
        seq_ids = enc.sequence_ids(i)
        # offsets of context tokens only; everything else maps to (0, 0) and is never predicted
        offs = [o if s == 1 else (0, 0) for o, s in zip(enc["offset_mapping"][i], seq_ids)]
        start, end = 0, 0  # [CLS]: the answer is not inside this window
        if record["answers"]:
            text, char_start = record["answers"][0]
            char_end = char_start + len(text)
            ctx = [t for t, s in enumerate(seq_ids) if s == 1]
            if ctx and offs[ctx[0]][0] <= char_start and offs[ctx[-1]][1] >= char_end:
                start = next(t for t in ctx if offs[t][1] > char_start)
                end = next(t for t in reversed(ctx) if offs[t][0] < char_end)
        starts.append(start)
        ends.append(end)
        offsets.append(offs)
    inputs = {k: torch.tensor(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    targets = {
        "start_positions": torch.tensor(starts),
        "end_positions": torch.tensor(ends),
        "offsets": torch.tensor(offsets),
        "context": [r["context"] for r in records],
        "answers": [[a for a, _ in r["answers"]] for r in records],
    }
    return TensorDict(inputs, targets)


def load_squad(
    *, path: str | None, config: dict[str, Any], tokenizer: str | None, limit: int | None, seed: int, **_: Any
) -> DataBundle:
    root = require_path(path, "squad", SQUAD_LAYOUT)
    if root.is_dir():
        train_file, dev_file = root / "train-v1.1.json", root / "dev-v1.1.json"
        if not train_file.is_file():
            candidates = sorted(root.glob("*.json"))
            if not candidates:
                raise DataError(f"{root}: no JSON files; expected {SQUAD_LAYOUT}")
            train_file, dev_file = candidates[0], root / "__none__"
    else:
        train_file, dev_file = root, root.with_name("__none__")
    train_records = read_squad(train_file)
    if dev_file.is_file():
        test_records = read_squad(dev_file)
    else:
        train_idx, test_idx = split_indices(len(train_records), 0.1, seed)
        train_records, test_records = (
            [train_records[i] for i in train_idx],
            [train_records[i] for i in test_idx],
        )
    if limit and limit < len(train_records):  # encode only what is used
        keep = split_indices(len(train_records), 0.0, seed)[0][:limit]
        train_records = [train_records[i] for i in sorted(keep)]
    tok = load_tokenizer(tokenizer)
    seq_len = int(first(config, ["seq_len", "max_seq_len"], 128))
    train = encode_squad(train_records, tok, seq_len)
    test = encode_squad(test_records, tok, seq_len)
    overrides = {"vocab_size": max(int(first(config, ["vocab_size"], 0)), len(tok))}
    return DataBundle(
        name="squad",
        train=train,
        test=test,
        task="qa",
        collate=collate_dicts,
        space_overrides=overrides,
        info={
            "train_size": len(train),
            "test_size": len(test),
            "seq_len": seq_len,
            "path": str(train_file),
            "tokenizer": tokenizer,
        },
    )
