"""One working copy per scoring context, shared by every proxy: each proxy computed on it equals
the same proxy recomputed the way it was before the copy was shared (its own deep copy, the
pre-change formulas), bit for bit, whatever ran before it on the shared copy."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import denas.scores as scores
from denas.scores import _model, components, registry


class TiedCNN(nn.Module):
    """BatchNorm (buffers that `.double()` replaces), dropout, and two linears sharing a weight."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1)
        )
        self.norm = nn.BatchNorm2d(8)
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
        self.b.weight = self.a.weight
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm(self.body(x))).mean((2, 3))
        return self.head(self.drop(torch.relu(self.b(torch.relu(self.a(h))))))


class TinyAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.proj = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return self.head(self.attn(h, h, h)[0].mean(1))  # need_weights: grasp double-backprops


def _cases() -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    cnn = (TiedCNN(), torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g))
    attn = (TinyAttention(), torch.randn(6, 5, 4, generator=g), torch.randint(0, 3, (6,), generator=g))
    return [cnn, attn]


def reference_synflow(model: nn.Module, x: torch.Tensor, seed: int) -> float:
    """Synflow as computed before the copy was shared: on a private deep copy."""
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(True)
        p.grad = None
    m = _model.set_scoring_mode(m).double().eval()
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    m(torch.ones_like(x[:1], dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        return float(sum((p * p.grad).abs().sum() for p in m.parameters() if p.grad is not None))


def reference_complexity(model: nn.Module, x: torch.Tensor, seed: int) -> float:
    """The NTK condition number with the pre-change Gram formula, on a private deep copy."""
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(True)
    _model.set_scoring_mode(m)
    xs = x[: min(len(x), components.NTK_MAX_BATCH)]
    components._freeze_batch_statistics(m, xs)
    grads = components.per_sample_gradients(m, xs)
    gram = sum(g.double() @ g.double().T for g in grads)
    eig = torch.linalg.eigvalsh(gram)
    top = float(eig[-1])
    return min(top / max(float(eig[0]), top / components.COND_CAP), components.COND_CAP)


def alone(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    """One proxy in a context of its own: its working copy is a brand-new deep copy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return float(
            registry.get(name).fn(registry.ScoreContext(model=model, inputs=x, targets=y, seed=seed))
        )


@pytest.mark.parametrize("case", [0, 1], ids=["bn-tied-cnn", "attention"])
def test_every_proxy_on_the_shared_copy_equals_its_recomputation_on_a_private_copy(case):
    model, x, y = _cases()[case]
    seed = 5
    # saliency first: it turns the shared copy into float64 with |theta| and reset BN statistics
    order = ["saliency", *[p for p in scores.names() if p not in ("saliency", "synflow")], "synflow"]
    shared = scores.score_model(
        model, x, y, proxies=order, weights=dict.fromkeys(scores.COMPONENTS, 1.0), seed=seed
    )
    for name in order:
        assert shared[name] == alone(name, model, x, y, seed), name
    assert shared["saliency"] == shared["synflow"] == reference_synflow(model, x, seed)
    assert shared["complexity"] == reference_complexity(model, x, seed)
    assert math.isfinite(shared["de_score"])


def test_the_working_copy_is_restored_after_double_and_in_place_changes():
    model, x, y = _cases()[0]
    ctx = registry.ScoreContext(model=model, inputs=x, targets=y)
    work = ctx.fresh_model()
    params = {n: p for n, p in work.named_parameters()}
    buffers = {n: b for n, b in work.named_buffers()}
    work.double()
    with torch.no_grad():
        for p in work.parameters():
            p.abs_().mul_(3)
    for m in work.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    work.eval()
    again = ctx.fresh_model()
    assert again is work and again.training and not again.drop.training
    assert again.a.weight is again.b.weight is params["a.weight"]
    assert {n: b for n, b in again.named_buffers()} == buffers  # the same buffer objects put back
    for (name, t), (_, src) in zip(
        [*again.named_parameters(), *again.named_buffers()],
        [*model.named_parameters(), *model.named_buffers()],
    ):
        assert t.dtype == src.dtype and torch.equal(t, src), name
    assert all(p.requires_grad and p.grad is None for p in again.parameters())


def test_a_de_score_makes_a_single_deep_copy_of_the_model(monkeypatch):
    model, x, y = _cases()[0]
    calls = []
    real = registry.deep_copy

    def counting(obj):
        calls.append(type(obj).__name__)
        return real(obj)

    monkeypatch.setattr(registry, "deep_copy", counting)
    scores.score_model(model, x, y, weights=dict.fromkeys(scores.COMPONENTS, 1.0))
    assert calls == ["TiedCNN"]
