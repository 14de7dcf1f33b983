"""Building blocks shared by the transformer spaces (``vit``, ``asr``), with their analytic costs.

Attention is written with explicit matmuls rather than ``scaled_dot_product_attention``: at the
sequence lengths these spaces use it is as fast on CPU, and FLOP counters (torch's FlopCounterMode,
forward hooks) see every multiply, so analytic and measured FLOPs can be checked against each other.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention whose inner width (heads x head_dim) is independent of ``dim``."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)
        self.scale = head_dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class TransformerLayer(nn.Module):
    """Pre-norm encoder layer: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def attention_params(dim: int, heads: int, head_dim: int) -> int:
    inner = heads * head_dim
    return dim * 3 * inner + 3 * inner + inner * dim + dim


def attention_macs(tokens: int, dim: int, heads: int, head_dim: int) -> int:
    inner = heads * head_dim
    # qkv and output projections, then QK^T and weights @ V
    return tokens * dim * 4 * inner + 2 * tokens * tokens * inner


def ffn_params(dim: int, hidden: int) -> int:
    return 2 * dim * hidden + hidden + dim


def ffn_macs(tokens: int, dim: int, hidden: int) -> int:
    return 2 * tokens * dim * hidden


def transformer_layer_params(dim: int, heads: int, head_dim: int, hidden: int) -> int:
    return 4 * dim + attention_params(dim, heads, head_dim) + ffn_params(dim, hidden)


def transformer_layer_macs(tokens: int, dim: int, heads: int, head_dim: int, hidden: int) -> int:
    return attention_macs(tokens, dim, heads, head_dim) + ffn_macs(tokens, dim, hidden)
