"""The shortcuts that make scoring cheaper change no value: the fast model copy is a
``copy.deepcopy``, `complexity` on the loss pass's BatchNorm statistics equals `complexity` with
its own freezing pass, the reused float64 buffer gives the same Gram matrix, and targets are
still checked before any costly work."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import denas.scores as scores
from denas.scores import _copy, components, registry
from denas.spaces.layers import TransformerLayer

NO_WEIGHTS = dict.fromkeys(scores.COMPONENTS, 0.0)


class KeepsOwnCopy(nn.Module):
    """A module with its own deep-copy protocol: the fast copy must defer to it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.copies = 0

    def __deepcopy__(self, memo: dict) -> KeepsOwnCopy:
        new = KeepsOwnCopy()
        new.scale = copy.deepcopy(self.scale, memo)
        new.copies = self.copies + 1
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Tangled(nn.Module):
    """Tied weights, a submodule reached twice, a buffer viewing another's storage, a hook, a
    plain list holding a parameter, a set attribute, MultiheadAttention and BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)
        self.b.weight = self.a.weight
        self.shared = nn.LayerNorm(3)
        self.twice = nn.Sequential(self.shared, nn.ReLU(), self.shared)
        self.attn = nn.MultiheadAttention(3, 1, batch_first=True)
        self.norm = nn.BatchNorm1d(3)
        self.own = KeepsOwnCopy()
        self.register_buffer("table", torch.arange(6.0))
        self.register_buffer("window", self.table[2:5])
        self.refs = [self.a.weight, "tag"]
        self.tags = {"x", "y"}
        self.calls: list[int] = []
        self.a.register_forward_hook(lambda m, args, out: None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.twice(self.b(self.a(x)))
        return self.own(self.norm(self.attn(h[:, None], h[:, None], h[:, None])[0][:, 0]))


def _objects(module: nn.Module) -> list[object]:
    """Every object whose identity the copy must mirror, in a fixed order."""
    out: list[object] = []
    for m in module.modules():
        out.append(m)
        out.extend(v for v in vars(m).values() if isinstance(v, (dict, set, list)))  # hooks and all
        tensors = [t for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]
        out.extend(tensors)
        out.extend(t.untyped_storage().data_ptr() for t in tensors)
    out.extend([module.refs[0], module.refs, module.tags])
    return out


def _pattern(objects: list[object]) -> list[int]:
    first: dict[object, int] = {}
    return [first.setdefault(o if isinstance(o, int) else id(o), i) for i, o in enumerate(objects)]


def test_deep_copy_is_a_copy_deepcopy():
    model = Tangled()
    fast, slow = _copy.deep_copy(model), copy.deepcopy(model)
    assert _pattern(_objects(fast)) == _pattern(_objects(slow)) == _pattern(_objects(model))
    assert fast.state_dict().keys() == slow.state_dict().keys()
    for key, value in slow.state_dict().items():
        assert torch.equal(fast.state_dict()[key], value), key
    original = set(map(id, _objects(model))) | {t.untyped_storage().data_ptr() for t in model.buffers()}
    copied = [o for o in _objects(fast) if not isinstance(o, int)]
    assert not original & set(map(id, copied))  # nothing aliases the caller's model
    assert not original & {t.untyped_storage().data_ptr() for t in fast.buffers()}
    assert fast.own.copies == 1 and fast.refs[1] == "tag" and fast.tags == {"x", "y"}
    assert len(fast.a._forward_hooks) == 1 and fast.calls == [] and fast.calls is not model.calls
    x = torch.randn(4, 3)
    fast.eval(), slow.eval()
    assert torch.equal(fast(x), slow(x))


def _bn_cnn(dropout: bool) -> nn.Module:
    torch.manual_seed(3)
    layers = [nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()]
    layers += [nn.Dropout(0.2)] if dropout else []
    layers += [nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize(
    ("dropout", "rows", "shared"),
    [(False, 8, True), (True, 8, False), (False, 20, False)],
    ids=["shared", "dropout-own-pass", "ntk-slice-own-pass"],
)
def test_complexity_on_the_loss_pass_statistics_equals_its_own_freezing_pass(
    monkeypatch, dropout, rows, shared
):
    model = _bn_cnn(dropout)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(rows, 2, 6, 6, generator=g), torch.randint(0, 5, (rows,), generator=g)
    alone = {
        p: scores.score_model(model, x, y, proxies=[p], weights=NO_WEIGHTS)[p]
        for p in ("complexity", "diversity")
    }
    passes = []
    real = components._freeze_batch_statistics
    monkeypatch.setattr(components, "_freeze_batch_statistics", lambda m, i: passes.append(1) or real(m, i))
    both = scores.score_model(model, x, y, proxies=["complexity", "diversity"], weights=NO_WEIGHTS)
    assert both == {**alone, "de_score": both["de_score"]}
    assert passes == ([] if shared else [1])


def test_the_float64_buffer_gives_the_same_gram_matrix():
    g = torch.Generator().manual_seed(0)
    big = components._SMALL_ROWS + 3
    grads = [
        torch.randn(5, big, generator=g),
        torch.randn(5, 7, generator=g),
        torch.randn(big // 2, 5, generator=g).T,  # non-contiguous rows
        torch.randn(5, big // 3, generator=g),
    ]
    reference = sum(t.double() @ t.double().T for t in grads)
    buffer = torch.empty(5 * big, dtype=torch.float64)
    assert torch.equal(sum(components._gram(t, buffer) for t in grads), reference)
    eig = torch.linalg.eigvalsh(reference)
    assert components.ntk_condition_number(grads) == float(eig[-1]) / float(eig[0])


@pytest.mark.parametrize(
    ("model", "weights"),
    [
        (_bn_cnn(False), {"complexity": 1.0}),  # checked on the freezing pass
        (nn.Sequential(nn.Flatten(), nn.Linear(72, 5)), {"complexity": 1.0}),  # no BN: a probe
        (_bn_cnn(False), {"complexity": 1.0, "diversity": 1.0}),  # checked by the loss pass
        (_bn_cnn(False), {"expressivity": 1.0}),  # a probe before anything else
    ],
    ids=["freezing-pass", "no-bn", "loss-pass", "probe"],
)
def test_targets_that_do_not_fit_fail_before_the_costly_work(monkeypatch, model, weights):
    def costly(*_args: object) -> None:
        raise AssertionError("targets must be checked before any costly work")

    monkeypatch.setattr(components, "per_sample_gradients", costly)
    monkeypatch.setattr(components, "gaussian_init", costly)
    x = torch.randn(8, 2, 6, 6)
    with pytest.raises(scores.ScoreInputError, match="does not match the model output"):
        scores.score_model(model, x, torch.zeros(8, 2, dtype=torch.long), weights={**NO_WEIGHTS, **weights})


def test_a_context_checks_the_targets_once():
    model = _bn_cnn(False)
    x, y = torch.randn(8, 2, 6, 6), torch.randint(0, 5, (8,))
    ctx = registry.ScoreContext(model=model, inputs=x, targets=y)
    ctx.check_targets()
    work = ctx.fresh_model()
    with torch.no_grad():
        work[0].weight.mul_(2)
    ctx.check_targets()  # already checked: must not reset the working copy again
    assert torch.equal(work[0].weight, model[0].weight * 2)


class _Encoder(nn.Module):
    """Our spaces' attention (a module named "...Attention"), LayerNorm and a feed-forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.embed = nn.Linear(3, 8)
        self.layer = TransformerLayer(8, heads=2, head_dim=4, hidden=16)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(self.embed(x)).mean(1))


class _Mha(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.embed = nn.Linear(3, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.head(self.attn(h, h, h, need_weights=False)[0].mean(1))


@pytest.mark.parametrize(
    ("make", "shape"),
    [(_Encoder, (6, 7, 3)), (_Mha, (6, 7, 3)), (lambda: _bn_cnn(False), (6, 2, 6, 6))],
    ids=["named-attention", "multihead", "cnn"],
)
def test_diversity_on_its_own_gradients_equals_diversity_on_the_full_loss_pass(make, shape):
    model = make()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(*shape, generator=g), torch.randint(0, 5, (shape[0],), generator=g)
    alone = scores.score_model(model, x, y, proxies=["diversity"], weights=NO_WEIGHTS)
    shared = scores.score_model(model, x, y, proxies=["diversity", "grad_norm"], weights=NO_WEIGHTS)
    assert alone["diversity"] == shared["diversity"] > 0

    ctx = registry.ScoreContext(model=model, inputs=x, targets=y, plan=("diversity",))
    work = ctx.loss_gradients(only=components._diversity_weights)
    got = {id(p): p.grad is not None for p in work.parameters()}
    read = {id(t) for t in components._diversity_weights(work)}
    assert {i for i, has in got.items() if has} == read  # only what diversity reads
    full = registry.ScoreContext(model=model, inputs=x, targets=y, plan=("diversity", "snip"))
    assert all(
        p.grad is not None for p in full.loss_gradients(only=components._diversity_weights).parameters()
    )
