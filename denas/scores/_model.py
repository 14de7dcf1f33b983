"""How scoring talks to an arbitrary `torch.nn.Module`: calling it, reading its output, its loss.

Calling convention (documented for `score_model` users):

* a tensor batch is passed positionally: ``model(x)``;
* a tuple/list batch is unpacked: ``model(*inputs)``;
* a dict batch is passed as keywords, ``model(**inputs)``, when ``forward`` accepts every key
  as a keyword (Hugging Face models do); otherwise the dict itself is passed positionally,
  ``model(inputs)`` (our `bert` space's wrapper takes the dict).

The output may be a tensor, a tuple/list (first tensor wins), a dict or a Hugging Face
``ModelOutput`` (``logits`` if present, else the first tensor value).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Batch = Any  # torch.Tensor | Mapping[str, torch.Tensor] | tuple[torch.Tensor, ...]
# class indices / float targets, or a dict of per-sample task targets (with a matching loss_fn)
Targets = Any  # torch.Tensor | Mapping[str, Any]
LossFn = Callable[[torch.Tensor, Any], torch.Tensor]

NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)


class ScoreInputError(ValueError):
    """The example batch, the targets or the model output do not fit together."""


def _forward_takes_keywords(fn: Callable[..., Any], keys: list[str]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return set(keys) <= names


def call_args(forward: Callable[..., Any], inputs: Batch) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The (args, kwargs) with which a module whose forward is ``forward`` receives ``inputs``."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        if _forward_takes_keywords(forward, list(inputs)):
            return (), dict(inputs)
        return (inputs,), {}
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise ScoreInputError(
        f"inputs: expected a tensor, a dict of tensors or a tuple of tensors, got {type(inputs).__name__}"
    )


def call(fn: Callable[..., Any], inputs: Batch, owner: nn.Module | None = None) -> Any:
    """Call ``fn`` (a module or its ``forward_features``) on a batch, per the convention above."""
    forward = owner.forward if (owner is not None and fn is owner) else fn
    args, kwargs = call_args(forward, inputs)
    return fn(*args, **kwargs)


def first_tensor(output: Any) -> torch.Tensor:
    """The logits of a model output (tensor, tuple, dict or Hugging Face ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) or hasattr(output, "keys"):
        logits = output.get("logits") if hasattr(output, "get") else None
        if isinstance(logits, torch.Tensor):
            return logits
        for value in output.values():
            if isinstance(value, torch.Tensor):
                return value
    if isinstance(output, (tuple, list)):
        for value in output:
            if isinstance(value, torch.Tensor):
                return value
            if isinstance(value, (tuple, list, Mapping)):
                return first_tensor(value)
    raise ScoreInputError(f"model output: found no tensor in a {type(output).__name__}")


def logits(model: nn.Module, inputs: Batch) -> torch.Tensor:
    return first_tensor(call(model, inputs, owner=model))


def batch_size(inputs: Batch) -> int:
    tensors = tensors_of(inputs)
    if not tensors:
        raise ScoreInputError("inputs: no tensor in the example batch")
    return int(tensors[0].shape[0])


def tensors_of(inputs: Batch) -> list[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    if isinstance(inputs, Mapping):
        return [v for v in inputs.values() if isinstance(v, torch.Tensor)]
    if isinstance(inputs, (tuple, list)):
        return [v for v in inputs if isinstance(v, torch.Tensor)]
    return []


def map_tensors(inputs: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    """Apply ``fn`` to every tensor of a batch, keeping its container type."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(fn(v) if isinstance(v, torch.Tensor) else v for v in inputs)
    return inputs


def slice_batch(inputs: Batch, start: int, stop: int) -> Batch:
    return map_tensors(inputs, lambda t: t[start:stop])


def target_rows(targets: Any) -> int | None:
    """Samples a batch of targets holds: a tensor's leading dimension, or for a dict of task
    targets (CTC label sequences, QA spans) the common length of its per-sample entries."""
    if isinstance(targets, torch.Tensor):
        return int(targets.shape[0]) if targets.dim() else None
    if isinstance(targets, Mapping):
        rows = {
            int(v.shape[0]) if isinstance(v, torch.Tensor) else len(v)
            for v in targets.values()
            if (isinstance(v, torch.Tensor) and v.dim()) or isinstance(v, (list, tuple))
        }
        return rows.pop() if len(rows) == 1 else None
    return None


def slice_targets(targets: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a target batch. A dict keeps its per-batch values (CTC's padded
    frame count) and slices its per-sample tensors and lists."""
    if not isinstance(targets, Mapping):
        return targets[start:stop]
    return {
        k: v[start:stop] if isinstance(v, (torch.Tensor, list, tuple)) and not _scalar(v) else v
        for k, v in targets.items()
    }


def _scalar(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() == 0


def features(model: nn.Module, inputs: Batch) -> torch.Tensor:
    """Pre-pooling features: ``forward_features`` if the model has it, else the input of the
    last ``nn.Linear`` (the classifier head's input), else the output itself."""
    forward_features = getattr(model, "forward_features", None)
    if callable(forward_features):
        return first_tensor(call(forward_features, inputs))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return logits(model, inputs)
    captured: list[torch.Tensor] = []
    handle = linears[-1].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        out = logits(model, inputs)
    finally:
        handle.remove()
    return captured[-1] if captured else out


def default_loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on flattened logits (classification, or frame-level targets such as ASR's),
    mean-squared error when the targets are floating point and shaped like the output."""
    if targets.is_floating_point():
        if targets.shape != out.shape:
            raise ScoreInputError(
                f"targets: float targets must match the output shape {tuple(out.shape)}, got {tuple(targets.shape)}"
            )
        return F.mse_loss(out.float(), targets.to(out.dtype).float())
    classes = out.shape[-1]
    flat = out.reshape(-1, classes)
    if targets.numel() != flat.shape[0]:
        raise ScoreInputError(
            f"targets: {tuple(targets.shape)} does not match the model output {tuple(out.shape)}; expected "
            f"{flat.shape[0]} class indices (one per row of the output flattened to [-1, {classes}])"
        )
    labels = targets.reshape(-1).long()
    if labels.numel() and (
        int(labels.min()) < 0 and int(labels.min()) != -100 or int(labels.max()) >= classes
    ):
        raise ScoreInputError(
            f"targets: class indices must lie in [0, {classes}), got {labels.min()}..{labels.max()}"
        )
    return F.cross_entropy(flat.float(), labels)


def pseudo_targets(out: torch.Tensor, seed: int) -> torch.Tensor:
    """Label-free fallback: seeded uniform random class indices, one per output row, the same
    regime as the synthetic batches the spaces generate."""
    gen = torch.Generator().manual_seed(seed + 7919)
    return torch.randint(0, out.shape[-1], out.shape[:-1], generator=gen)


def set_scoring_mode(model: nn.Module) -> nn.Module:
    """Train mode (batch statistics in BatchNorm, as zero-cost proxies assume) with dropout off,
    so a score is a function of the weights and the batch only."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) or isinstance(m, nn.Dropout):
            m.eval()
    return model


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def cumulative_batchnorm(model: nn.Module) -> Iterator[list[nn.modules.batchnorm._BatchNorm]]:
    """BatchNorm running statistics reset and cumulative (momentum None) inside the block, so
    after one train-mode pass they hold exactly that batch's statistics; momenta put back after."""
    bns = batchnorms(model)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    try:
        yield bns
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


BatchStatistics = list[tuple[torch.Tensor | None, ...]]


def get_batch_statistics(bns: list[nn.modules.batchnorm._BatchNorm]) -> BatchStatistics:
    return [
        tuple(
            None if t is None else t.detach().clone()
            for t in (m.running_mean, m.running_var, m.num_batches_tracked)
        )
        for m in bns
    ]


def set_batch_statistics(bns: list[nn.modules.batchnorm._BatchNorm], stats: BatchStatistics) -> None:
    with torch.no_grad():
        for m, saved in zip(bns, stats, strict=True):
            for t, value in zip((m.running_mean, m.running_var, m.num_batches_tracked), saved):
                if t is not None:
                    t.copy_(value)


def weight_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters (what saliency-type proxies sum over)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]
