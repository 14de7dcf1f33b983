"""Rebuild a trained model from `model.pt` (state_dict + structure + space configuration).

Every domain's module takes one positional argument (a tensor, or for ``bert`` a dict of tensors).
Exported graphs want positional tensors with names, so `Trained.signature` gives each domain's
input names and a thin wrapper module that takes them in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class PositionalInputs(nn.Module):
    """``model(dict(zip(names, args)))`` for dict-input models; ``model(x)`` otherwise."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], as_dict: bool):
        super().__init__()
        self.model = model
        self.names = names
        self.as_dict = as_dict

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.as_dict:
            return self.model(dict(zip(self.names, args)))
        return self.model(args[0])


@dataclass
class Trained:
    """A trained model, rebuilt, in eval mode, with everything the card needs to describe it."""

    model: nn.Module
    space: Any
    domain: str
    structure: dict[str, Any]
    structure_hash: str
    task: str  # "classification", "ctc", "qa"
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def input_names(self) -> tuple[str, ...]:
        if self.domain == "bert":
            return BERT_INPUTS
        # other dict-input spaces (huggingface, plug-ins): the keys of their example inputs
        inputs, _ = self.space.example_inputs(batch_size=1)
        return tuple(inputs) if isinstance(inputs, dict) else ("input",)

    @property
    def output_name(self) -> str:
        return {"ctc": "log_probs", "qa": "start_end_logits"}.get(self.task, "logits")

    def wrapped(self) -> nn.Module:
        names = self.input_names
        return PositionalInputs(self.model, names, names != ("input",)).eval()

    def sample_inputs(self, batch_size: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Positional example inputs (same order as ``input_names``)."""
        inputs, _ = self.space.example_inputs(batch_size=batch_size, seed=seed)
        if isinstance(inputs, dict):
            return tuple(inputs[name] for name in self.input_names)
        return (inputs,)


def load_trained(model_file: Path) -> Trained:
    """Rebuild the module saved by `denas train` (``DIR/model.pt``) with its trained weights."""
    import denas.spaces

    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: no trained model; did training finish?")
    saved = torch.load(model_file, map_location="cpu", weights_only=False)
    domain, structure = saved["domain"], saved["structure"]
    space = denas.spaces.get(domain, saved.get("space_config") or {})
    state = saved["state_dict"]
    model = space.build(structure)
    task = space.task
    # A QA run wraps the encoder in start/end heads (denas.train.command._build); its keys say so.
    if any(k.startswith("span.") for k in state):
        from denas.train.tasks import SpanQA

        model, task = SpanQA(model), "qa"  # as wide as the built model's config
    model.load_state_dict(state)
    model.eval()
    return Trained(
        model=model,
        space=space,
        domain=domain,
        structure=structure,
        structure_hash=saved.get("structure_hash") or space.hash(structure),
        task=task,
        metrics=saved.get("metrics") or {},
    )


def initialised(domain: str, overrides: dict[str, Any] | None = None, seed: int = 0) -> Trained:
    """A freshly initialised model of a sampled structure (benchmarks and tests of the exporters)."""
    import random

    import denas.spaces

    space = denas.spaces.get(domain, overrides or {})
    structure = space.sample(random.Random(seed))
    torch.manual_seed(seed)
    model = space.build(structure).eval()
    return Trained(model, space, domain, structure, space.hash(structure), space.task)
