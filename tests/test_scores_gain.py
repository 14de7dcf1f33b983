"""layer_gain: the Zen-score's BatchNorm term averaged over layers (closed forms on tiny models)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import denas.scores as scores
from denas import spaces


class Gains(nn.Module):
    """Features = BN(g_L * ... BN(g_1 * x)): BN l sees an input of std g_l (x is N(0, 1))."""

    def __init__(self, gains: list[float]):
        super().__init__()
        self.gains = gains
        self.bns = nn.ModuleList(nn.BatchNorm2d(1, affine=False) for _ in gains)
        self.head = nn.Linear(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for g, bn in zip(self.gains, self.bns):
            x = bn(g * x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean((1, 2, 3))[:, None])


X = torch.zeros(16, 1, 32, 32)  # only the shape matters: the proxy draws Gaussian inputs


def gain(model: nn.Module, x: torch.Tensor = X) -> float:
    return scores.score_model(model, x, proxies=["layer_gain"], weights={})["layer_gain"]


def test_layer_gain_is_the_mean_log_std_seen_by_the_batchnorm_layers():
    assert gain(Gains([3.0, 5.0])) == pytest.approx((math.log(3.0) + math.log(5.0)) / 2, abs=0.01)


def test_layer_gain_does_not_grow_with_depth_where_the_zen_score_does():
    one, four = Gains([3.0]), Gains([3.0] * 4)
    assert gain(one) == pytest.approx(math.log(3.0), abs=0.01)
    assert gain(four) == pytest.approx(gain(one), abs=0.01)
    # the Zen-score sums the same terms: three more layers of gain 3 add 3 log 3
    zen = {
        m: scores.score_model(m, X, proxies=["expressivity"], weights={})["expressivity"] for m in (one, four)
    }
    assert zen[four] - zen[one] == pytest.approx(3 * math.log(3.0), abs=0.05)


def test_layer_gain_of_a_gaussian_linear_layer_is_half_the_log_fan_in():
    # weights re-drawn from N(0, 1): each output of a d-input layer on N(0, 1) inputs has variance d
    for d in (16, 256):
        model = nn.Sequential(nn.Linear(d, 32, bias=False), nn.BatchNorm1d(32), nn.Linear(32, 2))
        assert gain(model, torch.zeros(256, d)) == pytest.approx(0.5 * math.log(d), abs=0.05)


def test_layer_gain_without_batchnorm_is_zero_and_the_model_is_untouched():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert gain(model, torch.zeros(4, 8)) == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_cnn_de_score_is_the_calibrated_layer_gain_and_prefers_wide_shallow_networks():
    assert scores.resolve_weights("cnn") == {"layer_gain": 1.0}
    space = spaces.get("cnn", {"preset": "digits"})
    x, y = space.example_inputs(16, seed=0)
    stage = {"block": "basic", "kernel": 3, "expansion": 1.0, "residual": False}
    wide = {"stem_channels": 24, "stages": [{**stage, "channels": c, "depth": 1} for c in (24, 32, 48)]}
    narrow_deep = {"stem_channels": 8, "stages": [{**stage, "channels": c, "depth": 2} for c in (8, 16, 16)]}
    result = {}
    for name, s in (("wide", wide), ("narrow_deep", narrow_deep)):
        space.validate(s)
        torch.manual_seed(0)
        result[name] = scores.score_model(space.build(s), x, y, domain="cnn/digits")
    # the weighted proxy is reported by default beside the DE-Score it makes
    assert set(result["wide"]) == {"layer_gain", "de_score"}
    assert result["wide"]["de_score"] == pytest.approx(
        scores.combine(result["wide"], {"layer_gain": 1.0}, "cnn/digits")
    )
    assert result["wide"]["de_score"] > result["narrow_deep"]["de_score"]
