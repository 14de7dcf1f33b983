"""Prometheus metrics of a search pod (``denas search --metrics-port N``), see docs/metrics.md.

Every rank counts and times the candidates it scores; rank 0 also publishes the best score.
A private registry keeps several searches in one process (tests) from colliding.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: score times span ~10 ms (tiny cells) to ~1 min (ViT with latency measurement)
BUCKETS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class SearchMetrics:
    def __init__(self, port: int | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        self.registry = CollectorRegistry()
        self.scored = Counter(
            "denas_search_candidates_scored", "Candidates scored by this rank.", registry=self.registry
        )
        self.seconds = Histogram(
            "denas_search_score_seconds",
            "Time to score one candidate (all proxies + latency).",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.best = Gauge(
            "denas_search_best_score", "Best DE-Score seen so far (rank 0).", registry=self.registry
        )
        self.generation = Gauge(
            "denas_search_generation", "Generations completed (rank 0).", registry=self.registry
        )
        self.selection_runs = Counter(
            "denas_search_selection_runs",
            "Selection-stage training runs finished by this search, by status.",
            ["status"],
            registry=self.registry,
        )
        self.selection_seconds = Histogram(
            "denas_search_selection_train_seconds",
            "Time of one selection-stage training run.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.selection_rung = Gauge(
            "denas_search_selection_rung", "Selection rung in progress (rank 0).", registry=self.registry
        )
        self.selection_done = Gauge(
            "denas_search_selection_rung_done",
            "Runs finished in the selection rung in progress (rank 0).",
            registry=self.registry,
        )
        self.server = None
        if port:
            self.server, _ = start_http_server(port, registry=self.registry)
            log.info("Prometheus metrics on :%d/metrics", port)

    def observe(self, record: dict[str, Any]) -> None:
        self.scored.inc()
        self.seconds.observe(record.get("score_s", 0.0))

    def set_best(self, score: float | None) -> None:
        if score is not None:
            self.best.set(score)

    def set_generation(self, generation: int) -> None:
        self.generation.set(generation)

    def observe_selection(self, run: dict[str, Any]) -> None:
        if run.get("source") == "store":  # trained by another cell of the campaign: no time here
            self.selection_runs.labels(status="reused").inc()
            return
        self.selection_runs.labels(status=run.get("status", "ok")).inc()
        if run.get("train_s") is not None:
            self.selection_seconds.observe(run["train_s"])

    def set_selection(self, rung: int, done: int, total: int) -> None:
        self.selection_rung.set(rung)
        self.selection_done.set(done)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
