"""A FLOPs-based latency predictor fitted on a few measured candidates (a library API; the search's
pre-filter uses the per-pool `denas.scores.latency_model`, which ranks NB201 latency better).

Two forms, both ridge regressions whose intercept and FLOPs term are not shrunk:

* ``additive`` (default): ``latency_ms = a + b * MFLOPs + c . encoding`` — a network's time is a
  sum of its operations' times, so per-operation counts (a "bag of ops" encoding, e.g. NB201's
  one-hot ops summed per op type) learn what FLOPs miss: pooling and skip edges cost time without
  FLOPs, memory-bound 1x1 convolutions cost more than their FLOPs.
* ``log``: ``log latency_ms = a + b * log FLOPs (+ c . encoding)``, the classic log-log FLOPs
  regression; without an encoding its ranking equals the FLOPs ranking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LatencyPredictor:
    def __init__(self, alpha: float = 0.1, form: str = "additive"):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if form not in ("additive", "log"):
            raise ValueError(f"form: expected 'additive' or 'log', got {form!r}")
        self.alpha = alpha
        self.form = form
        self.coef: np.ndarray | None = None
        self._uses_encoding = False

    def _design(self, flops: Sequence[float], encodings: Sequence[Sequence[float]] | None) -> np.ndarray:
        f = np.maximum(np.asarray(flops, dtype=float), 1.0)[:, None]
        f = np.log(f) if self.form == "log" else f / 1e6
        cols = [np.ones_like(f), f]
        if encodings is not None:
            enc = np.asarray(encodings, dtype=float)
            if enc.shape[0] != f.shape[0]:
                raise ValueError(f"encodings: {enc.shape[0]} rows for {f.shape[0]} flops values")
            cols.append(enc)
        return np.hstack(cols)

    def fit(
        self,
        flops: Sequence[float],
        latency_ms: Sequence[float],
        encodings: Sequence[Sequence[float]] | None = None,
    ) -> LatencyPredictor:
        ms = np.asarray(latency_ms, dtype=float)
        if len(ms) < 2:
            raise ValueError("fit needs at least 2 measured candidates")
        if np.any(~np.isfinite(ms)) or np.any(ms <= 0):
            raise ValueError("latency_ms must be positive and finite")
        y = np.log(ms) if self.form == "log" else ms
        x = self._design(flops, encodings)
        penalty = np.eye(x.shape[1]) * self.alpha
        penalty[:2, :2] = 0.0  # intercept and FLOPs slope are not shrunk
        penalty[1, 1] = 1e-9  # keeps the system solvable when every sample has the same FLOPs
        self.coef = np.linalg.solve(x.T @ x + penalty, x.T @ y)
        self._uses_encoding = encodings is not None
        return self

    def predict(
        self, flops: Sequence[float], encodings: Sequence[Sequence[float]] | None = None
    ) -> np.ndarray:
        """Predicted latency in ms (same batch, threads and path as the fitting measurements)."""
        if self.coef is None:
            raise RuntimeError("predict before fit: fit on a few measured candidates first")
        if self._uses_encoding and encodings is None:
            raise ValueError("encodings: this predictor was fitted with encodings; pass them to predict")
        x = self._design(flops, encodings if self._uses_encoding else None)
        pred = x @ self.coef
        return np.exp(pred) if self.form == "log" else pred
