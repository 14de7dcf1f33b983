"""`score_model`: every requested proxy and the DE-Score of one model on one example batch."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from denas.scores import _model, descore, registry
from denas.scores._model import Batch, LossFn, ScoreInputError, Targets

log = logging.getLogger(__name__)


def _check_batch(inputs: Batch, targets: Targets | None) -> None:
    tensors = _model.tensors_of(inputs)
    if not tensors:
        raise ScoreInputError("inputs: the example batch holds no tensor")
    sizes = {int(t.shape[0]) if t.dim() else 0 for t in tensors}
    if len(sizes) != 1 or 0 in sizes:
        raise ScoreInputError(
            f"inputs: every tensor needs the same leading batch dimension, got sizes {sorted(sizes)}"
        )
    n = sizes.pop()
    if targets is not None and _model.target_rows(targets) != n:
        shape = tuple(targets.shape)[:1] if isinstance(targets, torch.Tensor) else _model.target_rows(targets)
        raise ScoreInputError(
            f"targets: leading dimension {shape} does not match the batch size {n} of the inputs"
        )


def score_model(
    model: nn.Module,
    inputs: Batch,
    targets: Targets | None = None,
    proxies: Iterable[str] | None = None,
    weights: Mapping[str, float] | str | None = None,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    domain: str | None = None,
) -> dict[str, float]:
    """Score ``model`` without training it.

    ``inputs`` is an example batch: a tensor (``model(x)``), a tuple (``model(*x)``) or a dict
    of tensors (``model(**x)`` when ``forward`` takes those keywords, else ``model(x)``).
    ``targets`` are class indices (cross-entropy on logits flattened to ``[-1, classes]``, so
    frame-level targets work too) or float targets shaped like the output (MSE); ``None`` draws
    seeded random class indices (a label-free fallback, the same regime as synthetic batches).
    ``loss_fn(output, targets)`` replaces the default loss; with one, ``targets`` may also be a
    dict of per-sample tensors and lists (a task's targets: CTC label sequences, QA spans), which
    proxies working on sub-batches slice along the batch (`denas.train.taskdata` builds both).

    Returns each requested proxy (default: the weighted DE-Score components) and ``"de_score"``, the
    weighted sum of transformed components (`denas.scores.descore`); the components the weights
    need are always computed. ``weights`` is a mapping (updating ``domain``'s default weights key
    by key) or a domain name. A ``latency`` weight
    measures latency (ms, batch of the example inputs, 1 thread) and folds it in. The caller's
    model is never modified; the result depends only on the model, the batch and ``seed``.
    """
    _check_batch(inputs, targets)
    if isinstance(weights, str):
        domain, weights = weights, None
    resolved = descore.resolve_weights(weights, domain)
    # default: the weighted proxies, components first (a zero-weight component would cost time
    # for nothing); a weighted latency is measured and folded in, listed only when requested
    default = [c for c in descore.COMPONENTS if c in resolved]
    default += [c for c in resolved if c not in default and c != "latency"]
    requested = list(dict.fromkeys(proxies if proxies is not None else default))
    for name in requested:
        if name != "latency":
            registry.get(name)  # unknown names fail before any work
    needed = list(dict.fromkeys([*requested, *resolved]))
    # proxies sharing the loss pass first: `complexity` then reuses its BatchNorm statistics
    # (each proxy's value is the same in any order)
    needed.sort(key=lambda name: name == "latency" or not registry.get(name).loss_pass)
    ctx = registry.ScoreContext(
        model=model, inputs=inputs, targets=targets, loss_fn=loss_fn, seed=seed, plan=tuple(needed)
    )
    first = registry.get(needed[0]) if needed and needed[0] != "latency" else None
    if first is None or not first.checks_targets:
        ctx.check_targets()  # fail fast on targets that do not fit the output (one sample, cheap)
    was_training = model.training
    values: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        for name in needed:
            torch.manual_seed(seed)
            if name == "latency":
                from denas.scores.latency import measure_latency

                values[name] = measure_latency(model, inputs).median_ms
                continue
            value = float(registry.get(name).fn(ctx))
            if not math.isfinite(value):
                log.warning("proxy %s is %s for this model", name, value)
            values[name] = value
    model.train(was_training)
    result = {k: values[k] for k in requested}
    result["de_score"] = descore.combine(values, resolved, domain)
    return result
