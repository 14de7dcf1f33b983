"""Train-free scoring: a registry of proxies, the DE-Score and hardware-aware latency.

`score_model(model, inputs, targets=None, proxies=None, weights=None, seed=0)` works on any
`torch.nn.Module`; `combine_ranked` compares a population; `measure_latency` times a model on
this machine (IPEX/bf16 when available) and `LatencyCache` remembers it per hardware fingerprint.
"""

from denas.scores import components, gain, zero_cost  # noqa: F401  (registration side effect)
from denas.scores._model import ScoreInputError
from denas.scores.core import score_model
from denas.scores.descore import (
    COMPONENTS,
    DEFAULT_WEIGHTS,
    WeightError,
    combine,
    combine_ranked,
    resolve_weights,
    transform,
)
from denas.scores.latency import LatencyCache, LatencyResult, hardware_fingerprint, measure_latency
from denas.scores.registry import UnknownProxyError, names

__all__ = [
    "COMPONENTS",
    "DEFAULT_WEIGHTS",
    "LatencyCache",
    "LatencyResult",
    "ScoreInputError",
    "UnknownProxyError",
    "WeightError",
    "combine",
    "combine_ranked",
    "hardware_fingerprint",
    "measure_latency",
    "names",
    "resolve_weights",
    "score_model",
    "transform",
]
