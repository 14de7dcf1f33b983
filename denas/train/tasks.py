"""What "loss" and "metric" mean for each kind of data: classification or CTC speech recognition.

A task turns model outputs and targets into a loss, and into additive counts (so ranks can sum
them) from which the metric is computed once at the end of an evaluation.
"""

from __future__ import annotations

import string
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def logits_of(outputs: Any) -> torch.Tensor:
    """Models may return a tensor, a tuple (logits first) or a dict / ModelOutput with ``logits``."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) or hasattr(outputs, "keys"):
        return outputs["logits"]
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    raise TypeError(f"model returned {type(outputs).__name__}; expected a tensor of logits")


class ClassificationTask:
    metric_name = "accuracy"
    higher_is_better = True

    def loss(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_of(outputs).float(), targets)

    def counts(self, outputs: Any, targets: torch.Tensor) -> list[float]:
        """[correct, total]"""
        pred = logits_of(outputs).argmax(dim=-1)
        return [float((pred == targets).sum()), float(targets.numel())]

    def metric(self, counts: list[float]) -> float:
        return counts[0] / max(counts[1], 1.0)


class CTCTask:
    """Per-frame logits ``(B, T', V)`` against label sequences; blank is id 0; metric WER (lower is better)."""

    metric_name = "wer"
    higher_is_better = False

    def __init__(self, alphabet: str):
        self.alphabet = alphabet  # id i+1 is alphabet[i]; 0 is the CTC blank

    @staticmethod
    def output_lengths(logits: torch.Tensor, input_lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """Frames the model emitted per utterance: padded lengths scaled by its subsampling."""
        t_out = logits.shape[1]
        lengths = torch.ceil(input_lengths.double() * t_out / max(frames, 1)).long()
        return lengths.clamp(1, t_out)

    def loss(self, outputs: Any, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = logits_of(outputs).float()
        log_probs = logits.log_softmax(dim=-1).transpose(0, 1)  # (T', B, V) as ctc_loss wants
        out_lengths = self.output_lengths(logits, targets["input_lengths"], int(targets["frames"]))
        return F.ctc_loss(
            log_probs,
            targets["labels"],
            out_lengths,
            targets["label_lengths"],
            blank=0,
            reduction="mean",
            zero_infinity=True,
        )

    def decode(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy CTC decoding: best id per frame, merge repeats, drop blanks."""
        best = logits.argmax(dim=-1)
        texts = []
        for row, n in zip(best.tolist(), lengths.tolist()):
            chars, prev = [], 0
            for i in row[:n]:
                if i != prev and i != 0:
                    chars.append(self.alphabet[i - 1] if i - 1 < len(self.alphabet) else "")
                prev = i
            texts.append(" ".join("".join(chars).split()))
        return texts

    def counts(self, outputs: Any, targets: dict[str, Any]) -> list[float]:
        """[word edits, reference words]"""
        logits = logits_of(outputs)
        lengths = self.output_lengths(logits, targets["input_lengths"], int(targets["frames"]))
        edits = words = 0
        for hyp, ref in zip(self.decode(logits, lengths), targets["texts"]):
            ref_words = ref.split()
            edits += edit_distance(hyp.split(), ref_words)
            words += len(ref_words)
        return [float(edits), float(words)]

    def metric(self, counts: list[float]) -> float:
        return counts[0] / max(counts[1], 1.0)


def encoder_hidden_size(encoder: nn.Module) -> int:
    """The width of ``encoder.forward_features``: its transformers config's ``hidden_size``."""
    for inner in (getattr(encoder, "bert", None), getattr(encoder, "hf", None)):
        size = getattr(getattr(inner, "config", None), "hidden_size", None)
        if size:
            return int(size)
    raise ValueError(f"{type(encoder).__name__}: no transformers config to read the hidden size from")


class SpanQA(nn.Module):
    """Start/end heads over an encoder's last hidden states (SQuAD-style extractive QA).

    The encoder is a ``bert`` space model (``.bert``) or a ``huggingface`` space model (``.hf``,
    a transformers ``*ForSequenceClassification``); the heads' width is its config's
    ``hidden_size`` (which a structure need not hold: a ``huggingface`` space may keep it fixed).
    The encoder's pooler and classifier would get no gradient, which DDP rejects: the ``bert``
    model's are dropped; the ``huggingface`` model's are frozen, so its weights keep their names.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int | None = None):
        super().__init__()
        self.encoder = encoder
        if hasattr(encoder, "bert"):
            encoder.bert.pooler = None
        if hasattr(encoder, "classifier"):
            encoder.classifier = nn.Identity()
        hf = getattr(encoder, "hf", None)
        if hf is not None:
            base = getattr(hf, hf.base_model_prefix)
            for child in hf.children():
                if child is not base:
                    child.requires_grad_(False)
            if isinstance(getattr(base, "pooler", None), nn.Module):
                base.pooler.requires_grad_(False)
        self.span = nn.Linear(hidden_size or encoder_hidden_size(encoder), 2)

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.span(self.encoder.forward_features(inputs))  # (B, T, 2): start, end logits


class QATask:
    """Extractive QA: cross-entropy on start and end tokens; metric SQuAD token F1 (EM counted too)."""

    metric_name = "f1"
    higher_is_better = True
    max_answer_tokens = 30

    def loss(self, outputs: Any, targets: dict[str, Any]) -> torch.Tensor:
        logits = logits_of(outputs).float()
        start = F.cross_entropy(logits[..., 0], targets["start_positions"])
        end = F.cross_entropy(logits[..., 1], targets["end_positions"])
        return (start + end) / 2

    def predict(self, logits: torch.Tensor, offsets: torch.Tensor) -> list[tuple[int, int]]:
        """Best (start, end) token pair per example with start <= end < start + max_answer_tokens."""
        context = offsets[..., 1] > 0  # only context tokens carry non-empty character offsets
        start = logits[..., 0].float().masked_fill(~context, -1e4)
        end = logits[..., 1].float().masked_fill(~context, -1e4)
        scores = start[:, :, None] + end[:, None, :]  # (B, T, T)
        t = scores.shape[-1]
        i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
        scores = scores.masked_fill(~((j >= i) & (j < i + self.max_answer_tokens)), -1e9)
        best = scores.flatten(1).argmax(dim=1)
        return [(int(b) // t, int(b) % t) for b in best]

    def counts(self, outputs: Any, targets: dict[str, Any]) -> list[float]:
        """[F1 sum, examples, exact-match sum]"""
        logits = logits_of(outputs)
        f1 = em = 0.0
        for k, (s, e) in enumerate(self.predict(logits, targets["offsets"])):
            offsets = targets["offsets"][k]
            text = targets["context"][k][int(offsets[s][0]) : int(offsets[e][1])]
            golds = targets["answers"][k] or [""]
            f1 += max(squad_f1(text, g) for g in golds)
            em += max(float(normalize_answer(text) == normalize_answer(g)) for g in golds)
        return [f1, float(len(targets["context"])), em]

    def metric(self, counts: list[float]) -> float:
        return counts[0] / max(counts[1], 1.0)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def squad_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref:
        return float(pred == ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two word sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def task_for(kind: str, info: dict[str, Any]) -> ClassificationTask | CTCTask | QATask:
    if kind == "classification":
        return ClassificationTask()
    if kind == "qa":
        return QATask()
    if kind == "ctc":
        return CTCTask(info["alphabet"])
    raise ValueError(f"unknown task kind {kind!r}; expected 'classification', 'qa' or 'ctc'")
