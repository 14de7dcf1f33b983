"""Prometheus metrics of the operator (prefix `denas_`; labels: denasjob_namespace, denasjob, phase;
never pods). Not `namespace`/`job`: Prometheus sets those on every target (they would arrive as
exported_namespace / exported_job, or need honor_labels)."""

from __future__ import annotations

from collections import Counter as _Tally
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PHASES = ("Pending", "Searching", "Training", "Succeeded", "Failed", "Suspended")

JOBS = Gauge("denas_jobs", "DeNASJobs known to this operator, by phase.", ["phase"])
CREATED = Counter("denas_jobs_created_total", "DeNASJobs first seen by this operator.")
SUCCEEDED = Counter("denas_jobs_succeeded_total", "DeNASJobs that reached Succeeded.")
FAILED = Counter("denas_jobs_failed_total", "DeNASJobs that reached Failed.")
RECONCILE_SECONDS = Histogram(
    "denas_reconcile_duration_seconds",
    "Time of one reconcile of one job (observe, decide, apply).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "denas_reconcile_errors_total", "Reconciles that raised or got an API error.", ["reason"]
)

JOB_LABELS = ["denasjob_namespace", "denasjob"]
SEARCH_GENERATION = Gauge("denas_job_search_generation", "Search generations completed.", JOB_LABELS)
SEARCH_GENERATIONS = Gauge("denas_job_search_generations", "Search generations planned.", JOB_LABELS)
SEARCH_EVALUATED = Gauge("denas_job_search_evaluated", "Candidates scored so far.", JOB_LABELS)
SEARCH_BEST = Gauge("denas_job_search_best_score", "Best DE-Score found so far.", JOB_LABELS)
SEARCH_RESTARTS = Gauge("denas_job_search_restarts", "Whole-group restarts of the search pods.", JOB_LABELS)
TRAIN_EPOCH = Gauge("denas_job_training_epoch", "Training epoch reported by rank 0.", JOB_LABELS)
TRAIN_METRIC = Gauge("denas_job_training_metric", "Task metric reported by training rank 0.", JOB_LABELS)
TRAIN_RESTARTS = Gauge(
    "denas_job_training_restarts", "Whole-group restarts of the training pods.", JOB_LABELS
)
TRAIN_ACTIVE = Gauge("denas_job_training_active_pods", "Training pods pending or running.", JOB_LABELS)

_PER_JOB = (
    (SEARCH_GENERATION, "search", "generation"),
    (SEARCH_GENERATIONS, "search", "generations"),
    (SEARCH_EVALUATED, "search", "evaluated"),
    (SEARCH_BEST, "search", "bestScore"),
    (SEARCH_RESTARTS, "search", "restarts"),
    (TRAIN_EPOCH, "training", "epoch"),
    (TRAIN_METRIC, "training", "metric"),
    (TRAIN_RESTARTS, "training", "restarts"),
    (TRAIN_ACTIVE, "training", "active"),
)


class JobMetrics:
    """Keeps the per-phase gauge and the per-job series in step with the statuses written."""

    def __init__(self) -> None:
        self.phases: dict[tuple[str, str], str] = {}
        for phase in PHASES:
            JOBS.labels(phase=phase).set(0)

    paused = False

    def pause(self) -> None:
        """A paused HA replica (peering) reconciles nothing: its per-job series and phase counts
        would freeze beside the active replica's, so it exports none until it resumes."""
        self.paused = True
        for namespace, name in list(self.phases):
            self._remove(namespace, name)
        self.phases.clear()
        JOBS.clear()

    def resume(self, statuses: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Active again: publish the jobs' last statuses (the next reconciles refresh them)."""
        self.paused = False
        for (namespace, name), status in statuses.items():
            self.observe(namespace, name, status)
        self._publish()

    def observe(self, namespace: str, name: str, status: dict[str, Any], is_new: bool = False) -> None:
        if self.paused:
            return
        key = (namespace, name)
        old = self.phases.get(key)
        phase = status.get("phase") or "Pending"
        if is_new:
            CREATED.inc()
        if old != phase and old not in ("Succeeded", "Failed"):
            if phase == "Succeeded" and old is not None:
                SUCCEEDED.inc()
            elif phase == "Failed" and old is not None:
                FAILED.inc()
        self.phases[key] = phase
        for gauge, section, field in _PER_JOB:
            value = (status.get(section) or {}).get(field)
            if isinstance(value, int | float):
                gauge.labels(denasjob_namespace=namespace, denasjob=name).set(value)
        self._publish()

    def forget(self, namespace: str, name: str) -> None:
        if self.phases.pop((namespace, name), None) is None:
            return
        self._remove(namespace, name)
        self._publish()

    def _remove(self, namespace: str, name: str) -> None:
        for gauge, _, _ in _PER_JOB:
            try:
                gauge.remove(namespace, name)
            except KeyError:
                pass

    def _publish(self) -> None:
        if self.paused:
            return
        tally = _Tally(self.phases.values())
        for phase in PHASES:
            JOBS.labels(phase=phase).set(tally.get(phase, 0))


def serve(port: int) -> None:
    start_http_server(port)
