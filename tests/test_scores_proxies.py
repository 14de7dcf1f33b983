"""Each proxy against a closed form derived by hand on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import denas.scores as scores


def _linear(d_in: int, d_out: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out, bias=False)


def test_synflow_of_two_layer_bias_free_linear_net_is_twice_the_path_sum():
    # R = 1^T |W2| |W1| 1 and each layer's sum |W . dR/dW| equals R, so synflow = 2 R.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False))
    w1, w2 = net[0].weight.detach().abs().double(), net[1].weight.detach().abs().double()
    expected = 2 * float(torch.ones(3, dtype=torch.float64) @ w2 @ w1 @ torch.ones(5, dtype=torch.float64))
    got = scores.score_model(net, torch.randn(4, 5), proxies=["synflow", "saliency"])
    assert got["synflow"] == pytest.approx(expected, rel=1e-12)
    assert got["saliency"] == got["synflow"]


def test_ntk_condition_number_of_bias_free_linear_model_is_that_of_the_input_gram_matrix():
    # d(sum_k (W x)_k)/dW = 1 x^T, so the NTK Gram is K * X X^T: same condition number.
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(1))
    eig = torch.linalg.eigvalsh((x @ x.T).double())
    got = scores.score_model(_linear(10, 3), x, proxies=["complexity"])["complexity"]
    assert got == pytest.approx(float(eig[-1] / eig[0]), rel=1e-6)


def test_snip_and_grad_norm_of_a_linear_classifier():
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(2))
    y = torch.arange(8) % 3
    model = _linear(5, 3)
    w = model.weight.detach()
    # dL/dW of mean cross-entropy = (softmax(Wx) - onehot)^T x / n
    g = (F.softmax(x @ w.T, 1) - F.one_hot(y, 3)).T @ x / 8
    got = scores.score_model(model, x, y, proxies=["snip", "grad_norm"])
    assert got["snip"] == pytest.approx(float((w * g).abs().sum()), rel=1e-5)
    assert got["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-5)


def test_diversity_uses_the_true_nuclear_norm():
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(3))
    y = torch.arange(8) % 4
    model = _linear(6, 4)
    w = model.weight.detach()
    g = (F.softmax(x @ w.T, 1) - F.one_hot(y, 4)).T @ x / 8
    nuclear = float(torch.linalg.svdvals(w).sum() * torch.linalg.svdvals(g).sum())
    frobenius = float(w.norm() * g.norm())
    got = scores.score_model(model, x, y, proxies=["diversity"])["diversity"]
    assert got == pytest.approx(nuclear, rel=1e-5)
    assert abs(got - frobenius) > 1e-3 * nuclear


class TinyAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.mlp = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn(x, x, x, need_weights=False)[0]
        return self.head(self.mlp(h).mean(1))


def test_diversity_of_an_attention_model_counts_only_the_q_k_v_and_output_projections():
    torch.manual_seed(0)
    model = TinyAttention()
    x = torch.randn(4, 5, 8)
    y = torch.tensor([0, 1, 2, 0])
    probe = TinyAttention()
    probe.load_state_dict(model.state_dict())
    F.cross_entropy(probe(x), y).backward()
    a = probe.attn

    def nuc(t: torch.Tensor) -> float:
        return float(torch.linalg.svdvals(t.double()).sum())

    pairs = [
        *zip(a.in_proj_weight.chunk(3), a.in_proj_weight.grad.chunk(3)),
        (a.out_proj.weight, a.out_proj.weight.grad),
    ]
    expected = sum(nuc(w.detach()) * nuc(g) for w, g in pairs)
    got = scores.score_model(model, x, y, proxies=["diversity"])["diversity"]
    assert got == pytest.approx(expected, rel=1e-5)


class Scaled(nn.Module):
    """Features are 3x (optionally batch-normalised) inputs: the Zen-score has a closed form."""

    def __init__(self, bn: bool):
        super().__init__()
        self.bn = nn.BatchNorm2d(1, affine=False) if bn else nn.Identity()
        self.head = nn.Linear(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(3.0 * x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean((1, 2, 3))[:, None])


def test_expressivity_is_log_mean_feature_change_plus_bn_variance_term():
    x = torch.zeros(8, 1, 50, 50)  # only the shape matters: Zen-score draws Gaussian inputs
    d = 50 * 50
    # E|3 * 0.01 * e| summed over d Gaussian entries = 3 * 0.01 * d * sqrt(2/pi)
    plain = math.log(3 * 0.01 * d * math.sqrt(2 / math.pi))
    assert scores.score_model(Scaled(bn=False), x, proxies=["expressivity"])["expressivity"] == pytest.approx(
        plain, abs=0.02
    )
    # BN divides the change by std(3x) = 3 and its variance term adds back log 3.
    with_bn = scores.score_model(Scaled(bn=True), x, proxies=["expressivity"])["expressivity"]
    assert with_bn == pytest.approx(plain, abs=0.03)


def test_jacob_cov_of_a_linear_model_matches_its_rank_one_closed_form():
    # Every sample has input Jacobian W^T 1: the correlation matrix is all ones, eigenvalues (n, 0, ..).
    n, k = 6, 1e-5
    got = scores.score_model(_linear(7, 3), torch.randn(n, 7), proxies=["jacob_cov"])["jacob_cov"]
    expected = -(math.log(n + k) + 1 / (n + k) + (n - 1) * (math.log(k) + 1 / k))
    assert got == pytest.approx(expected, rel=1e-4)


def test_naswot_is_log_det_of_the_activation_agreement_kernel():
    x = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])
    model = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
    codes = (x > 0).double()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T  # agreements: [[3,2,1],[2,3,2],[1,2,3]]
    got = scores.score_model(model, x, proxies=["naswot"])["naswot"]
    assert got == pytest.approx(float(torch.logdet(kernel)), rel=1e-9)


def test_fisher_of_a_linear_layer():
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 1, 2, 0, 1])
    model = _linear(4, 3)
    act = x @ model.weight.detach().T
    g = (F.softmax(act, 1) - F.one_hot(y, 3)) / 5  # dL/d(act) of the mean loss
    expected = float(0.5 * (act * g).pow(2).mean(0).sum())
    assert scores.score_model(model, x, y, proxies=["fisher"])["fisher"] == pytest.approx(expected, rel=1e-5)


def test_grasp_is_minus_theta_hessian_gradient_product():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    model = _linear(3, 2)
    w0 = model.weight.detach().clone()

    def loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x @ w.T, y)

    grad = torch.autograd.functional.jacobian(loss, w0).reshape(-1)
    hess = torch.autograd.functional.hessian(loss, w0).reshape(6, 6)
    expected = float(-(w0.reshape(-1) * (hess @ grad)).sum())
    assert scores.score_model(model, x, y, proxies=["grasp"])["grasp"] == pytest.approx(expected, rel=1e-4)


def test_zico_sums_log_of_mean_over_std_of_sub_batch_gradients():
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(6))
    y = torch.arange(8) % 3
    model = _linear(4, 3)
    w = model.weight.detach()
    grads = []
    for lo in (0, 2, 4, 6):  # 8 samples -> 4 sub-batches of 2
        xs, ys = x[lo : lo + 2], y[lo : lo + 2]
        grads.append((F.softmax(xs @ w.T, 1) - F.one_hot(ys, 3)).T @ xs / 2)
    g = torch.stack(grads).double()
    expected = math.log(float((g.abs().mean(0) / g.std(0, correction=0)).sum()))
    assert scores.score_model(model, x, y, proxies=["zico"])["zico"] == pytest.approx(expected, rel=1e-5)


def test_zico_divides_by_the_population_std_as_the_paper_does():
    """One weight, loss = sum of outputs: the sub-batch gradients are the sums of x over each
    half, 1+1 = 2 and 3+3 = 6; mean |g| = 4, population std = 2 (the sample std, 2*sqrt(2),
    would give log sqrt(2)), so ZiCo = log 2 exactly."""
    model = nn.Linear(1, 1, bias=False)
    x = torch.tensor([[1.0], [1.0], [3.0], [3.0]])
    got = scores.score_model(model, x, proxies=["zico"], loss_fn=lambda out, _targets: out.sum())
    assert got["zico"] == pytest.approx(math.log(2.0), rel=1e-12)


def test_params_and_flops_count_a_conv_and_a_linear_layer():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    got = scores.score_model(model, torch.randn(2, 2, 5, 5), proxies=["params", "flops"])
    assert got["params"] == 2 * 4 * 9 + 4 + 100 * 3 + 3
    assert got["flops"] == 2 * 4 * 9 * 25 + 100 * 3  # multiply-accumulates per sample


def test_grasp_works_through_fused_attention_kernels():
    # nn.MultiheadAttention without need_weights runs a fused SDPA kernel that has no double
    # backward; grasp (a Hessian-gradient product) must still work and equal the math kernel's.
    class Attn(nn.Module):
        def __init__(self, need_weights: bool) -> None:
            super().__init__()
            torch.manual_seed(3)
            self.proj = nn.Linear(4, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)
            self.need_weights = need_weights

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.proj(x)
            return self.head(self.attn(h, h, h, need_weights=self.need_weights)[0].mean(1))

    x = torch.randn(4, 5, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    fused = scores.score_model(Attn(False), x, y, proxies=["grasp"])["grasp"]
    plain = scores.score_model(Attn(True), x, y, proxies=["grasp"])["grasp"]
    assert math.isfinite(fused) and fused == pytest.approx(plain, rel=1e-4, abs=1e-9)
