"""A space over a Hugging Face model config: ``searchSpace.huggingface: {config, choices}``.

``config`` is an inline dict (with ``model_type``, as in a ``config.json``) or the path of a local
``config.json`` (or a folder holding one); ``choices`` maps config fields to their candidate values.
A structure is ``{field: value}`` for every field in ``choices``. Models are built from the config
alone with ``AutoModelForSequenceClassification.from_config`` (nothing is downloaded) and return
plain logits; ``forward_features`` gives the base model's last hidden states.

Everything is checked when the space is made (so before any search): every choice must be a field
of that config class; every value must have the type of that field in the config (integers for
integer fields, >= 1 for sizes, counts and layers; numbers for float fields, in [0, 1] for dropout
probabilities and > 0 for epsilons; booleans for boolean fields; a known activation name for
``*_act``); every ``hidden_size`` must be divisible by some ``num_attention_heads`` (sampling,
mutation and crossover only produce legal pairs); and every ``max_position_embeddings`` must hold
``seq_len`` tokens.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from denas.spaces.base import (
    SearchSpace,
    Structure,
    StructureError,
    check_choice,
    check_int,
    expand_choices,
    param_count,
    register,
    step_genes,
)

KEY = "searchSpace.huggingface"
DEFAULTS: dict[str, Any] = {
    "huggingface": {
        "config": {"model_type": "bert", "vocab_size": 30522, "max_position_embeddings": 64},
        "choices": {
            "num_hidden_layers": [1, 2],
            "hidden_size": [32, 64],
            "num_attention_heads": [2, 4],
            "intermediate_size": [64, 128],
        },
    },
    "seq_len": 32,
    "num_labels": 2,
    # None: the config's own; the text loaders read (and may fit) it here, e.g. to a tokenizer's
    "vocab_size": None,
}


def load_config_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        path = Path(value)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise StructureError(
                f"{KEY}.config", f"{value}: no such config.json (give a dict or a local path)"
            )
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StructureError(f"{KEY}.config", f"{path}: not a readable JSON config ({exc})") from None
    raise StructureError(f"{KEY}.config", f"expected a dict or a local path, got {type(value).__name__}")


#: integer fields that are sizes, counts or layers: >= 1 (``0`` heads divides by zero, ``-1``
#: layers builds a model without any)
SIZE_FIELD = re.compile(r"(^num_|^n_|_size$|_layers?$|_heads?$|_dim$|^dim$|_embeddings$|_embd$|_inner$)")


def _is_probability(field: str) -> bool:
    return "dropout" in field or field.endswith("_prob")


def _choice_problem(field: str, base: Any, value: Any) -> str | None:
    """Why ``value`` cannot be a choice of ``field``, whose value in the base config is ``base``."""
    if isinstance(base, bool):
        return None if isinstance(value, bool) else "must be a boolean (true or false)"
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(base, int) or (base is None and SIZE_FIELD.search(field)):
        if SIZE_FIELD.search(field):
            return None if is_int and value >= 1 else "must be an integer >= 1"
        return None if is_int else "must be an integer"
    if isinstance(base, float):
        if not (is_int or isinstance(value, float)) or not math.isfinite(value):
            return "must be a finite number"
        if _is_probability(field) and not 0 <= value <= 1:
            return "must be a number in [0, 1]"
        if "eps" in field and value <= 0:
            return "must be a number > 0"
        return None
    if isinstance(base, str):
        if not isinstance(value, str):
            return "must be a string"
        if field.endswith("_act"):
            from transformers.activations import ACT2FN

            if value not in ACT2FN:
                return f"not an activation; use one of {sorted(ACT2FN)}"
        return None
    if base is None and _is_probability(field):  # e.g. classifier_dropout: None (use another's)
        if value is None or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
        ):
            return None
        return "must be a number in [0, 1] (or null)"
    if base is None:
        return None if value is None or isinstance(value, (bool, int, float, str)) else "must be a scalar"
    if not isinstance(value, type(base)):
        return f"must be a {type(base).__name__}, as in the config"
    return None


class HFClassifier(nn.Module):
    """A ``*ForSequenceClassification`` model returning plain logits from ``model(inputs)``."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        base = getattr(self.hf, self.hf.base_model_prefix)
        return base(**inputs, return_dict=True).last_hidden_state

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.hf(**inputs, return_dict=True).logits


@register("huggingface")
class HuggingFaceSpace(SearchSpace):
    """Fields of a Hugging Face config (layers, heads, widths) built with AutoModel classes."""

    DEFAULTS = DEFAULTS
    # the default config is already small; tiny only shortens the sequences
    PRESETS = {"tiny": {"seq_len": 16}}

    def check_config(self) -> None:
        from transformers import AutoConfig

        cfg = self.config
        check_int(cfg, "seq_len", 1)
        check_int(cfg, "num_labels", 1)
        spec = cfg["huggingface"]
        if not isinstance(spec, dict) or set(spec) - {"config", "choices"} or "choices" not in spec:
            raise StructureError(KEY, "expected {config: <dict or local path>, choices: {field: [values]}}")
        base = load_config_dict(spec.get("config", DEFAULTS["huggingface"]["config"]))
        model_type = base.pop("model_type", None)
        if not model_type:
            raise StructureError(f"{KEY}.config.model_type", "required (e.g. bert, roberta, distilbert)")
        try:
            self.base_config = AutoConfig.for_model(model_type, **base)
        except (ValueError, KeyError) as exc:
            raise StructureError(f"{KEY}.config.model_type", f"{model_type!r}: {exc}") from None
        if cfg["vocab_size"] is None:
            cfg["vocab_size"] = int(getattr(self.base_config, "vocab_size", 0) or 0) or None
        else:
            check_int(cfg, "vocab_size", 1)
            self.base_config.vocab_size = cfg["vocab_size"]
        known = set(self.base_config.to_dict()) | set(getattr(self.base_config, "attribute_map", {}))
        if not isinstance(spec["choices"], dict) or not spec["choices"]:
            raise StructureError(f"{KEY}.choices", "expected a non-empty mapping {field: [values]}")
        self.choices: dict[str, list[Any]] = {}
        for field, values in spec["choices"].items():
            if field not in known:
                raise StructureError(
                    f"{KEY}.choices.{field}",
                    f"not a field of {type(self.base_config).__name__}; fields include "
                    f"{sorted(k for k in known if k.startswith(('num_', 'hidden', 'intermediate')))}",
                )
            self.choices[field] = self._checked_choices(field, values)
        self.genes = sorted(self.choices)
        for hidden in self._values("hidden_size"):
            if not self._heads_for(hidden):
                raise StructureError(
                    f"{KEY}.choices.num_attention_heads",
                    f"no choice in {self._values('num_attention_heads')} divides hidden_size {hidden}",
                )
        if "max_position_embeddings" in self.choices:
            raw = spec["choices"]["max_position_embeddings"]
            for i, positions in enumerate(expand_choices(raw, "huggingface.choices.max_position_embeddings")):
                if cfg["seq_len"] > positions:
                    where = f"[{i}]" if isinstance(raw, (list, tuple)) else ""
                    raise StructureError(
                        f"{KEY}.choices.max_position_embeddings{where}",
                        f"Invalid value: {positions}: must be >= searchSpace.seq_len ({cfg['seq_len']}), "
                        "the length of every input sequence",
                    )
        else:
            positions = getattr(self.base_config, "max_position_embeddings", None)
            if positions is not None and cfg["seq_len"] > positions:
                raise StructureError(
                    "searchSpace.seq_len", f"must be <= max_position_embeddings ({positions})"
                )

    def _checked_choices(self, field: str, values: Any) -> list[Any]:
        """The choices of ``field``, each checked against the type (and range) of the config's own
        value, before they are sorted (mixed types cannot be) or reach a model."""
        expanded = expand_choices(values, f"huggingface.choices.{field}")
        base = getattr(self.base_config, field, None)
        for i, value in enumerate(expanded):
            problem = _choice_problem(field, base, value)
            if problem:
                where = f"[{i}]" if isinstance(values, (list, tuple)) else ""
                raise StructureError(
                    f"{KEY}.choices.{field}{where}",
                    f"Invalid value: {json.dumps(value, default=repr)}: {problem}",
                )
        unique: list[Any] = []
        for value in expanded:
            if value not in unique:
                unique.append(value)
        return sorted(unique, key=lambda v: (v is None, isinstance(v, str), v))

    def _values(self, field: str) -> list[Any]:
        return self.choices.get(field, [getattr(self.base_config, field)])

    def _heads_for(self, hidden: int) -> list[int]:
        return [h for h in self._values("num_attention_heads") if hidden % h == 0]

    @property
    def num_outputs(self) -> int:
        return int(self.config["num_labels"])

    def _repair(self, s: Structure, rng: random.Random) -> Structure:
        if "num_attention_heads" in s or "hidden_size" in s:
            hidden = s.get("hidden_size", self.base_config.hidden_size)
            valid = self._heads_for(hidden)
            if "num_attention_heads" in s and s["num_attention_heads"] not in valid:
                s["num_attention_heads"] = rng.choice(valid)
        return s

    def sample(self, rng: random.Random) -> Structure:
        return self._repair({k: rng.choice(self.choices[k]) for k in self.genes}, rng)

    def mutate(self, structure: Structure, rng: random.Random, prob: float = 0.3) -> Structure:
        self.validate(structure)
        genes = [k for k in self.genes if len(self.choices[k]) > 1]
        return self._repair(step_genes(structure, rng, prob, genes, lambda k, _: self.choices[k]), rng)

    def crossover(self, a: Structure, b: Structure, rng: random.Random) -> Structure:
        self.validate(a)
        self.validate(b)
        return self._repair({k: rng.choice([a[k], b[k]]) for k in self.genes}, rng)

    def validate(self, structure: Structure) -> None:
        if not isinstance(structure, dict) or set(structure) != set(self.genes):
            raise StructureError("structure", f"a huggingface structure has keys {self.genes}")
        for k in self.genes:
            check_choice(k, structure[k], self.choices[k])
        hidden = structure.get("hidden_size", getattr(self.base_config, "hidden_size", None))
        heads = structure.get("num_attention_heads", getattr(self.base_config, "num_attention_heads", None))
        if hidden and heads and hidden % heads:
            raise StructureError("num_attention_heads", f"{heads} does not divide hidden_size {hidden}")

    def hf_config(self, structure: Structure) -> Any:
        self.validate(structure)
        config = type(self.base_config).from_dict(self.base_config.to_dict())
        for k, v in structure.items():
            setattr(config, k, v)
        config.num_labels = self.config["num_labels"]
        config.architectures = [self._auto_class(config).__name__]
        config._attn_implementation = "eager"  # matmul attention: FLOP counters see it
        return config

    @staticmethod
    def _auto_class(config: Any) -> type:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification._model_mapping[type(config)]

    def build(self, structure: Structure) -> nn.Module:
        config = self.hf_config(structure)
        return HFClassifier(self._auto_class(config)(config))

    def example_inputs(
        self, batch_size: int = 8, seed: int = 0
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        length = self.config["seq_len"]
        inputs = {
            "input_ids": torch.randint(0, self.base_config.vocab_size, (batch_size, length), generator=g),
            "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
        }
        return inputs, torch.randint(0, self.config["num_labels"], (batch_size,), generator=g)

    def count_params(self, structure: Structure) -> int:
        with torch.device("meta"):
            return param_count(self.build(structure))

    def count_flops(self, structure: Structure, batch_size: int = 1) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.device("meta"):
            model = self.build(structure)
            inputs, _ = self.example_inputs(batch_size)
            # no mask (it is all ones): building one would read tensor values, which meta has not
            inputs = {"input_ids": inputs["input_ids"].to("meta")}
            with FlopCounterMode(display=False) as counter:
                model(inputs)
        return counter.get_total_flops() // 2

    def encode(self, structure: Structure) -> list[float]:
        self.validate(structure)
        return [float(structure[k]) if isinstance(structure[k], (int, float)) else 0.0 for k in self.genes]
