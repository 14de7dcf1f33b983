"""A speech-recognition space: conformer-lite encoders over log-mel features with a CTC head.

Input: log-mel features ``(B, T, n_mels)`` (computed with torchaudio by the data pipeline).
Output: CTC log-probabilities ``(B, T', vocab)`` with ``T' = ceil(T / subsampling_factor)``;
``forward_features`` gives the encoder output ``(B, T', dim)``.

A structure::

    {"num_layers": 8, "dim": 144, "heads": 4, "ffn_dim": 512, "conv_kernel": 15,
     "subsampling": "conv2d"}

Layers are pre-norm: self-attention (``heads`` x ``head_dim``), then (if ``conv_kernel`` > 0) a
conformer convolution module (pointwise + GLU, depthwise ``conv_kernel``, BN, SiLU, pointwise),
then a GELU feed-forward.  ``conv_kernel: 0`` is a plain transformer layer.  ``subsampling`` picks
how the front end reduces the frame rate by the fixed ``subsampling_factor``: strided 1-D convs
over time, ESPnet-style strided 2-D convs over time x frequency, or stacking frames.  The factor
is a space setting (not a choice) so every candidate emits the same number of frames and
``example_inputs`` can give frame-level targets ``(B, T')`` for a plain cross-entropy.

CTC vocabulary (``VOCAB``): index 0 is the blank, then space, ``a``-``z`` and the apostrophe.
"""

from __future__ import annotations

import math
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
    step_genes,
)
from denas.spaces.layers import Attention, FeedForward, attention_macs, attention_params, ffn_macs, ffn_params

VOCAB: tuple[str, ...] = ("<blank>", " ", *"abcdefghijklmnopqrstuvwxyz", "'")
BLANK = 0
SUBSAMPLING = ("conv1d", "conv2d", "stack")

DEFAULTS: dict[str, Any] = {
    "n_mels": 80,
    "frames": 400,  # example_inputs' length: 4 s at torchaudio's usual 10 ms hop
    "subsampling_factor": 4,  # 2, 4 or 8
    "subsampling_channels": 32,  # channels of the conv2d front end
    "head_dim": 32,
    # choices, each a list or an inclusive {"min", "max", "step"} range
    "num_layers": {"min": 4, "max": 12, "step": 2},
    "dim": {"min": 96, "max": 256, "step": 16},
    "heads": [2, 4, 8],
    "ffn_dim": {"min": 256, "max": 1024, "step": 128},
    "conv_kernel": [0, 7, 15, 31],
    "subsampling": list(SUBSAMPLING),
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "n_mels": 16,
        "frames": 32,
        "subsampling_channels": 4,
        "head_dim": 8,
        "num_layers": [1, 2],
        "dim": [16, 32],
        "heads": [1, 2],
        "ffn_dim": [32, 64],
        "conv_kernel": [0, 3, 5],
    },
}

GENES = ("num_layers", "dim", "heads", "ffn_dim", "conv_kernel", "subsampling")


def text_to_ids(text: str) -> list[int]:
    """Lower-cased characters -> CTC label ids; characters outside the vocabulary are dropped."""
    index = {c: i for i, c in enumerate(VOCAB) if i != BLANK}
    return [index[c] for c in text.lower() if c in index]


def greedy_decode(log_probs: torch.Tensor) -> str:
    """Best path of one utterance ``(T', vocab)``: merge repeats, drop blanks."""
    out, prev = [], BLANK
    for i in log_probs.argmax(-1).tolist():
        if i != prev and i != BLANK:
            out.append(VOCAB[i])
        prev = i
    return "".join(out)


def _halve(n: int) -> int:
    return (n - 1) // 2 + 1


# ----- modules -----------------------------------------------------------------------------------
class Subsampling(nn.Module):
    def __init__(self, kind: str, n_mels: int, dim: int, stages: int, channels: int):
        super().__init__()
        self.kind, self.factor = kind, 2**stages
        if kind == "conv1d":
            self.convs = nn.Sequential(
                *(
                    nn.Sequential(
                        nn.Conv1d(n_mels if i == 0 else dim, dim, 3, stride=2, padding=1), nn.GELU()
                    )
                    for i in range(stages)
                )
            )
        elif kind == "conv2d":
            self.convs = nn.Sequential(
                *(
                    nn.Sequential(
                        nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2, padding=1), nn.ReLU()
                    )
                    for i in range(stages)
                )
            )
            freq = n_mels
            for _ in range(stages):
                freq = _halve(freq)
            self.proj = nn.Linear(channels * freq, dim)
        else:
            self.proj = nn.Linear(self.factor * n_mels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv1d":
            return self.convs(x.transpose(1, 2)).transpose(1, 2)
        if self.kind == "conv2d":
            y = self.convs(x.unsqueeze(1))  # (B, C, T', F')
            return self.proj(y.permute(0, 2, 1, 3).flatten(2))
        b, t, f = x.shape
        pad = -t % self.factor
        x = nn.functional.pad(x, (0, 0, 0, pad))
        return self.proj(x.reshape(b, (t + pad) // self.factor, self.factor * f))


class ConvModule(nn.Module):
    """Conformer's convolution module: pointwise + GLU, depthwise, BN, SiLU, pointwise."""

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.glu = nn.GLU(dim=1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.BatchNorm1d(dim)
        self.act = nn.SiLU()
        self.pointwise_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.glu(self.pointwise_in(x.transpose(1, 2)))
        return self.pointwise_out(self.act(self.norm(self.depthwise(y)))).transpose(1, 2)


class ConformerLiteLayer(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, ffn_dim: int, conv_kernel: int):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        if conv_kernel:
            self.conv_norm = nn.LayerNorm(dim)
            self.conv = ConvModule(dim, conv_kernel)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        if hasattr(self, "conv"):
            x = x + self.conv(self.conv_norm(x))
        return x + self.ffn(self.ffn_norm(x))


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed positions (no parameters), so utterances of any length work."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class CTCEncoder(nn.Module):
    def __init__(self, structure: Structure, config: dict[str, Any]):
        super().__init__()
        dim = structure["dim"]
        stages = int(math.log2(config["subsampling_factor"]))
        self.subsample = Subsampling(
            structure["subsampling"], config["n_mels"], dim, stages, config["subsampling_channels"]
        )
        self.layers = nn.Sequential(
            *(
                ConformerLiteLayer(
                    dim,
                    structure["heads"],
                    config["head_dim"],
                    structure["ffn_dim"],
                    structure["conv_kernel"],
                )
                for _ in range(structure["num_layers"])
            )
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, len(VOCAB))

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        x = self.subsample(features)
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        return self.norm(self.layers(x))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.head(self.forward_features(features)), dim=-1)


# ----- the space ---------------------------------------------------------------------------------
@register("asr")
class ASRSpace(SearchSpace):
    """Conformer-lite CTC encoders: depth, width, heads, FFN width, conv kernel, front end."""

    DEFAULTS = DEFAULTS
    PRESETS = PRESETS
    task = "ctc"
    vocab = VOCAB
    blank = BLANK

    @property
    def num_outputs(self) -> int:
        return len(VOCAB)

    @property
    def output_frames(self) -> int:
        """T' for ``example_inputs``' ``frames``."""
        return math.ceil(self.config["frames"] / self.config["subsampling_factor"])

    def check_config(self) -> None:
        cfg = self.config
        for key in ("n_mels", "frames", "subsampling_channels", "head_dim"):
            check_int(cfg, key, 1)
        factor = cfg["subsampling_factor"]
        check_choice("searchSpace.subsampling_factor", factor, [2, 4, 8])
        self.choices: dict[str, list[Any]] = {
            "num_layers": check_int_choices(cfg, "num_layers", 1, 48),
            "dim": check_int_choices(cfg, "dim", 2, multiple_of=2),  # sin/cos position pairs
            "heads": check_int_choices(cfg, "heads", 1),
            "ffn_dim": check_int_choices(cfg, "ffn_dim", 1),
            "conv_kernel": check_int_choices(cfg, "conv_kernel", 0),
        }
        if any(k and k % 2 == 0 for k in self.choices["conv_kernel"]):
            raise StructureError(
                "searchSpace.conv_kernel",
                f"kernels must be odd or 0 (no conv module), got {self.choices['conv_kernel']}",
            )
        kinds = list(dict.fromkeys(expand_choices(cfg["subsampling"], "subsampling")))
        for kind in kinds:
            check_choice("searchSpace.subsampling", kind, list(SUBSAMPLING))
        self.choices["subsampling"] = kinds

    # ----- variation -----
    def sample(self, rng: random.Random) -> Structure:
        return {k: rng.choice(self.choices[k]) for k in GENES}

    def mutate(self, structure: Structure, rng: random.Random, prob: float = 0.3) -> Structure:
        """Step each choice with probability ``prob`` (at least one changes when any can)."""
        self.validate(structure)
        genes = [k for k in GENES if len(self.choices[k]) > 1]
        return step_genes(structure, rng, prob, genes, lambda k, _: self.choices[k])

    def crossover(self, a: Structure, b: Structure, rng: random.Random) -> Structure:
        self.validate(a)
        self.validate(b)
        return {k: rng.choice([a[k], b[k]]) for k in GENES}

    def validate(self, structure: Structure) -> None:
        if not isinstance(structure, dict) or set(structure) != set(GENES):
            got = sorted(structure) if isinstance(structure, dict) else type(structure).__name__
            raise StructureError("structure", f"an asr structure has keys {sorted(GENES)}, got {got}")
        for k in GENES:
            check_choice(k, structure[k], self.choices[k])

    # ----- models -----
    def build(self, structure: Structure) -> nn.Module:
        self.validate(structure)
        return CTCEncoder(structure, self.config)

    def example_inputs(self, batch_size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(B, frames, n_mels)`` and frame-level int targets ``(B, T')`` (no blanks)."""
        g = torch.Generator().manual_seed(seed)
        cfg = self.config
        features = torch.randn(batch_size, cfg["frames"], cfg["n_mels"], generator=g)
        targets = torch.randint(1, len(VOCAB), (batch_size, self.output_frames), generator=g)
        return features, targets

    def _front_end(self, structure: Structure) -> tuple[int, int]:
        """(params, MACs) of the subsampling front end."""
        cfg, dim = self.config, structure["dim"]
        n_mels, stages, frames = cfg["n_mels"], int(math.log2(cfg["subsampling_factor"])), cfg["frames"]
        kind, params, macs = structure["subsampling"], 0, 0
        if kind == "conv1d":
            c_in, t = n_mels, frames
            for _ in range(stages):
                t = _halve(t)
                params += 3 * c_in * dim + dim
                macs += 3 * c_in * dim * t
                c_in = dim
        elif kind == "conv2d":
            c, c_in, t, f = cfg["subsampling_channels"], 1, frames, n_mels
            for _ in range(stages):
                t, f = _halve(t), _halve(f)
                params += 9 * c_in * c + c
                macs += 9 * c_in * c * t * f
                c_in = c
            params += c * f * dim + dim
            macs += t * c * f * dim
        else:
            width = cfg["subsampling_factor"] * n_mels
            params, macs = width * dim + dim, self.output_frames * width * dim
        return params, macs

    def count_params(self, structure: Structure) -> int:
        self.validate(structure)
        d, k = structure["dim"], structure["conv_kernel"]
        layer = 2 * d + attention_params(d, structure["heads"], self.config["head_dim"])
        layer += 2 * d + ffn_params(d, structure["ffn_dim"])
        if k:
            layer += 2 * d + (2 * d * d + 2 * d) + (d * k + d) + 2 * d + (d * d + d)
        front, _ = self._front_end(structure)
        return front + structure["num_layers"] * layer + 2 * d + d * len(VOCAB) + len(VOCAB)

    def count_flops(self, structure: Structure, batch_size: int = 1) -> int:
        """Multiply-accumulates of convolutions and matmuls (attention included) for ``frames`` frames."""
        self.validate(structure)
        d, k, t = structure["dim"], structure["conv_kernel"], self.output_frames
        layer = attention_macs(t, d, structure["heads"], self.config["head_dim"]) + ffn_macs(
            t, d, structure["ffn_dim"]
        )
        if k:
            layer += t * (2 * d * d + d * k + d * d)
        _, front = self._front_end(structure)
        return batch_size * (front + structure["num_layers"] * layer + t * d * len(VOCAB))

    def encode(self, structure: Structure) -> list[float]:
        """The four widths/depths, the conv kernel, then the front end one-hot."""
        self.validate(structure)
        vec = [float(structure[k]) for k in GENES[:-1]]
        return vec + [1.0 if structure["subsampling"] == kind else 0.0 for kind in SUBSAMPLING]
