"""DE-Score: the train-free components, made comparable, then weighted.

Raw DE-NAS adds a Zen-score of order 1e-4..0.1 to an NTK condition number of order 5..25, so its
CNN score is in practice just the condition number. Here every component first goes through a
monotone transform onto a log scale, oriented so that higher is better:

    t(expressivity) = expressivity              (Zen-score is already a log)
    t(complexity)   = -log(condition number)    (well-conditioned is better)
    t(diversity)    = log(diversity)
    t(saliency)     = log(synflow)
    t(latency)      = -log(latency_ms)          (only if the user gives it a weight)

Absolute form, for one model (what ``score_model`` returns under "de_score"):

    de_score = sum_c w_c * C((t_c - m_c) / s_c),   C(z) = 1/2 + atan(z) / pi

``m_c`` and ``s_c`` are the domain's median and robust spread (IQR / 1.349) of ``t_c`` over
random structures of its space (``CALIBRATION``, measured by benchmarks/calibrate_scales.py).
``C`` (the Cauchy CDF) makes each term a percentile-like value in (0, 1): one unit of weight
means the same for every component, and a degenerate network (zero gradient: log 0) cannot drown
the others with an unbounded value — the DE-NAS failure (its CNN score is just the NTK term) in
another guise. Unlike a Gaussian CDF, ``C`` keeps ordering models several spreads away from the
calibration centre (a preset of much smaller networks, an uncalibrated domain): on the NB201
tuning sample a 3-spread miscalibration costs it 0.05 of Spearman and the Gaussian CDF 0.15.
``de_score`` lies in ``(0, sum w)``. A domain may name a preset, ``"cnn/digits"``, whose own
calibration then applies (falling back to the domain's, then to ``default``, the `cnn` space's);
a weighted proxy with no calibration anywhere enters linearly, ``w * t``.

Population form (``combine_ranked``), what a search should use to compare candidates: every
weighted component's transformed values are replaced by their ranks scaled to [0, 1] (ties share
the mean rank), so no component can drown the others whatever its numeric range:

    de_rank_i = sum_c w_c * (rank_c(i) - 1) / (n - 1)

Any registered proxy may carry a weight (``TRANSFORMS`` says how it is put on a log scale).
The per-domain default weights below are documented with the benchmark that chose them in
benchmarks/README_scores.md; weights a user gives replace the defaults key by key.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence

from scipy.stats import rankdata

log = logging.getLogger(__name__)

COMPONENTS = ("expressivity", "complexity", "diversity", "saliency")
_TINY = 1e-300


def _log(v: float) -> float:
    return math.log(max(v, _TINY))


def _neg_log(v: float) -> float:
    return -math.log(max(v, _TINY))


def _identity(v: float) -> float:
    return v


TRANSFORMS = {
    "expressivity": _identity,
    "layer_gain": _identity,  # already a log
    "complexity": _neg_log,
    "diversity": _log,
    "saliency": _log,
    "latency": _neg_log,
    "synflow": _log,
    "snip": _log,
    "grad_norm": _log,
    "fisher": _log,
    "params": _log,
    "flops": _log,
    "grasp": _identity,
    "jacob_cov": _identity,
    "naswot": _identity,
    "zico": _identity,
}

# nb201: benchmarks/proxy_correlation.py's rule (grid 0/0.5/1/2, best mean Spearman over its four
# ground truths) on a 300-cell tuning sample disjoint from the 500 reported cells; cnn: the same
# grid over the four components and layer_gain on the 60 digits TUNING networks, disjoint from
# the 120 reported ones (benchmarks/digits_correlation.py): layer_gain alone won there (the
# Zen-score and synflow mostly count depth, which hurts on digits); transformer domains: equal
# weights (no ground truth here). `default` keeps the earlier nb201 weights.
_CNN_WEIGHTS = {"expressivity": 0.5, "complexity": 1.0, "saliency": 0.5}
_EQUAL = {"expressivity": 1.0, "complexity": 1.0, "diversity": 1.0, "saliency": 1.0}
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "default": dict(_CNN_WEIGHTS),
    "nb201": {"expressivity": 0.5, "complexity": 2.0, "saliency": 2.0},
    "cnn": {"layer_gain": 1.0},
    "vit": dict(_EQUAL),
    "bert": dict(_EQUAL),
    "asr": dict(_EQUAL),
    "huggingface": dict(_EQUAL),  # a transformer family, as bert (no ground truth either)
}

# (median, robust spread) of each transformed component over random structures of each space,
# from benchmarks/calibrate_scales.py (nb201: proxy_correlation.py's 300 tuning cells). `latency` is a generic guess:
# 10 ms in the middle, one e-fold per spread.
_LATENCY = {"latency": (-math.log(10.0), 1.0)}
CALIBRATION: dict[str, dict[str, tuple[float, float]]] = {
    "nb201": {
        "expressivity": (107.84, 70.79),
        "complexity": (-3.562, 2.127),
        "diversity": (7.946, 1.270),
        "saliency": (53.83, 19.49),
        # the rest of the suite, so that any proxy can be weighted in (opt-in ensembles)
        "synflow": (53.83, 19.49),
        "zico": (304.0, 182.8),
        "naswot": (194.6, 10.51),
        "jacob_cov": (-16.12, 0.5065),
        "params": (12.83, 0.9766),
        "flops": (17.75, 1.066),
        **_LATENCY,
    },
}
_MEASURED = {  # benchmarks/calibrate_scales.py: --n 16 for presets, --n 10 default configs (bert: 6);
    # layer_gain: --proxies layer_gain, same structures
    "nb201/tiny": {
        "expressivity": (19.959, 8.29),
        "complexity": (-3.372, 0.733),
        "diversity": (5.776, 0.432),
        "saliency": (19.138, 3.829),
    },
    "cnn": {
        "layer_gain": (2.261, 0.297),
        "expressivity": (55.555, 16.645),
        "complexity": (-0.838, 0.22),
        "diversity": (10.725, 0.379),
        "saliency": (47.898, 12.818),
    },
    "cnn/digits": {
        "layer_gain": (1.475, 0.289),
        "expressivity": (22.766, 3.063),
        "complexity": (-1.923, 0.288),
        "diversity": (7.185, 0.555),
        "saliency": (21.537, 2.391),
    },
    "cnn/tiny": {
        "layer_gain": (1.45, 0.289),
        "expressivity": (15.678, 3.561),
        "complexity": (-3.844, 0.518),
        "diversity": (4.422, 0.589),
        "saliency": (15.638, 2.979),
    },
    "vit": {
        "expressivity": (8.88, 0.032),
        "complexity": (-4.064, 0.297),
        "diversity": (9.453, 0.061),
        "saliency": (8.29, 0.046),
    },
    "asr": {
        "expressivity": (9.009, 0.599),
        "complexity": (-6.467, 0.864),
        "diversity": (6.159, 0.38),
        "saliency": (10.137, 0.328),
    },
    "bert": {
        "expressivity": (10.089, 0.712),
        "complexity": (-3.331, 0.576),
        "diversity": (3.571, 2.435),
        "saliency": (5.046, 1.474),
    },
    "nb201/digits": {  # --n 16 --preset digits
        "expressivity": (29.82, 17.069),
        "complexity": (-3.633, 1.018),
        "diversity": (6.804, 0.923),
        "saliency": (21.994, 6.53),
    },
    "vit/digits": {  # --n 16 --preset digits: complexity 16 spreads below vit's
        "expressivity": (4.835, 0.591),
        "complexity": (-8.82, 0.46),
        "diversity": (6.274, 0.479),
        "saliency": (6.162, 0.372),
    },
    "vit/autoformer": {  # --n 8 --preset autoformer (~1-2 min per network); expressivity and
        # saliency sit ~50 spreads above vit's, where vit's calibration saturated both
        "expressivity": (10.382, 0.255),
        "complexity": (-3.021, 0.308),
        "diversity": (9.961, 0.309),
        "saliency": (11.04, 0.222),
    },
    "vit/tiny": {
        "expressivity": (3.361, 0.573),
        "complexity": (-5.314, 0.423),
        "diversity": (5.014, 0.639),
        "saliency": (5.612, 0.268),
    },
    "bert/tiny": {
        "expressivity": (5.975, 0.305),
        "complexity": (-5.726, 0.917),
        "diversity": (-3.993, 1.544),
        "saliency": (1.092, 0.929),
    },
    "asr/tiny": {
        "expressivity": (2.054, 2.058),
        "complexity": (-6.123, 3.028),
        "diversity": (1.938, 0.546),
        "saliency": (5.587, 0.233),
    },
}
CALIBRATION.update(_MEASURED)
CALIBRATION["default"] = CALIBRATION["cnn"]


class WeightError(ValueError):
    """A weight names no known proxy or is not a finite number."""


def default_weights(domain: str | None = None) -> dict[str, float]:
    base = (domain or "default").split("/")[0]
    return dict(DEFAULT_WEIGHTS.get(base, DEFAULT_WEIGHTS["default"]))


def resolve_weights(
    weights: Mapping[str, float] | str | None = None, domain: str | None = None
) -> dict[str, float]:
    """Domain defaults (``weights`` may itself be a domain name) updated by the given weights."""
    if isinstance(weights, str):
        domain, weights = weights, None
    resolved = default_weights(domain)
    for name, w in (weights or {}).items():
        if name not in TRANSFORMS:
            raise WeightError(
                f"score.weights.{name}: unknown proxy; weightable proxies: {', '.join(sorted(TRANSFORMS))}"
            )
        if not isinstance(w, (int, float)) or not math.isfinite(w):
            raise WeightError(f"score.weights.{name}: must be a finite number, got {w!r}")
        resolved[name] = float(w)
    return {k: v for k, v in resolved.items() if v != 0.0}


def transform(name: str, value: float) -> float:
    try:
        return TRANSFORMS[name](float(value))
    except KeyError:
        raise WeightError(f"no DE-Score transform for proxy '{name}'") from None


def domain_key(domain: str, search_space: Mapping[str, object] | None = None) -> str:
    """The calibration key of a job's space: ``"cnn/digits"`` when a preset is chosen, or when
    the overrides spell out a preset's configuration; else ``"cnn"``. A calibration describes the
    networks of one configuration: the reduced NB201 skeleton written out key by key sits two
    spreads below the full benchmark's saliency centre, where the absolute form would let the
    other components decide (measured: benchmarks/README_search.md)."""
    space = dict(search_space or {})
    if space.get("preset"):
        return f"{domain}/{space['preset']}"
    if not space:
        return domain
    return _configured_key(domain, json.dumps(space, sort_keys=True, default=str))


@functools.lru_cache(maxsize=64)
def _configured_key(domain: str, overrides_json: str) -> str:
    from denas import spaces  # the spaces know their presets; scores must not need them to import

    try:
        config = spaces.get(domain, json.loads(overrides_json)).config
        if config == spaces.get(domain).config:
            return domain
        for name in sorted(spaces.get(domain).presets()):
            if config == spaces.get(domain, {"preset": name}).config:
                return f"{domain}/{name}"
    except ValueError:  # StructureError: invalid overrides fail where the space is built
        return domain
    log.warning(
        "searchSpace overrides %s match no calibrated configuration of '%s': DE-Score percentiles "
        "use the '%s' calibration, which may sit far from these networks (choose a preset, or "
        "measure one with benchmarks/calibrate_scales.py)",
        overrides_json,
        domain,
        domain,
    )
    return domain


_WARNED: set[str] = set()


def calibration(domain: str | None = None) -> dict[str, tuple[float, float]]:
    """(median, spread) per transformed proxy for ``domain`` (``"cnn"``, or ``"cnn/digits"`` for a
    preset: networks of a preset can sit many spreads from the full space's), completed by the
    domain's and then the default calibration. A preset with no calibration of its own falls back
    to its domain's with a warning (once per key): the absolute DE-Score then places its networks
    against other networks' percentiles (vit/digits sits 16 spreads below vit's complexity centre)."""
    key = domain or "default"
    base = key.split("/")[0]
    if "/" in key and key not in CALIBRATION and key not in _WARNED:
        _WARNED.add(key)
        fallback = base if base in CALIBRATION else "default (the cnn space's)"
        log.warning(
            "no DE-Score calibration for '%s': its percentiles use the %s calibration, measured on "
            "other networks, so a component far from its centre saturates and stops counting in the "
            "absolute de_score; measure one with `python benchmarks/calibrate_scales.py --preset %s %s` "
            "and add it to denas.scores.descore.CALIBRATION",
            key,
            f"'{fallback}'" if base in CALIBRATION else fallback,
            key.split("/", 1)[1],
            base,
        )
    return {
        **_LATENCY,
        **CALIBRATION["default"],
        **CALIBRATION.get(base, {}),
        **CALIBRATION.get(key, {}),
    }


def percentile(name: str, value: float, domain: str | None = None) -> float:
    """Percentile-like standing of a proxy value among random structures of the domain's space."""
    center, spread = calibration(domain)[name]
    return 0.5 + math.atan((transform(name, value) - center) / spread) / math.pi


def combine(values: Mapping[str, float], weights: Mapping[str, float], domain: str | None = None) -> float:
    """The absolute DE-Score of one model from its proxy values, calibrated for ``domain``."""
    missing = [k for k in weights if k not in values]
    if missing:
        raise WeightError(f"cannot combine: no value for weighted proxies {missing}")
    known = calibration(domain)
    return float(
        sum(
            w * (percentile(k, values[k], domain) if k in known else transform(k, values[k]))
            for k, w in weights.items()
        )
    )


def combine_ranked(population: Sequence[Mapping[str, float]], weights: Mapping[str, float]) -> list[float]:
    """Rank-normalised DE-Score of each member of a population (higher is better)."""
    n = len(population)
    if n == 0:
        return []
    scores = [0.0] * n
    for name, w in weights.items():
        missing = [i for i, v in enumerate(population) if name not in v]
        if missing:
            raise WeightError(
                f"cannot combine: candidate {missing[0]} has no value for weighted proxy '{name}'"
            )
        t = [transform(name, v[name]) for v in population]
        ranks = rankdata(t) if n > 1 else [1.0]
        for i, r in enumerate(ranks):
            scores[i] += w * ((r - 1.0) / (n - 1) if n > 1 else 0.5)
    return scores
