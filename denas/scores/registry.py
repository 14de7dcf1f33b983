"""One registry of train-free proxies, and the per-model context every proxy function receives.

A proxy is a function ``fn(ctx: ScoreContext) -> float``. It must never touch ``ctx.model``
(the caller's module): it asks ``ctx.fresh_model()`` for the context's working copy, reset to
the caller's state. Intermediate results
several proxies share (the loss gradient) are computed once per context by ``ctx.cached`` on
their own fresh copy, so a proxy's value never depends on which proxies ran before it. The
loss pass also keeps its BatchNorm batch statistics (``batch_statistics``: `complexity` freezes
exactly those), and whichever pass first runs the model on the batch checks the targets
(``check_targets``), so no pass is made twice. A proxy that is the only one of the call (``plan``)
needing the loss pass gets a backward that computes just the gradients it reads.

The working copy is the only deep copy a context makes: a proxy may change its values, dtype
(``.double()``), buffers, modes and hooks' effects in place, because ``fresh_model`` puts back
every parameter and buffer object and reloads the caller's values before handing it out again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from denas.scores import _model
from denas.scores._copy import deep_copy
from denas.scores._model import Batch, LossFn


def _pair_tensors(
    work: nn.Module, source: nn.Module
) -> tuple[list[tuple[dict[str, Any], str, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The parameter and buffer slots of ``work`` (a deep copy of ``source``) and, once per
    distinct tensor (tied weights), the tensor of ``source`` it was copied from."""
    slots: list[tuple[dict[str, Any], str, torch.Tensor]] = []
    sources: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: set[int] = set()
    for w_mod, s_mod in zip(work.modules(), source.modules(), strict=True):
        for kind in ("_parameters", "_buffers"):
            w_dict, s_dict = getattr(w_mod, kind), getattr(s_mod, kind)
            for name, t in w_dict.items():
                if t is None:
                    continue
                slots.append((w_dict, name, t))
                if id(t) not in seen:
                    seen.add(id(t))
                    sources.append((t, s_dict[name]))
    return slots, sources


class UnknownProxyError(KeyError):
    """A proxy name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Proxy:
    name: str
    fn: Callable[[ScoreContext], float]
    description: str
    # uses `ScoreContext.loss_gradients`: computed first, so later proxies reuse that pass
    loss_pass: bool = False
    # calls `ScoreContext.check_targets` (or the loss pass) before its costly work
    checks_targets: bool = False


_PROXIES: dict[str, Proxy] = {}


def register(
    name: str, description: str, *, loss_pass: bool = False, checks_targets: bool = False
) -> Callable[[Callable[[ScoreContext], float]], Callable]:
    def decorator(fn: Callable[[ScoreContext], float]) -> Callable[[ScoreContext], float]:
        _PROXIES[name] = Proxy(name, fn, description, loss_pass, checks_targets or loss_pass)
        return fn

    return decorator


def get(name: str) -> Proxy:
    try:
        return _PROXIES[name]
    except KeyError:
        raise UnknownProxyError(f"unknown proxy '{name}'; known proxies: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(_PROXIES)


@dataclass
class ScoreContext:
    """Everything a proxy may read: the caller's model (read-only), the batch, the loss, a seed."""

    model: nn.Module
    inputs: Batch
    targets: _model.Targets | None = None
    loss_fn: LossFn | None = None
    seed: int = 0
    # the proxies `score_model` computes with this context, in order (empty: not known)
    plan: tuple[str, ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict)
    _work: nn.Module | None = None
    # every (module._parameters or module._buffers, name, tensor) slot of the working copy
    _slots: list[tuple[dict[str, Any], str, torch.Tensor]] = field(default_factory=list)
    # each distinct working tensor and the caller's tensor it mirrors (the caller's model is
    # never modified, so it is the snapshot: no second copy of the weights is kept)
    _sources: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    _targets_checked: bool = False

    def fresh_model(self) -> nn.Module:
        """The context's working copy, reset to the caller's weights and buffers, in scoring mode,
        every parameter trainable, no grads. One deep copy per context: resetting it costs tensor
        copies only (a deep copy of a 50-layer model costs as much as a forward pass). Valid
        until the next call; a proxy that must keep a model longer uses ``private_model``."""
        if self._work is None:
            self._work = deep_copy(self.model)
            self._slots, self._sources = _pair_tensors(self._work, self.model)
        else:
            self._restore()
        return self._prepare(self._work)

    def private_model(self) -> nn.Module:
        """A deep copy of the caller's model that no other proxy will touch."""
        return self._prepare(deep_copy(self.model))

    def _restore(self) -> None:
        with torch.no_grad():
            for slots, name, t in self._slots:  # `.double()` / `.to()` put new buffer objects in
                if slots.get(name) is not t:
                    slots[name] = t
            for t, source in self._sources:
                if t.dtype != source.dtype or t.shape != source.shape or t.device != source.device:
                    t.data = source.detach().clone()  # a parameter converted in place by `.double()`
                else:
                    t.copy_(source)

    @staticmethod
    def _prepare(model: nn.Module) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
            p.grad = None
        return _model.set_scoring_mode(model)

    def loss(self, out: torch.Tensor) -> torch.Tensor:
        targets = self.targets if self.targets is not None else _model.pseudo_targets(out, self.seed)
        return (self.loss_fn or _model.default_loss)(out, targets)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self._cache[key] = compute()
        return self._cache[key]

    def check_targets(self, out: torch.Tensor | None = None) -> None:
        """Fail fast on targets that do not fit the model output: the loss of ``out`` (logits of
        the first rows of the batch, from a pass a proxy makes anyway) against as many targets,
        or of a one-sample eval-mode pass when ``out`` is None (this resets the working copy).
        Once per context; nothing to do without targets."""
        if self.targets is None or self._targets_checked:
            return
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            if out is None:
                out = _model.logits(self.fresh_model().eval(), _model.slice_batch(self.inputs, 0, 1))
            (self.loss_fn or _model.default_loss)(out, _model.slice_targets(self.targets, 0, out.shape[0]))
        self._targets_checked = True

    def batch_statistics(self, n: int) -> _model.BatchStatistics | None:
        """The BatchNorm statistics of the loss pass (`loss_gradients`) if it has run over exactly
        the first ``n`` samples with every module in train mode: then they equal those of a
        train-mode pass over those samples (the pass `complexity` freezes), which need not run."""
        return self._cache.get(("batch_statistics", n))

    def _loss_pass(
        self, model: nn.Module, only: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor | None, ...]:
        """Forward, loss and backward on the whole batch (into ``.grad``, or the gradients of
        ``only`` returned). Records the BatchNorm statistics and checks the targets on the way."""
        # batch statistics in train mode, so resetting the running ones changes no output
        with _model.cumulative_batchnorm(model) as bns:
            out = _model.logits(model, self.inputs)
        if all(m.training for m in model.modules()):  # no dropout: the pass `complexity` needs
            rows = _model.batch_size(self.inputs)
            self._cache[("batch_statistics", rows)] = _model.get_batch_statistics(bns)
        loss = self.loss(out)
        self._targets_checked = True
        if not only:  # everything, or nothing asked for (a backward all the same, as before)
            loss.backward()
            return ()
        return torch.autograd.grad(loss, only, allow_unused=True)

    def loss_gradients(self, only: Callable[[nn.Module], list[torch.Tensor]] | None = None) -> nn.Module:
        """A fresh model whose ``.grad`` holds the loss gradient of one forward+backward on the
        batch (computed once per context, shared by grad_norm, snip and diversity).

        ``only(model)`` lists the tensors the caller reads. When the plan shows no other proxy
        needing the loss pass, the backward computes just their gradients (the same numbers:
        a tensor's gradient does not depend on which others are asked for; the weight gradients
        of every other layer are skipped) and every other ``.grad`` stays None."""
        users = [n for n in self.plan if n != "latency" and get(n).loss_pass]
        if only is not None and len(users) == 1 and "loss_gradients" not in self._cache:
            with torch.random.fork_rng(devices=[]):  # the RNG state `cached` gives the full pass
                torch.manual_seed(self.seed)
                tensors = only(self.fresh_model())
                grads = self._loss_pass(self._work, tensors)
            model = self.fresh_model()  # the same tensor objects, their values reloaded
            for t, g in zip(tensors, grads, strict=True):
                t.grad = g
            return model

        def compute() -> dict[str, torch.Tensor]:
            model = self.fresh_model()
            self._loss_pass(model, None)
            return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

        grads = self.cached("loss_gradients", compute)
        model = self.fresh_model()
        for n, p in model.named_parameters():
            p.grad = grads.get(n)
        return model
