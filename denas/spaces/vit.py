"""An AutoFormer-style ViT space: embedding width and depth, then heads and MLP ratio per layer.

A structure::

    {"embed_dim": 216, "depth": 13, "num_heads": [4, 3, ...], "mlp_ratio": [3.5, 4.0, ...]}

with one ``num_heads`` / ``mlp_ratio`` entry per layer.  Each head has ``head_dim`` channels (64
as in AutoFormer), so the attention width is ``heads x head_dim``; the MLP hidden width is
``round(embed_dim x mlp_ratio)``.  The network is a patch embedding (a strided conv), a class
token and learned positions, pre-norm encoder layers, a final LayerNorm and a linear head on the
class token.
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
from denas.spaces.layers import TransformerLayer, transformer_layer_macs, transformer_layer_params

DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "image_size": 32,
    "patch_size": 4,
    "num_classes": 10,
    "head_dim": 64,
    # choices, each a list or an inclusive {"min", "max", "step"} range (AutoFormer-Ti's table)
    "embed_dim": [192, 216, 240],
    "depth": [12, 13, 14],
    "num_heads": [3, 4],
    "mlp_ratio": [3.5, 4.0],
}

PRESETS: dict[str, dict[str, Any]] = {
    # runs a forward in milliseconds: for unit tests and smoke runs
    "tiny": {
        "image_size": 16,
        "patch_size": 4,
        "head_dim": 16,
        "embed_dim": [32, 48, 64],
        "depth": [1, 2, 3],
        "num_heads": [1, 2],
        "mlp_ratio": [2.0, 4.0],
    },
    # scikit-learn digits: 1x8x8 images cut into 16 patches of 2x2
    "digits": {
        "in_channels": 1,
        "image_size": 8,
        "patch_size": 2,
        "head_dim": 16,
        "embed_dim": {"min": 32, "max": 96, "step": 16},
        "depth": [2, 3, 4],
        "num_heads": [2, 3, 4],
        "mlp_ratio": [2.0, 3.0, 4.0],
    },
    # the whole AutoFormer table (Ti, S and B supernets together) on ImageNet-sized inputs
    "autoformer": {
        "image_size": 224,
        "patch_size": 16,
        "num_classes": 1000,
        "embed_dim": [192, 216, 240, 320, 384, 448, 528, 576, 624],
        "depth": {"min": 12, "max": 16},
        "num_heads": {"min": 3, "max": 10},
        "mlp_ratio": [3.0, 3.5, 4.0],
    },
}

LAYER_KEYS = ("num_heads", "mlp_ratio")


def mlp_hidden(embed_dim: int, ratio: float) -> int:
    return int(round(embed_dim * ratio))


class ViT(nn.Module):
    def __init__(self, structure: Structure, config: dict[str, Any]):
        super().__init__()
        dim, patch = structure["embed_dim"], config["patch_size"]
        tokens = (config["image_size"] // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(config["in_channels"], dim, patch, stride=patch)
        # small normal init (as ViT); cheap compared with truncated-normal sampling
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.layers = nn.Sequential(
            *(
                TransformerLayer(dim, heads, config["head_dim"], mlp_hidden(dim, ratio))
                for heads, ratio in zip(structure["num_heads"], structure["mlp_ratio"])
            )
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config["num_classes"])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised token sequence ``(B, 1 + patches, embed_dim)``; token 0 is the class token."""
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.layers(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])


@register("vit")
class ViTSpace(SearchSpace):
    """AutoFormer's elastic ViT: per-model width and depth, per-layer heads and MLP ratio."""

    DEFAULTS = DEFAULTS
    PRESETS = PRESETS

    def check_config(self) -> None:
        cfg = self.config
        for key in ("in_channels", "image_size", "patch_size", "num_classes", "head_dim"):
            check_int(cfg, key, 1)
        if cfg["image_size"] % cfg["patch_size"]:
            raise StructureError(
                "searchSpace.patch_size",
                f"must divide image_size ({cfg['image_size']}), got {cfg['patch_size']}",
            )
        ratios = expand_choices(cfg["mlp_ratio"], "mlp_ratio")
        if not all(isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 16 for r in ratios):
            raise StructureError(
                "searchSpace.mlp_ratio", f"every choice must be a number in (0, 16], got {ratios}"
            )
        self.choices: dict[str, list[Any]] = {
            "embed_dim": check_int_choices(cfg, "embed_dim", 1),
            "depth": check_int_choices(cfg, "depth", 1, 64),
            "num_heads": check_int_choices(cfg, "num_heads", 1, 64),
            "mlp_ratio": sorted({float(r) for r in ratios}),
        }
        self.max_depth = max(self.choices["depth"])

    @property
    def tokens(self) -> int:
        return (self.config["image_size"] // self.config["patch_size"]) ** 2 + 1

    # ----- variation -----
    def sample(self, rng: random.Random) -> Structure:
        depth = rng.choice(self.choices["depth"])
        return {
            "embed_dim": rng.choice(self.choices["embed_dim"]),
            "depth": depth,
            **{k: [rng.choice(self.choices[k]) for _ in range(depth)] for k in LAYER_KEYS},
        }

    def _resized(self, structure: Structure, depth: int, rng: random.Random) -> Structure:
        """``structure`` cut or extended (with fresh random layers) to ``depth`` layers."""
        out = {"embed_dim": structure["embed_dim"], "depth": depth}
        for k in LAYER_KEYS:
            kept = list(structure[k][:depth])
            out[k] = kept + [rng.choice(self.choices[k]) for _ in range(depth - len(kept))]
        return out

    def mutate(self, structure: Structure, rng: random.Random, prob: float = 0.3) -> Structure:
        """Step width, depth and each layer's choices with probability ``prob``; at least one changes."""
        self.validate(structure)
        genes = [("embed_dim", None), ("depth", None)]
        genes += [(k, i) for i in range(structure["depth"]) for k in LAYER_KEYS]
        genes = [(k, i) for k, i in genes if len(self.choices[k]) > 1]
        out = self._resized(structure, structure["depth"], rng)
        if not genes:
            return out
        forced = rng.randrange(len(genes))
        for n, (k, i) in enumerate(genes):
            if n != forced and rng.random() >= prob:
                continue
            if k == "depth":
                out = self._resized(out, step_choice(rng, out["depth"], self.choices["depth"]), rng)
            elif i is None:
                out[k] = step_choice(rng, out[k], self.choices[k])
            elif i < out["depth"]:
                out[k][i] = step_choice(rng, out[k][i], self.choices[k])
        return out

    def crossover(self, a: Structure, b: Structure, rng: random.Random) -> Structure:
        """Width and depth from either parent; layer i from a parent that has a layer i."""
        self.validate(a)
        self.validate(b)
        depth = rng.choice([a["depth"], b["depth"]])
        out: Structure = {"embed_dim": rng.choice([a["embed_dim"], b["embed_dim"]]), "depth": depth}
        for k in LAYER_KEYS:
            out[k] = []
            for i in range(depth):
                donors = [p for p in (a, b) if i < p["depth"]]
                out[k].append(rng.choice(donors)[k][i])
        return out

    def validate(self, structure: Structure) -> None:
        keys = {"embed_dim", "depth", *LAYER_KEYS}
        if not isinstance(structure, dict) or set(structure) != keys:
            got = sorted(structure) if isinstance(structure, dict) else type(structure).__name__
            raise StructureError("structure", f"a vit structure has keys {sorted(keys)}, got {got}")
        check_choice("embed_dim", structure["embed_dim"], self.choices["embed_dim"])
        check_choice("depth", structure["depth"], self.choices["depth"])
        for k in LAYER_KEYS:
            values = structure[k]
            if not isinstance(values, list) or len(values) != structure["depth"]:
                raise StructureError(k, f"needs one value per layer ({structure['depth']}), got {values!r}")
            for i, v in enumerate(values):
                check_choice(f"{k}[{i}]", v, self.choices[k])

    # ----- models -----
    def build(self, structure: Structure) -> nn.Module:
        self.validate(structure)
        return ViT(structure, self.config)

    def example_inputs(self, batch_size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        c = self.config
        x = torch.randn(batch_size, c["in_channels"], c["image_size"], c["image_size"], generator=g)
        return x, torch.randint(0, c["num_classes"], (batch_size,), generator=g)

    def count_params(self, structure: Structure) -> int:
        self.validate(structure)
        cfg, dim = self.config, structure["embed_dim"]
        total = cfg["in_channels"] * cfg["patch_size"] ** 2 * dim + dim  # patch embedding
        total += dim + self.tokens * dim  # class token, positions
        for heads, ratio in zip(structure["num_heads"], structure["mlp_ratio"]):
            total += transformer_layer_params(dim, heads, cfg["head_dim"], mlp_hidden(dim, ratio))
        return total + 2 * dim + dim * cfg["num_classes"] + cfg["num_classes"]

    def count_flops(self, structure: Structure, batch_size: int = 1) -> int:
        """Multiply-accumulates of the patch conv, every matmul (attention included) and the head."""
        self.validate(structure)
        cfg, dim, t = self.config, structure["embed_dim"], self.tokens
        macs = (t - 1) * cfg["in_channels"] * cfg["patch_size"] ** 2 * dim
        for heads, ratio in zip(structure["num_heads"], structure["mlp_ratio"]):
            macs += transformer_layer_macs(t, dim, heads, cfg["head_dim"], mlp_hidden(dim, ratio))
        return batch_size * (macs + dim * cfg["num_classes"])

    def encode(self, structure: Structure) -> list[float]:
        """width, depth, then (heads, mlp ratio) per layer, zero-padded to the deepest choice."""
        self.validate(structure)
        vec = [float(structure["embed_dim"]), float(structure["depth"])]
        for i in range(self.max_depth):
            inside = i < structure["depth"]
            vec += [float(structure[k][i]) if inside else 0.0 for k in LAYER_KEYS]
        return vec
