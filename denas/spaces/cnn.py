"""A Zen-NAS / ResNet-like CNN space: a stem, then stages of identical blocks, then pool + linear.

A structure::

    {"stem_channels": 32,
     "stages": [{"block": "bottleneck", "kernel": 5, "expansion": 0.5, "channels": 64,
                 "depth": 2, "residual": true}, ...]}   # one entry per stage

``block`` is ``basic`` (kxk -> kxk) or ``bottleneck`` (1x1 -> kxk -> 1x1); its inner width is
``channels * expansion`` rounded to a multiple of 8.  The first block of a stage applies the stage's
stride; ``residual`` blocks add a shortcut (a strided 1x1 conv + BN when the shape changes), plain
ones do not.  The number of stages and their strides are fixed by the space's configuration.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

from denas.spaces.base import (
    SearchSpace,
    Structure,
    StructureError,
    check_choice,
    check_int,
    check_int_choices,
    expand_choices,
    register,
    step_choice,
)

DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "image_size": 32,
    "num_classes": 10,
    "stem_stride": 1,
    "stage_strides": [1, 2, 2, 2],  # one per stage: the number of stages is len(stage_strides)
    # choices, each a list or an inclusive {"min", "max", "step"} range
    "stem_channels": {"min": 16, "max": 64, "step": 8},
    "channels": [  # per stage
        {"min": 16, "max": 64, "step": 8},
        {"min": 32, "max": 128, "step": 8},
        {"min": 64, "max": 256, "step": 8},
        {"min": 128, "max": 512, "step": 8},
    ],
    "depth": [1, 2, 3],
    "kernel": [3, 5, 7],
    "expansion": [0.25, 0.5, 1.0],  # with these: ~0.1M-70M parameters, median ~4M
    "block": ["basic", "bottleneck"],
    "residual": [True, False],
}

PRESETS: dict[str, dict[str, Any]] = {
    # a few thousand parameters: for unit tests
    "tiny": {
        "image_size": 16,
        "stage_strides": [1, 2],
        "stem_channels": [8, 16],
        "channels": [[8, 16], [16, 24, 32]],
        "depth": [1, 2],
        "kernel": [3, 5],
        "expansion": [0.5, 1.0],
    },
    # scikit-learn digits (1x8x8, 10 classes): ~5k-300k parameters (median ~50k), trains in seconds
    "digits": {
        "in_channels": 1,
        "image_size": 8,
        "stage_strides": [1, 2, 2],
        "stem_channels": {"min": 8, "max": 24, "step": 8},
        "channels": [
            {"min": 8, "max": 24, "step": 8},
            {"min": 16, "max": 32, "step": 8},
            {"min": 16, "max": 48, "step": 8},
        ],
        "depth": [1, 2],
        "kernel": [3, 5],
        "expansion": [0.5, 1.0],
    },
}

STAGE_KEYS = ("block", "kernel", "expansion", "channels", "depth", "residual")
BLOCKS = ("basic", "bottleneck")


def inner_width(channels: int, expansion: float) -> int:
    return max(8, int(round(channels * expansion / 8)) * 8)


def _out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


# ----- modules -----------------------------------------------------------------------------------
def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(
        self, block: str, c_in: int, c_out: int, kernel: int, expansion: float, stride: int, residual: bool
    ):
        super().__init__()
        mid = inner_width(c_out, expansion)
        if block == "basic":
            self.body = nn.Sequential(
                conv_bn(c_in, mid, kernel, stride), conv_bn(mid, c_out, kernel, relu=False)
            )
        else:
            self.body = nn.Sequential(
                conv_bn(c_in, mid, 1), conv_bn(mid, mid, kernel, stride), conv_bn(mid, c_out, 1, relu=False)
            )
        self.residual = residual
        reshape = stride != 1 or c_in != c_out
        self.shortcut = conv_bn(c_in, c_out, 1, stride, relu=False) if residual and reshape else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.residual:
            out = out + self.shortcut(x)
        return self.act(out)


class CNN(nn.Module):
    def __init__(self, structure: Structure, config: dict[str, Any]):
        super().__init__()
        c = structure["stem_channels"]
        self.stem = conv_bn(config["in_channels"], c, 3, config["stem_stride"])
        blocks: list[nn.Module] = []
        for stage, stride in zip(structure["stages"], config["stage_strides"]):
            for i in range(stage["depth"]):
                blocks.append(
                    Block(
                        stage["block"],
                        c,
                        stage["channels"],
                        stage["kernel"],
                        stage["expansion"],
                        stride if i == 0 else 1,
                        stage["residual"],
                    )
                )
                c = stage["channels"]
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, config["num_classes"])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.forward_features(x)).flatten(1))


# ----- the space ---------------------------------------------------------------------------------
@register("cnn")
class CNNSpace(SearchSpace):
    """ResNet-like stages with per-stage block type, kernel, expansion, width, depth, shortcut."""

    DEFAULTS = DEFAULTS
    PRESETS = PRESETS

    def check_config(self) -> None:
        cfg = self.config
        for key in ("in_channels", "image_size", "num_classes"):
            check_int(cfg, key, 1)
        check_int(cfg, "stem_stride", 1, 4)
        strides = cfg["stage_strides"]
        if not isinstance(strides, list) or not strides or not all(s in (1, 2) for s in strides):
            raise StructureError(
                "searchSpace.stage_strides", f"needs a non-empty list of 1s and 2s, got {strides!r}"
            )
        per_stage = cfg["channels"]
        if not isinstance(per_stage, list) or len(per_stage) != len(strides):
            raise StructureError(
                "searchSpace.channels",
                f"needs one choice list or range per stage ({len(strides)} stages, from stage_strides), got {per_stage!r}",
            )
        self.choices: dict[str, list[Any]] = {
            "stem_channels": check_int_choices(cfg, "stem_channels", 8, multiple_of=8),
            "depth": check_int_choices(cfg, "depth", 1, 32),
            "kernel": check_int_choices(cfg, "kernel", 1, 11),
            "block": self._categorical("block", BLOCKS),
            "residual": self._categorical("residual", (True, False)),
        }
        if any(k % 2 == 0 for k in self.choices["kernel"]):
            raise StructureError(
                "searchSpace.kernel", f"kernels must be odd (same padding), got {self.choices['kernel']}"
            )
        expansion = expand_choices(cfg["expansion"], "expansion")
        if not all(isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e <= 8 for e in expansion):
            raise StructureError(
                "searchSpace.expansion", f"every choice must be a number in (0, 8], got {expansion}"
            )
        self.choices["expansion"] = sorted({float(e) for e in expansion})
        self.stage_channels = [
            check_int_choices({f"channels[{i}]": v}, f"channels[{i}]", 8, multiple_of=8)
            for i, v in enumerate(per_stage)
        ]

    def _categorical(self, key: str, allowed: tuple[Any, ...]) -> list[Any]:
        values = expand_choices(self.config[key], key)
        for v in values:
            check_choice(f"searchSpace.{key}", v, list(allowed))
        return list(dict.fromkeys(values))

    def _stage_choices(self, i: int) -> dict[str, list[Any]]:
        return {
            **{k: self.choices[k] for k in STAGE_KEYS if k != "channels"},
            "channels": self.stage_channels[i],
        }

    # ----- variation -----
    def sample(self, rng: random.Random) -> Structure:
        return {
            "stem_channels": rng.choice(self.choices["stem_channels"]),
            "stages": [
                {k: rng.choice(choices[k]) for k in STAGE_KEYS}
                for choices in map(self._stage_choices, range(len(self.stage_channels)))
            ],
        }

    def _genes(self, structure: Structure) -> list[tuple[tuple[Any, ...], Any, list[Any]]]:
        """(path, value, choices) of every decision in ``structure``."""
        genes = [(("stem_channels",), structure["stem_channels"], self.choices["stem_channels"])]
        for i, stage in enumerate(structure["stages"]):
            choices = self._stage_choices(i)
            genes.extend((("stages", i, k), stage[k], choices[k]) for k in STAGE_KEYS)
        return genes

    @staticmethod
    def _set(structure: Structure, path: tuple[Any, ...], value: Any) -> None:
        if len(path) == 1:
            structure[path[0]] = value
        else:
            structure["stages"][path[1]][path[2]] = value

    def mutate(self, structure: Structure, rng: random.Random, prob: float = 0.3) -> Structure:
        """Step each decision with probability ``prob`` (at least one changes when any can)."""
        self.validate(structure)
        out = {"stem_channels": structure["stem_channels"], "stages": [dict(s) for s in structure["stages"]]}
        genes = [g for g in self._genes(out) if len(g[2]) > 1]
        if not genes:
            return out
        forced = rng.randrange(len(genes))
        for i, (path, value, choices) in enumerate(genes):
            if i == forced or rng.random() < prob:
                self._set(out, path, step_choice(rng, value, choices))
        return out

    def crossover(self, a: Structure, b: Structure, rng: random.Random) -> Structure:
        """Each decision from either parent with equal odds."""
        self.validate(a)
        self.validate(b)
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        return {
            "stem_channels": pick(a["stem_channels"], b["stem_channels"]),
            "stages": [
                {k: pick(sa[k], sb[k]) for k in STAGE_KEYS} for sa, sb in zip(a["stages"], b["stages"])
            ],
        }

    def validate(self, structure: Structure) -> None:
        if not isinstance(structure, dict) or set(structure) != {"stem_channels", "stages"}:
            got = sorted(structure) if isinstance(structure, dict) else type(structure).__name__
            raise StructureError(
                "structure", f"a cnn structure has keys ['stages', 'stem_channels'], got {got}"
            )
        check_choice("stem_channels", structure["stem_channels"], self.choices["stem_channels"])
        stages = structure["stages"]
        n = len(self.stage_channels)
        if not isinstance(stages, list) or len(stages) != n:
            raise StructureError(
                "stages", f"needs a list of {n} stages (one per stage stride), got {stages!r}"
            )
        for i, stage in enumerate(stages):
            if not isinstance(stage, dict) or set(stage) != set(STAGE_KEYS):
                got = sorted(stage) if isinstance(stage, dict) else stage
                raise StructureError(
                    f"stages[{i}]", f"needs exactly the keys {sorted(STAGE_KEYS)}, got {got}"
                )
            choices = self._stage_choices(i)
            for k in STAGE_KEYS:
                check_choice(f"stages[{i}].{k}", stage[k], choices[k])

    # ----- models -----
    def build(self, structure: Structure) -> nn.Module:
        self.validate(structure)
        return CNN(structure, self.config)

    def example_inputs(self, batch_size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        c = self.config
        x = torch.randn(batch_size, c["in_channels"], c["image_size"], c["image_size"], generator=g)
        return x, torch.randint(0, c["num_classes"], (batch_size,), generator=g)

    def _layers(self, structure: Structure):
        """Yield (c_in, c_out, kernel, stride, in_size) of every convolution, in order."""
        cfg = self.config
        size, c = cfg["image_size"], structure["stem_channels"]
        yield cfg["in_channels"], c, 3, cfg["stem_stride"], size
        size = _out_size(size, cfg["stem_stride"])
        for stage, stride in zip(structure["stages"], cfg["stage_strides"]):
            k, out, mid = (
                stage["kernel"],
                stage["channels"],
                inner_width(stage["channels"], stage["expansion"]),
            )
            for i in range(stage["depth"]):
                s = stride if i == 0 else 1
                if stage["block"] == "basic":
                    yield c, mid, k, s, size
                    yield mid, out, k, 1, _out_size(size, s)
                else:
                    yield c, mid, 1, 1, size
                    yield mid, mid, k, s, size
                    yield mid, out, 1, 1, _out_size(size, s)
                if stage["residual"] and (s != 1 or c != out):
                    yield c, out, 1, s, size
                c, size = out, _out_size(size, s)

    def _last_channels(self, structure: Structure) -> int:
        return structure["stages"][-1]["channels"]

    def count_params(self, structure: Structure) -> int:
        self.validate(structure)
        convs = sum(k * k * ci * co + 2 * co for ci, co, k, _, _ in self._layers(structure))
        n_cls = self.config["num_classes"]
        return convs + (self._last_channels(structure) + 1) * n_cls

    def count_flops(self, structure: Structure, batch_size: int = 1) -> int:
        """Multiply-accumulates of convolutions and the linear head (BN, ReLU, adds, pooling excluded)."""
        self.validate(structure)
        convs = sum(
            k * k * ci * co * _out_size(size, s) ** 2 for ci, co, k, s, size in self._layers(structure)
        )
        return batch_size * (convs + self._last_channels(structure) * self.config["num_classes"])

    def encode(self, structure: Structure) -> list[float]:
        """stem width, then per stage: width, depth, kernel, expansion, bottleneck?, residual?."""
        self.validate(structure)
        vec = [float(structure["stem_channels"])]
        for st in structure["stages"]:
            vec += [
                st["channels"],
                st["depth"],
                st["kernel"],
                st["expansion"],
                st["block"] == "bottleneck",
                st["residual"],
            ]
        return [float(v) for v in vec]
