"""One registry of train-free proxies, and the per-model context every proxy function receives.

A proxy is a function ``fn(ctx: ScoreContext) -> float``. It must never touch ``ctx.model``
(the caller's module): it asks ``ctx.fresh_model()`` for the context's working copy, reset to
the caller's state. Intermediate results
several proxies share (the loss gradient) are computed once per context by ``ctx.cached`` on
their own fresh copy, so a proxy's value never depends on which proxies ran before it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from denas.scores import _model
from denas.scores._model import Batch, LossFn


class UnknownProxyError(KeyError):
    """A proxy name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Proxy:
    name: str
    fn: Callable[[ScoreContext], float]
    description: str


_PROXIES: dict[str, Proxy] = {}


def register(name: str, description: str) -> Callable[[Callable[[ScoreContext], float]], Callable]:
    def decorator(fn: Callable[[ScoreContext], float]) -> Callable[[ScoreContext], float]:
        _PROXIES[name] = Proxy(name, fn, description)
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
    targets: torch.Tensor | None = None
    loss_fn: LossFn | None = None
    seed: int = 0
    _cache: dict[str, Any] = field(default_factory=dict)
    _work: nn.Module | None = None
    _snapshot: list[torch.Tensor] = field(default_factory=list)

    def fresh_model(self) -> nn.Module:
        """The context's working copy, reset to the caller's weights and buffers, in scoring mode,
        every parameter trainable, no grads. One deep copy per context: resetting it costs tensor
        copies only (a deep copy of a 50-layer model costs as much as a forward pass). Valid
        until the next call; a proxy that must keep a model longer uses ``private_model``."""
        if self._work is None:
            self._work = copy.deepcopy(self.model)
            self._snapshot = [t.detach().clone() for t in self._tensors(self._work)]
        else:
            with torch.no_grad():
                for t, saved in zip(self._tensors(self._work), self._snapshot):
                    t.copy_(saved)
        return self._prepare(self._work)

    def private_model(self) -> nn.Module:
        """A deep copy of the caller's model that no other proxy will touch."""
        return self._prepare(copy.deepcopy(self.model))

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]

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

    def loss_gradients(self) -> nn.Module:
        """A fresh model whose ``.grad`` holds the loss gradient of one forward+backward on the
        batch (computed once per context, shared by grad_norm, snip and diversity)."""

        def compute() -> dict[str, torch.Tensor]:
            model = self.fresh_model()
            self.loss(_model.logits(model, self.inputs)).backward()
            return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

        grads = self.cached("loss_gradients", compute)
        model = self.fresh_model()
        for n, p in model.named_parameters():
            p.grad = grads.get(n)
        return model
