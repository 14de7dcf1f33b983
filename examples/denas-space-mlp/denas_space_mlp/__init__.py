"""The ``mlp`` plug-in space: fully connected nets for small images (8x8 digits by default).

A structure::

    {"depth": 2, "widths": [64, 32], "activation": "relu"}

``widths`` has one entry per hidden layer (its length is ``depth``).
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

from denas.spaces import SearchSpace, StructureError

DEFAULTS: dict[str, Any] = {
    # fixed dimensions (the digits loader reads in_channels and image_size to shape the batches)
    "in_channels": 1,
    "image_size": 8,
    "num_classes": 10,
    # choices
    "depth": [1, 2, 3],
    "width": [16, 32, 64, 128],
    "activation": ["relu", "gelu", "tanh"],
}

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(nn.Module):
    def __init__(self, in_features: int, widths: list[int], activation: str, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width in widths:
            layers += [nn.Linear(in_features, width), ACTIVATIONS[activation]()]
            in_features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(in_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class MLPSpace(SearchSpace):
    """Fully connected nets: depth, width per layer and activation."""

    DEFAULTS = DEFAULTS
    PRESETS = {"tiny": {"depth": [1], "width": [8, 16]}}

    def check_config(self) -> None:
        for key in ("depth", "width", "activation"):
            if not isinstance(self.config[key], list) or not self.config[key]:
                raise StructureError(f"searchSpace.{key}", "must be a non-empty list of choices")
        for key in ("depth", "width"):
            if any(not isinstance(v, int) or v < 1 for v in self.config[key]):
                raise StructureError(f"searchSpace.{key}", "every choice must be an integer >= 1")
        bad = [a for a in self.config["activation"] if a not in ACTIVATIONS]
        if bad:
            raise StructureError("searchSpace.activation", f"{bad[0]!r} is not one of {sorted(ACTIVATIONS)}")

    @property
    def in_features(self) -> int:
        return self.config["in_channels"] * self.config["image_size"] ** 2

    # ----- variation -----
    def sample(self, rng: random.Random) -> dict[str, Any]:
        depth = rng.choice(self.config["depth"])
        return {
            "depth": depth,
            "widths": [rng.choice(self.config["width"]) for _ in range(depth)],
            "activation": rng.choice(self.config["activation"]),
        }

    def _fit(self, s: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """Make ``widths`` as long as ``depth`` (drop the tail or draw new layers)."""
        widths = list(s["widths"])[: s["depth"]]
        widths += [rng.choice(self.config["width"]) for _ in range(s["depth"] - len(widths))]
        return {**s, "widths": widths}

    def mutate(self, structure: dict[str, Any], rng: random.Random, prob: float = 0.3) -> dict[str, Any]:
        self.validate(structure)
        out = {**structure, "widths": list(structure["widths"])}
        for _ in range(10):  # at least one change when the space has more than one structure
            if rng.random() < prob:
                out["depth"] = rng.choice(self.config["depth"])
            out = self._fit(out, rng)
            out["widths"] = [
                rng.choice(self.config["width"]) if rng.random() < prob else w for w in out["widths"]
            ]
            if rng.random() < prob:
                out["activation"] = rng.choice(self.config["activation"])
            if out != structure:
                break
        return out

    def crossover(self, a: dict[str, Any], b: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        self.validate(a)
        self.validate(b)
        child = {
            "depth": rng.choice([a["depth"], b["depth"]]),
            "widths": [rng.choice(pair) for pair in zip(a["widths"], b["widths"])]
            + list(max(a["widths"], b["widths"], key=len)[min(a["depth"], b["depth"]) :]),
            "activation": rng.choice([a["activation"], b["activation"]]),
        }
        return self._fit(child, rng)

    def validate(self, structure: dict[str, Any]) -> None:
        if not isinstance(structure, dict) or set(structure) != {"depth", "widths", "activation"}:
            raise StructureError("structure", "an mlp structure has keys ['activation', 'depth', 'widths']")
        if structure["depth"] not in self.config["depth"]:
            raise StructureError("depth", f"{structure['depth']!r} is not one of {self.config['depth']}")
        widths = structure["widths"]
        if not isinstance(widths, list) or len(widths) != structure["depth"]:
            raise StructureError("widths", f"must be a list of {structure['depth']} widths")
        for w in widths:
            if w not in self.config["width"]:
                raise StructureError("widths", f"{w!r} is not one of {self.config['width']}")
        if structure["activation"] not in self.config["activation"]:
            raise StructureError(
                "activation", f"{structure['activation']!r} is not one of {self.config['activation']}"
            )

    # ----- models -----
    def build(self, structure: dict[str, Any]) -> nn.Module:
        self.validate(structure)
        return MLP(self.in_features, structure["widths"], structure["activation"], self.config["num_classes"])

    def example_inputs(self, batch_size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        c = self.config
        x = torch.randn(batch_size, c["in_channels"], c["image_size"], c["image_size"], generator=g)
        return x, torch.randint(0, c["num_classes"], (batch_size,), generator=g)

    def _dims(self, structure: dict[str, Any]) -> list[int]:
        return [self.in_features, *structure["widths"], self.config["num_classes"]]

    def count_params(self, structure: dict[str, Any]) -> int:
        self.validate(structure)
        dims = self._dims(structure)
        return sum(a * b + b for a, b in zip(dims, dims[1:]))

    def count_flops(self, structure: dict[str, Any], batch_size: int = 1) -> int:
        self.validate(structure)
        dims = self._dims(structure)
        return batch_size * sum(a * b for a, b in zip(dims, dims[1:]))

    def encode(self, structure: dict[str, Any]) -> list[float]:
        self.validate(structure)
        widths = structure["widths"] + [0] * (max(self.config["depth"]) - structure["depth"])
        return [
            float(structure["depth"]),
            *map(float, widths),
            float(self.config["activation"].index(structure["activation"])),
        ]
