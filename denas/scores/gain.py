"""layer_gain — the Zen-score's BatchNorm term, averaged over layers instead of summed.

Zen-NAS (Lin et al., ICCV 2021) draws every weight from N(0, 1) and feeds Gaussian inputs; each
BatchNorm then divides its input by the standard deviation ``sigma_l`` it sees, and the Zen-score
adds ``sum_l log sigma_l`` back to undo that normalisation. Under that initialisation a layer's
``sigma_l`` is its gain: about ``sqrt(fan_in / 2)`` after a ReLU, so the SUM grows with every
layer added and the Zen-score mostly counts depth (Spearman 0.90 with depth on our digits
networks). ``layer_gain`` is the MEAN instead,

    layer_gain = (1 / L) sum_l log sqrt(mean_c var_c(input of BatchNorm l))

the log of the geometric-mean per-layer gain: how wide (channels x kernel area, through
residual additions and bottlenecks as the forward pass actually composes them) a typical layer
is, blind to how many layers there are. Same initialisation, inputs and BN statistics as
`expressivity` (one forward pass in train mode, no gradient); higher is better. A model
without BatchNorm has no gain to report: 0.0 (the log of a unit gain).
"""

from __future__ import annotations

import torch
from torch import nn

from denas.scores import _model
from denas.scores.components import _gaussian_like, batchnorm_log_std, gaussian_init
from denas.scores.registry import ScoreContext, register


def batchnorm_log_stds(model: nn.Module, inputs: _model.Batch) -> list[float]:
    """``log sqrt(mean_c var_c)`` of the input of every BatchNorm layer, in call order, for one
    pass of ``model`` (in its current mode) up to its pre-pooling features, as the Zen-score."""
    logs: list[float] = []

    def record(_m: nn.Module, args: tuple) -> None:
        logs.append(float(batchnorm_log_std(args[0])))

    hooks = [
        m.register_forward_pre_hook(record)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        with torch.no_grad():
            _model.features(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return logs


@register(
    "layer_gain",
    "Zen-score BN term averaged over BatchNorm layers: mean log per-layer gain, depth-neutral (higher is better)",
)
def layer_gain(ctx: ScoreContext) -> float:
    model = ctx.fresh_model()
    gaussian_init(model)  # fresh_model is in train mode: batch statistics, as in the Zen-score
    logs = batchnorm_log_stds(model, _gaussian_like(ctx.inputs))
    return sum(logs) / len(logs) if logs else 0.0
