"""The DE-Score components: expressivity, complexity, diversity, saliency.

* expressivity — Zen-score (Lin et al., ICCV 2021): weights re-drawn from N(0, 1), Gaussian
  inputs x and noise e, ``log E_b sum|f(x) - f(x + 0.01 e)| + sum_BN log sqrt(mean_c var_c)`` on
  pre-pooling features ``f`` (``forward_features``; otherwise the classifier head's input). The
  BN term uses the batch variance each BatchNorm layer normalises by. Integer inputs (token ids)
  are perturbed at the output of the first ``nn.Embedding`` instead.
* complexity — NTK condition number ``lambda_max / lambda_min`` of the Gram matrix of
  per-sample gradients of the summed output (TE-NAS), over every parameter except embedding
  tables, on the first 16 samples (fewer, down to 4, when 16 gradients would exceed 2**26 numbers). Per-sample gradients come from one
  vectorised ``torch.func.vmap(grad(...))`` call, not one backward per sample; BatchNorm uses
  the batch statistics of one train-mode pass, frozen, so every sample's gradient is its own
  (the loss pass's statistics when it ran over the same samples without dropout: the same
  numbers, one pass fewer). The Gram matrix is accumulated in float64, exactly as
  ``g.double() @ g.double().T`` per parameter.
  Lower is better (better-conditioned training dynamics).
* diversity — TF-TAS synaptic diversity ``sum_W ||W||_* . ||dL/dW||_*`` with the true nuclear
  norm (sum of singular values) over the attention projections (every ``nn.Linear`` inside a
  module whose class name contains "Attention", and ``nn.MultiheadAttention``'s q/k/v/out
  matrices). Models without attention use every conv/linear weight, conv kernels reshaped to
  ``[out, in * k * k]``: the same rank-and-gradient-richness measure over the layers they have.
* saliency — synflow (Tanaka et al., 2020): float64 copy, weights replaced by ``|theta|``,
  BatchNorm as a plain affine map (eval mode, running statistics reset to 0/1), an all-ones
  input of batch 1, ``R = sum f(1)``, score ``sum |theta . dR/dtheta|``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from denas.scores import _model
from denas.scores.registry import ScoreContext, register

ZEN_ALPHA = 0.01
NTK_MAX_BATCH = 16
NTK_MAX_ENTRIES = 2**26
COND_CAP = 1e15


def gaussian_init(model: nn.Module) -> None:
    """Zen-NAS initialisation: matrices and kernels N(0, 1), biases 0, normalisation scales 1."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _model.NORM_TYPES):
                if getattr(m, "weight", None) is not None:
                    m.weight.fill_(1.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
                continue
            for name, p in m.named_parameters(recurse=False):
                if p.dim() >= 2:
                    p.normal_()
                elif "bias" in name:
                    p.zero_()
                else:
                    p.normal_()


def _gaussian_like(inputs: _model.Batch) -> _model.Batch:
    return _model.map_tensors(inputs, lambda t: torch.randn_like(t) if t.is_floating_point() else t)


def batchnorm_log_std(a: torch.Tensor) -> torch.Tensor:
    """``log sqrt(mean_c var_c)`` of a BatchNorm layer's input (channels on dim 1), float64: the
    Zen-score's per-layer term (`expressivity` sums it, `layer_gain` averages it)."""
    a = a.detach()
    var = a.var(dim=[d for d in range(a.dim()) if d != 1], unbiased=False).double().mean()
    return 0.5 * torch.log(var.clamp_min(1e-300))


@register(
    "expressivity", "Zen-score: log feature sensitivity to input noise + BN variance term (higher is better)"
)
def expressivity(ctx: ScoreContext) -> float:
    model = ctx.fresh_model()
    gaussian_init(model)
    x = _gaussian_like(ctx.inputs)
    has_float_input = any(t.is_floating_point() for t in _model.tensors_of(x))
    noise_scale = {"on": False}
    hooks = []
    if not has_float_input:
        embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        if not embeddings:
            raise _model.ScoreInputError(
                "inputs: expressivity needs a float input or an nn.Embedding to perturb"
            )

        def perturb(_m: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
            return out + ZEN_ALPHA * torch.randn_like(out) if noise_scale["on"] else out

        hooks.append(embeddings[0].register_forward_hook(perturb))
    bn_log_std: list[torch.Tensor] = []

    def record_bn(m: nn.Module, args: tuple) -> None:
        if noise_scale["on"]:
            return
        bn_log_std.append(batchnorm_log_std(args[0]))

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            hooks.append(m.register_forward_pre_hook(record_bn))
    try:
        with torch.no_grad():
            clean = _model.features(model, x).double()
            noise_scale["on"] = True
            noisy_x = _model.map_tensors(
                x, lambda t: t + ZEN_ALPHA * torch.randn_like(t) if t.is_floating_point() else t
            )
            noisy = _model.features(model, noisy_x).double()
    finally:
        for h in hooks:
            h.remove()
    delta = (clean - noisy).abs().reshape(clean.shape[0], -1).sum(dim=1).mean()
    value = math.log(max(float(delta), 1e-300)) + float(
        sum(bn_log_std, torch.tensor(0.0, dtype=torch.float64))
    )
    return value


def _freeze_batch_statistics(model: nn.Module, inputs: _model.Batch) -> torch.Tensor | None:
    """Replace BN running statistics by this batch's, then switch to eval mode. Returns the
    logits of that train-mode pass (None: no BatchNorm, no pass)."""
    out = None
    with _model.cumulative_batchnorm(model) as bns:
        if bns:
            with torch.no_grad():
                model.train()
                out = _model.logits(model, inputs)
    model.eval()
    return out


def ntk_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter except embedding tables: their per-sample gradients are huge,
    sparse rows that only say which tokens two samples share, not how the network trains."""
    skip = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad and id(p) not in skip}


def _layer_norm(
    x: torch.Tensor,
    normalized_shape: list[int] | tuple[int, ...],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.layer_norm`` by way of ``aten::native_layer_norm``, the kernel ``aten::layer_norm``
    dispatches to: the same values, without the entry point IPEX replaces."""
    return torch.ops.aten.native_layer_norm(x, list(normalized_shape), weight, bias, eps)[0]


@contextlib.contextmanager
def _native_layer_norm() -> Iterator[None]:
    """Route ``F.layer_norm`` (what ``nn.LayerNorm`` calls) through `_layer_norm` meanwhile.

    Once intel_extension_for_pytorch is imported in a process (latency measurement does it), it
    replaces ``aten::layer_norm``, and ``torch.func.grad`` through the replacement returns wrong
    gradients: a vit's NTK condition number went from 40.65 to 121.7 in the same process. The
    native kernel below it gives the value of stock PyTorch with or without IPEX, at the same
    speed. Always on, so a score does not depend on what was imported."""
    fused = F.layer_norm
    F.layer_norm = _layer_norm
    try:
        yield
    finally:
        F.layer_norm = fused


def per_sample_gradients(model: nn.Module, inputs: _model.Batch) -> list[torch.Tensor]:
    """Gradients of each sample's summed output: a list of ``[n, numel(p)]`` per parameter."""
    params = ntk_parameters(model)
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def output_sum(p: dict[str, torch.Tensor], sample: _model.Batch) -> torch.Tensor:
        batch = _model.map_tensors(sample, lambda t: t.unsqueeze(0))
        args, kwargs = _model.call_args(model.forward, batch)
        return _model.first_tensor(functional_call(model, (p, buffers), args, kwargs)).sum()

    try:
        with warnings.catch_warnings(), _native_layer_norm():
            # vmap falls back to a loop for some kernels (SDPA): fine here
            warnings.filterwarnings("ignore", message="There is a performance drop")
            grads = vmap(grad(output_sum), in_dims=(None, 0), randomness="same")(params, inputs)
        return [g.reshape(g.shape[0], -1) for g in grads.values()]
    except (RuntimeError, NotImplementedError, ValueError):
        # Data-dependent control flow (some Hugging Face attention paths) cannot be vmapped:
        # fall back to one backward per sample, still with frozen batch statistics.
        n = _model.batch_size(inputs)
        rows: list[list[torch.Tensor]] = []
        names = list(params)
        for p in model.parameters():
            p.requires_grad_(True)
        for i in range(n):
            model.zero_grad(set_to_none=True)
            _model.logits(model, _model.slice_batch(inputs, i, i + 1)).sum().backward()
            named = dict(model.named_parameters())
            rows.append(
                [
                    named[k].grad.reshape(-1).clone()
                    if named[k].grad is not None
                    else torch.zeros(named[k].numel())
                    for k in names
                ]
            )
        return [torch.stack([r[j] for r in rows]) for j in range(len(names))]


_SMALL_ROWS = 2**16  # smaller conversions reuse the allocator's cached memory anyway


def _gram(g: torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """``g.double() @ g.double().T``, the float64 rows written into ``buffer`` when given (they
    are converted once: a second `.double()` of the same rows costs more than the product)."""
    if buffer is None or g.numel() < _SMALL_ROWS or not g.is_contiguous():
        d = g.double()
    else:  # the same contiguous float64 rows `.double()` makes, in reused memory
        d = buffer[: g.numel()].view(g.shape).copy_(g)
    return d @ d.T


def ntk_condition_number(grads: list[torch.Tensor]) -> float:
    # One float64 buffer for every big parameter's rows: a fresh conversion per parameter (up
    # to 1e8 numbers in all) spends more time faulting in new memory than multiplying.
    big = [g.numel() for g in grads if g.numel() >= _SMALL_ROWS]
    buffer = torch.empty(max(big), dtype=torch.float64) if big else None
    gram = sum(_gram(g, buffer) for g in grads)
    eig = torch.linalg.eigvalsh(gram)
    top = float(eig[-1])
    if not math.isfinite(top) or top <= 0.0:
        return COND_CAP
    return min(top / max(float(eig[0]), top / COND_CAP), COND_CAP)


@register(
    "complexity",
    "NTK condition number of per-sample gradients, TE-NAS (lower is better)",
    checks_targets=True,
)
def complexity(ctx: ScoreContext) -> float:
    n = ntk_batch_size(ctx.model, ctx.inputs)
    inputs = _model.slice_batch(ctx.inputs, 0, n)
    shared = ctx.batch_statistics(n)
    if shared is None and not _model.batchnorms(ctx.model):
        ctx.check_targets()  # no pass of its own to check them on
    model = ctx.fresh_model()
    if shared is not None:  # the loss pass already made the train-mode pass over these samples
        _model.set_batch_statistics(_model.batchnorms(model), shared)
        model.eval()
    else:
        out = _freeze_batch_statistics(model, inputs)
        if out is not None:
            ctx.check_targets(out)
    return ntk_condition_number(per_sample_gradients(model, inputs))


def ntk_batch_size(model: nn.Module, inputs: _model.Batch) -> int:
    """At most NTK_MAX_BATCH samples, fewer (>= 4) for big models so the gradients fit in ~256 MB.
    Reads sizes only, so the caller's model will do: every parameter but embedding tables (the
    working copy makes all of them trainable)."""
    skip = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    size = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    return min(_model.batch_size(inputs), NTK_MAX_BATCH, max(4, NTK_MAX_ENTRIES // max(size, 1)))


def attention_matrices(model: nn.Module) -> list[nn.Parameter | torch.Tensor]:
    """Weights of attention projections (q, k, v, out); empty if the model has no attention."""
    seen: set[int] = set()
    mats: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            if m.in_proj_weight is not None:
                mats.append(m.in_proj_weight)
            else:
                mats.extend([m.q_proj_weight, m.k_proj_weight, m.v_proj_weight])
            mats.append(m.out_proj.weight)
            seen.update(id(t) for t in (m.in_proj_weight, m.out_proj.weight))
        elif "attention" in type(m).__name__.lower():
            for sub in m.modules():
                if isinstance(sub, nn.Linear) and id(sub.weight) not in seen:
                    seen.add(id(sub.weight))
                    mats.append(sub.weight)
    return mats


def _diversity_weights(model: nn.Module) -> list[torch.Tensor]:
    """Every weight whose gradient `_diversity_pairs` may read."""
    return attention_matrices(model) or [
        m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))
    ]


def _diversity_pairs(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            w, g = m.in_proj_weight, m.in_proj_weight.grad
            if g is not None:  # q, k and v are separate projections packed in one matrix
                pairs.extend(zip(w.chunk(3), g.chunk(3)))
            if m.out_proj.weight.grad is not None:
                pairs.append((m.out_proj.weight, m.out_proj.weight.grad))
    if pairs:
        return pairs
    mats = attention_matrices(model)
    if not mats:
        mats = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    return [(w, w.grad) for w in mats if w.grad is not None]


@register(
    "diversity",
    "TF-TAS synaptic diversity: sum ||W||_nuc * ||dL/dW||_nuc (higher is better)",
    loss_pass=True,
)
def diversity(ctx: ScoreContext) -> float:
    model = ctx.loss_gradients(only=_diversity_weights)
    total = 0.0
    with torch.no_grad():
        for w, g in _diversity_pairs(model):
            w2, g2 = w.detach().reshape(w.shape[0], -1), g.reshape(g.shape[0], -1)
            total += float(torch.linalg.svdvals(w2).sum()) * float(torch.linalg.svdvals(g2).sum())
    return total


def synflow_value(ctx: ScoreContext) -> float:
    def compute() -> float:
        # the shared working copy: `fresh_model` undoes `.double()` and `abs_` for the next proxy
        model = ctx.fresh_model().double().eval()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        with torch.no_grad():
            for p in model.parameters():
                p.abs_()
        ones = _model.map_tensors(
            _model.slice_batch(ctx.inputs, 0, 1),
            lambda t: torch.ones_like(t, dtype=torch.float64) if t.is_floating_point() else t,
        )
        _model.logits(model, ones).sum().backward()
        with torch.no_grad():
            return float(sum((p * p.grad).abs().sum() for p in model.parameters() if p.grad is not None))

    return ctx.cached("synflow", compute)


@register(
    "saliency",
    "synflow saliency: sum |theta * dR/dtheta|, |theta|, all-ones input, float64 (higher is better)",
)
def saliency(ctx: ScoreContext) -> float:
    return synflow_value(ctx)
