"""Cheap stand-in scorers for tests and benchmarks (``denas search --scorer denas.search.fakes:NAME``).

They follow the scorer contract of `denas.search.evaluator`: a pure function of the structure and
its seed, returning ``(scores, latency_ms)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any


def _noise(structure: dict, seed: int) -> float:
    text = json.dumps(structure, sort_keys=True) + str(seed)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def analytic_scorer(space: Any, structure: dict, seed: int, config: Any) -> tuple[dict[str, float], float]:
    """log-params as "expressivity" plus a little deterministic noise; latency from FLOPs."""
    import math

    params = space.count_params(structure)
    expressivity = math.log(params)
    noise = _noise(structure, seed)
    return {
        "expressivity": expressivity,
        "noise": noise,
        "de_score": expressivity + 0.1 * noise,
    }, analytic_latency(space, structure, config)


def analytic_latency(space: Any, structure: dict, config: Any) -> float:
    """The analytic scorers' latency alone (what a job measures when a score store holds the scores)."""
    return 0.01 + space.count_flops(structure) / 1e6


analytic_scorer.latency = analytic_latency  # type: ignore[attr-defined]


def sleep_scorer(space: Any, structure: dict, seed: int, config: Any) -> tuple[dict[str, float], float]:
    """``analytic_scorer`` after sleeping DENAS_FAKE_SCORE_S seconds (default 0.05): a scorer whose
    cost is pure waiting, to measure coordination overhead and to kill a search mid-generation.
    With DENAS_FAKE_SCORE_LOG set, appends each scored structure's hash to that file."""
    time.sleep(float(os.environ.get("DENAS_FAKE_SCORE_S", "0.05")))
    log = os.environ.get("DENAS_FAKE_SCORE_LOG")
    if log:  # one line per scored structure: lets a test count re-scoring across a kill
        with open(log, "a") as f:
            f.write(space.hash(structure) + "\n")
    return analytic_scorer(space, structure, seed, config)


def busy_scorer(space: Any, structure: dict, seed: int, config: Any) -> tuple[dict[str, float], float]:
    """``analytic_scorer`` after DENAS_FAKE_SCORE_S seconds of single-threaded pure-Python work."""
    end = time.process_time() + float(os.environ.get("DENAS_FAKE_SCORE_S", "0.05"))
    x = 0
    while time.process_time() < end:
        x += 1
    return analytic_scorer(space, structure, seed, config)


sleep_scorer.latency = analytic_latency  # type: ignore[attr-defined]
busy_scorer.latency = analytic_latency  # type: ignore[attr-defined]
