"""The zero-cost proxy suite (Abdelfattah et al. 2021; Mellor et al. 2021; Li et al. 2023).

"Layer weights" below are the weights of ``nn.Linear`` and convolution modules, as published.

* grad_norm — ``sum_l ||dL/dW_l||_2``.
* snip — ``sum |W . dL/dW|``.
* grasp — ``-sum W . (H g)``, H the loss Hessian, g its gradient (one Hessian-vector product).
* fisher — ``sum_layers sum_channels 0.5 * mean_b[(sum_spatial a . dL/da)^2]`` on the outputs ``a``
  of conv/linear layers.
* jacob_cov — ``-sum_i log(v_i + k) + 1/(v_i + k)``, ``v`` the eigenvalues of the correlation
  matrix of per-sample input Jacobians, k = 1e-5 (integer inputs: the first embedding's output).
* synflow — see `saliency`.
* naswot — ``log det K``, ``K = C C^T + (1-C)(1-C)^T`` over binary activation codes (input > 0) of
  every ReLU-family activation module (conv/linear outputs if there are none).
* zico — ``sum_layers log sum_theta mean|g| / std(g)`` over gradients of disjoint sub-batches.
* params — parameter count. flops — multiply-accumulates of one forward pass per sample,
  counted by ``torch.utils.flop_counter`` (which reports 2 FLOPs per MAC), the unit the spaces'
  ``count_flops`` and result.json use.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from denas.scores import _model
from denas.scores.components import synflow_value
from denas.scores.registry import ScoreContext, register

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Hardswish, nn.Mish)
LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


def layer_weights(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, LAYERS) and m.weight.requires_grad]


@register("grad_norm", "sum of per-layer loss-gradient L2 norms", loss_pass=True)
def grad_norm(ctx: ScoreContext) -> float:
    model = ctx.loss_gradients()
    return float(sum(w.grad.norm() for w in layer_weights(model) if w.grad is not None))


@register("snip", "SNIP connection sensitivity: sum |W * dL/dW|", loss_pass=True)
def snip(ctx: ScoreContext) -> float:
    model = ctx.loss_gradients()
    with torch.no_grad():
        return float(sum((w * w.grad).abs().sum() for w in layer_weights(model) if w.grad is not None))


@register("grasp", "GraSP: -sum W * (H g), gradient-flow preservation")
def grasp(ctx: ScoreContext) -> float:
    model = ctx.fresh_model()
    weights = layer_weights(model)
    # A Hessian-gradient product differentiates twice: PyTorch's fused attention kernels have no
    # double backward, the math one has (models without attention are unaffected).
    with sdpa_kernel(SDPBackend.MATH):
        loss = ctx.loss(_model.logits(model, ctx.inputs))
    grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    pairs = [(w, g) for w, g in zip(weights, grads) if g is not None]
    z = sum((g * g.detach()).sum() for _w, g in pairs)
    hg = torch.autograd.grad(z, [w for w, _g in pairs], allow_unused=True)
    return float(sum((-w.detach() * h).sum() for (w, _g), h in zip(pairs, hg) if h is not None))


@register("fisher", "Fisher information of layer activations")
def fisher(ctx: ScoreContext) -> float:
    model = ctx.fresh_model()
    records: list[list[torch.Tensor]] = []

    def hook(m: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return
        record = [isinstance(m, nn.modules.conv._ConvNd), out.detach()]
        records.append(record)
        out.register_hook(lambda g: record.append(g.detach()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, LAYERS)]
    try:
        ctx.loss(_model.logits(model, ctx.inputs)).backward()
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for record in records:
        if len(record) < 3:
            continue
        is_conv, act, g = record
        prod = act * g
        if is_conv:  # [B, C, *spatial]: sum the spatial positions of each channel
            per_channel = prod.reshape(prod.shape[0], prod.shape[1], -1).sum(-1)
        else:  # [B, *tokens, C]: channels last, sum the token positions
            per_channel = prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1)
        total += float(0.5 * per_channel.double().pow(2).mean(0).sum())
    return total


def _input_jacobian(model: nn.Module, inputs: _model.Batch) -> torch.Tensor:
    """d(sum of outputs)/d(input) per sample; integer inputs: w.r.t. the first embedding's output."""
    if any(t.is_floating_point() for t in _model.tensors_of(inputs)):
        x = _model.map_tensors(
            inputs, lambda t: t.detach().clone().requires_grad_(True) if t.is_floating_point() else t
        )
        leaf = next(t for t in _model.tensors_of(x) if t.is_floating_point())
        _model.logits(model, x).sum().backward()
        return leaf.grad.reshape(leaf.shape[0], -1)
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if not embeddings:
        raise _model.ScoreInputError("inputs: jacob_cov needs a float input or an nn.Embedding")
    captured: list[torch.Tensor] = []

    def keep(_m: nn.Module, _a: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        captured.append(out)

    handle = embeddings[0].register_forward_hook(keep)
    try:
        _model.logits(model, inputs).sum().backward()
    finally:
        handle.remove()
    return captured[0].grad.reshape(captured[0].shape[0], -1)


@register("jacob_cov", "NASWOT-v1 Jacobian covariance: -sum log(v+k) + 1/(v+k)")
def jacob_cov(ctx: ScoreContext) -> float:
    jac = _input_jacobian(ctx.fresh_model(), ctx.inputs).double()
    corr = torch.nan_to_num(torch.corrcoef(jac), nan=0.0)
    v = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-(torch.log(v.clamp_min(0) + k) + 1.0 / (v.clamp_min(0) + k)).sum())


@register("naswot", "NASWOT: log det of the Hamming kernel of ReLU activation patterns")
def naswot(ctx: ScoreContext) -> float:
    model = ctx.fresh_model()
    n = _model.batch_size(ctx.inputs)
    kernel = torch.zeros(n, n, dtype=torch.float64)
    acts = [m for m in model.modules() if isinstance(m, ACTIVATIONS)]
    use_inputs = bool(acts)
    watched = acts or [m for m in model.modules() if isinstance(m, LAYERS)]

    def hook(_m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal kernel
        a = args[0] if use_inputs else out
        codes = (a.detach().reshape(a.shape[0], -1) > 0).double()
        kernel = kernel + codes @ codes.T + (1 - codes) @ (1 - codes).T

    handles = [m.register_forward_hook(hook) for m in watched]
    try:
        with torch.no_grad():
            _model.logits(model, ctx.inputs)
    finally:
        for h in handles:
            h.remove()
    eig = torch.linalg.eigvalsh(kernel)
    return float(torch.log(eig.clamp_min(1e-10)).sum())


@register("zico", "ZiCo: sum_layers log sum mean|g|/std(g) across sub-batches")
def zico(ctx: ScoreContext) -> float:
    model = ctx.fresh_model()
    n = _model.batch_size(ctx.inputs)
    chunks = max(2, min(4, n // 2))
    if n < 2:
        raise _model.ScoreInputError("inputs: zico needs a batch of at least 2 samples")
    bounds = [round(i * n / chunks) for i in range(chunks + 1)]
    weights = layer_weights(model)
    per_chunk: list[list[torch.Tensor]] = []
    targets = ctx.targets
    for lo, hi in zip(bounds, bounds[1:]):
        model.zero_grad(set_to_none=True)
        out = _model.logits(model, _model.slice_batch(ctx.inputs, lo, hi))
        if targets is None:  # one seeded label draw for the whole batch, as the other proxies see
            targets = _model.pseudo_targets(out.new_empty((n, *out.shape[1:])), ctx.seed)
        (ctx.loss_fn or _model.default_loss)(out, _model.slice_targets(targets, lo, hi)).backward()
        per_chunk.append(
            [w.grad.detach().clone() if w.grad is not None else torch.zeros_like(w) for w in weights]
        )
    total = 0.0
    for j in range(len(weights)):
        g = torch.stack([c[j] for c in per_chunk]).double()
        std = g.std(0, correction=0)  # the population std, as the ZiCo paper defines it
        mask = std > 0
        ratio = (g.abs().mean(0)[mask] / std[mask]).sum()
        if ratio > 0:
            total += math.log(float(ratio))
    return total


@register("synflow", "SynFlow: sum |theta * dR/dtheta| with |theta| and an all-ones input")
def synflow(ctx: ScoreContext) -> float:
    return synflow_value(ctx)


@register("params", "parameter count")
def params(ctx: ScoreContext) -> float:
    return float(sum(p.numel() for p in ctx.model.parameters()))


@register("flops", "multiply-accumulates of one forward pass per sample")
def flops(ctx: ScoreContext) -> float:
    model = ctx.fresh_model()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        _model.logits(model, ctx.inputs)
    return counter.get_total_flops() / 2.0 / _model.batch_size(ctx.inputs)
