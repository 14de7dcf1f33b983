"""NAS-Bench-201: one cell of 6 edges, each one of 5 operations, stacked in a fixed skeleton.

Edge order is the NB201 arch-string order: node1<-0, node2<-0, node2<-1, node3<-0, node3<-1,
node3<-2, so ``{"ops": [...]}`` lines up with the ``ops`` column of the NAS-Bench-201 table ``denas/data/nb201.csv.gz`` and
``to_arch_string`` gives the benchmark's own string.  The skeleton is the benchmark's: a 3x3 conv
stem with BN, three stages of ``cells_per_stage`` cells at C, 2C, 4C separated by residual
reduction blocks, then BN-ReLU, global average pooling and a linear head.  Convolutions inside the
cell are ReLU-Conv-BN as in the benchmark.
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
    register,
)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (to_node, from_node) of each of the six edges, in arch-string order
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

DEFAULTS: dict[str, Any] = {
    "ops": list(OPS),  # the operations an edge may take; narrow it to shrink the space
    "channels": 16,  # C of the first stage; later stages use 2C and 4C
    "cells_per_stage": 5,  # N
    "in_channels": 3,
    "image_size": 32,
    "num_classes": 10,
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"channels": 8, "cells_per_stage": 1, "image_size": 16},
    # scikit-learn digits: 1x8x8 grey images
    "digits": {"channels": 8, "cells_per_stage": 2, "in_channels": 1, "image_size": 8},
}


def to_arch_string(structure: Structure) -> str:
    """``{"ops": [...]}`` -> ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    ops = structure["ops"]
    nodes = []
    for node in (1, 2, 3):
        nodes.append(
            "|" + "|".join(f"{ops[e]}~{src}" for e, (dst, src) in enumerate(EDGES) if dst == node) + "|"
        )
    return "+".join(nodes)


def from_arch_string(text: str) -> Structure:
    """The inverse of ``to_arch_string``; raises StructureError on a malformed string."""
    nodes = text.strip().split("+")
    if len(nodes) != 3:
        raise StructureError("arch", f"expected 3 '+'-separated nodes, got {len(nodes)} in {text!r}")
    ops: list[str] = []
    for node, part in enumerate(nodes, start=1):
        edges = [e for e in part.strip("|").split("|") if e]
        if len(edges) != node:
            raise StructureError("arch", f"node {node} needs {node} inputs, got {len(edges)} in {part!r}")
        for src, edge in enumerate(edges):
            op, _, idx = edge.partition("~")
            if idx != str(src):
                raise StructureError("arch", f"edge {edge!r} of node {node} should come from node {src}")
            check_choice("arch", op, list(OPS))
            ops.append(op)
    return {"ops": ops}


# ----- modules -----------------------------------------------------------------------------------
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise StructureError("ops", f"{name!r} is not an operation; choose one of {list(OPS)}")


class Cell(nn.Module):
    def __init__(self, ops: list[str], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            nodes.append(sum(self.edges[e](nodes[src]) for e, (dst, src) in enumerate(EDGES) if dst == node))
        return nodes[3]


class ResidualReduction(nn.Module):
    """NB201's ResNet basic block with stride 2 between stages."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(self, ops: list[str], channels: int, cells: int, in_channels: int, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, c * 2))
                c *= 2
            layers.extend(Cell(ops, c) for _ in range(cells))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.lastact(self.cells(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.forward_features(x)).flatten(1))


# ----- the space ---------------------------------------------------------------------------------
@register("nb201")
class NB201Space(SearchSpace):
    """The NAS-Bench-201 cell space (15,625 cells with the default five operations)."""

    DEFAULTS = DEFAULTS
    PRESETS = PRESETS

    def check_config(self) -> None:
        ops = self.config["ops"]
        if not isinstance(ops, list) or not ops or len(set(ops)) != len(ops):
            raise StructureError(
                "searchSpace.ops", f"needs a non-empty list of distinct names from {list(OPS)}"
            )
        for op in ops:
            check_choice("searchSpace.ops", op, list(OPS))
        check_int(self.config, "channels", 1)
        check_int(self.config, "cells_per_stage", 1)
        check_int(self.config, "in_channels", 1)
        check_int(self.config, "num_classes", 1)
        # two residual reductions halve the side twice; their pooled and strided paths only
        # agree on even sides
        if check_int(self.config, "image_size", 4) % 4:
            raise StructureError(
                "searchSpace.image_size", f"must be a multiple of 4, got {self.config['image_size']}"
            )

    # ----- variation -----
    def sample(self, rng: random.Random) -> Structure:
        return {"ops": [rng.choice(self.config["ops"]) for _ in EDGES]}

    def mutate(self, structure: Structure, rng: random.Random, prob: float = 0.3) -> Structure:
        """Re-draw each edge with probability ``prob``; at least one edge always changes."""
        self.validate(structure)
        allowed = self.config["ops"]
        ops = list(structure["ops"])
        if len(allowed) < 2:
            return {"ops": ops}
        forced = rng.randrange(len(ops))
        for i, op in enumerate(ops):
            if i == forced or rng.random() < prob:
                ops[i] = rng.choice([o for o in allowed if o != op])
        return {"ops": ops}

    def crossover(self, a: Structure, b: Structure, rng: random.Random) -> Structure:
        self.validate(a)
        self.validate(b)
        return {"ops": [x if rng.random() < 0.5 else y for x, y in zip(a["ops"], b["ops"])]}

    def validate(self, structure: Structure) -> None:
        if not isinstance(structure, dict) or set(structure) != {"ops"}:
            got = sorted(structure) if isinstance(structure, dict) else type(structure).__name__
            raise StructureError(
                "structure", f"an nb201 structure is {{'ops': [6 op names]}}, got keys {got}"
            )
        ops = structure["ops"]
        if not isinstance(ops, list) or len(ops) != len(EDGES):
            raise StructureError("ops", f"needs a list of {len(EDGES)} op names (one per edge), got {ops!r}")
        for i, op in enumerate(ops):
            check_choice(f"ops[{i}]", op, list(self.config["ops"]))

    # ----- models -----
    def build(self, structure: Structure) -> nn.Module:
        self.validate(structure)
        c = self.config
        return NB201Network(
            structure["ops"], c["channels"], c["cells_per_stage"], c["in_channels"], c["num_classes"]
        )

    def example_inputs(self, batch_size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        c = self.config
        x = torch.randn(batch_size, c["in_channels"], c["image_size"], c["image_size"], generator=g)
        y = torch.randint(0, c["num_classes"], (batch_size,), generator=g)
        return x, y

    def _stage_sizes(self) -> list[tuple[int, int]]:
        """(channels, spatial side) of each stage's cells."""
        c, s = self.config["channels"], self.config["image_size"]
        sizes = [(c, s)]
        for _ in range(2):
            c, s = c * 2, s // 2
            sizes.append((c, s))
        return sizes

    def count_params(self, structure: Structure) -> int:
        self.validate(structure)
        cfg = self.config
        c0, n = cfg["channels"], cfg["cells_per_stage"]
        per_edge = {"nor_conv_1x1": lambda c: c * c + 2 * c, "nor_conv_3x3": lambda c: 9 * c * c + 2 * c}
        total = cfg["in_channels"] * c0 * 9 + 2 * c0  # stem
        for c, _ in self._stage_sizes():
            total += n * sum(per_edge.get(op, lambda c: 0)(c) for op in structure["ops"])
        for c in (c0, 2 * c0):  # reductions c -> 2c
            total += 9 * c * 2 * c + 2 * 2 * c + 9 * 4 * c * c + 2 * 2 * c + c * 2 * c
        c_last = 4 * c0
        return total + 2 * c_last + c_last * cfg["num_classes"] + cfg["num_classes"]

    def count_flops(self, structure: Structure, batch_size: int = 1) -> int:
        """Multiply-accumulates of convolutions and the linear head (BN, pooling, adds excluded)."""
        self.validate(structure)
        cfg = self.config
        c0, n, s0 = cfg["channels"], cfg["cells_per_stage"], cfg["image_size"]
        macs = cfg["in_channels"] * c0 * 9 * s0 * s0
        kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 9}
        sizes = self._stage_sizes()
        for c, s in sizes:
            macs += n * sum(kernel.get(op, 0) * c * c * s * s for op in structure["ops"])
        for (c, _), (c2, s2) in zip(sizes, sizes[1:]):
            macs += (9 * c * c2 + 9 * c2 * c2 + c * c2) * s2 * s2
        return batch_size * (macs + sizes[-1][0] * cfg["num_classes"])

    def encode(self, structure: Structure) -> list[float]:
        """One-hot per edge over the five NB201 operations (30 numbers)."""
        self.validate(structure)
        return [1.0 if op == name else 0.0 for op in structure["ops"] for name in OPS]
