"""Hand progress and results from a pod to the operator through the `<job>-result` ConfigMap.

Only the operator writes a DeNASJob's status. Pods write here instead: each role and rank owns
distinct data keys, so search and training, and several ranks, never clobber each other
(every write is a JSON merge patch of the writer's own keys).

Keys (all values are JSON text):
- ``search-progress``         search rank 0: ``{"generation", "generations", "evaluated", "best_score", ...}``
- ``search-progress-<rank>``  other search ranks (if they report at all)
- ``result.json``             search rank 0: the bounded top-K result (``{"best": [...], ...}``)
- ``train-progress-<rank>``   each training process: ``{"epoch", "epochs", "metric", "metric_name", "loss", ...}``
- ``metrics.json`` / ``metrics-<rank>.json``  training: the final metrics (rank 0 / other ranks)

The reporter is active only inside a pod the operator built: env ``DENAS_RESULT_CONFIGMAP`` (the
ConfigMap's name) and ``DENAS_NAMESPACE`` must be set; ``DENAS_ROLE`` (``search`` or ``train``)
and ``RANK`` pick the keys; ``DENAS_REPORT_INTERVAL_S`` changes the 2 s throttle. Reporting is best effort: every error is logged, never raised, so a
broken API server or missing RBAC never fails a search or a training run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

# A ConfigMap holds at most 1 MiB. The result gets half of it; progress keys are tiny.
MAX_RESULT_BYTES = 512 * 1024
DEFAULT_MAX_BEST = 50
PROGRESS_INTERVAL_S = 2.0
REQUEST_TIMEOUT_S = 10


def bound_result(
    result: dict[str, Any], max_best: int = DEFAULT_MAX_BEST, max_bytes: int = MAX_RESULT_BYTES
) -> str:
    """Serialise ``result`` to JSON of at most ``max_bytes``: top-``max_best`` entries of ``best``,
    then bulky extra keys dropped, then ``best`` shortened until it fits."""
    bounded = dict(result)
    if isinstance(bounded.get("best"), list):
        bounded["best"] = bounded["best"][:max_best]
    text = json.dumps(bounded, sort_keys=True, default=str)
    if len(text.encode()) <= max_bytes:
        return text
    # Keep "best" and small scalar keys; archives/histories belong on the PVC, not in etcd.
    bounded = {k: v for k, v in bounded.items() if k == "best" or not isinstance(v, (list, dict))}
    bounded["truncated"] = True
    best = list(bounded.get("best") or [])
    while True:
        bounded["best"] = best
        text = json.dumps(bounded, sort_keys=True, default=str)
        if len(text.encode()) <= max_bytes or not best:
            return text
        best = best[: max(len(best) // 2, len(best) - 1) if len(best) > 8 else len(best) - 1]


class Reporter:
    """Writes this pod's keys of the result ConfigMap; see the module docstring for the keys."""

    def __init__(
        self,
        configmap: str,
        namespace: str,
        role: str = "search",
        rank: int = 0,
        api: Any = None,
        interval_s: float = PROGRESS_INTERVAL_S,
        max_best: int = DEFAULT_MAX_BEST,
    ) -> None:
        self.configmap = configmap
        self.namespace = namespace
        self.role = role
        self.rank = rank
        self.interval_s = interval_s
        self.max_best = max_best
        self._api = api
        self._lock = threading.Lock()
        self._last_sent = 0.0
        self._pending: dict[str, Any] | None = None
        self._timer: threading.Timer | None = None

    @property
    def progress_key(self) -> str:
        if self.role == "search" and self.rank == 0:
            return "search-progress"
        return f"{self.role}-progress-{self.rank}"

    @property
    def result_key(self) -> str:
        if self.role == "search":
            return "result.json" if self.rank == 0 else f"result-{self.rank}.json"
        return "metrics.json" if self.rank == 0 else f"metrics-{self.rank}.json"

    def progress(self, event: dict[str, Any]) -> None:
        """Record a progress event; at most one patch per ``interval_s``, the last one always sent."""
        with self._lock:
            self._pending = dict(event)
            wait = self._last_sent + self.interval_s - time.monotonic()
            if wait > 0:
                if self._timer is None:
                    # Without a timer, the last event of a quiet period would never be sent.
                    self._timer = threading.Timer(wait, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self.flush()

    def flush(self) -> None:
        """Send the pending progress event now (if any)."""
        with self._lock:
            event, self._pending = self._pending, None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if event is None:
                return
            self._last_sent = time.monotonic()
        self._patch({self.progress_key: json.dumps(event, sort_keys=True, default=str)})

    def result(self, result: dict[str, Any]) -> None:
        """Write the final result (bounded to fit a ConfigMap) after flushing pending progress."""
        self.flush()
        self._patch({self.result_key: bound_result(result, self.max_best)})

    def write(self, key: str, value: str) -> bool:
        """Write one extra key of this pod's own (e.g. the export's ``model-ref.json``)."""
        return self._patch({key: value})

    def close(self) -> None:
        self.flush()

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = client.CoreV1Api()
        return self._api

    def _patch(self, data: dict[str, str]) -> bool:
        try:
            self._client().patch_namespaced_config_map(
                self.configmap, self.namespace, {"data": data}, _request_timeout=REQUEST_TIMEOUT_S
            )
            return True
        except Exception as exc:  # reporting must never fail the search or the training
            log.warning(
                "could not report %s to ConfigMap %s/%s: %s (the pod's ServiceAccount needs get/patch on it)",
                ", ".join(data),
                self.namespace,
                self.configmap,
                exc,
            )
            return False


def reporter_from_env(role: str | None = None, rank: int | None = None) -> Reporter | None:
    """A Reporter when running in an operator-built pod (``DENAS_RESULT_CONFIGMAP`` and
    ``DENAS_NAMESPACE`` set), else None. ``role``/``rank`` default to ``DENAS_ROLE``/``RANK``."""
    configmap = os.environ.get("DENAS_RESULT_CONFIGMAP")
    namespace = os.environ.get("DENAS_NAMESPACE")
    if not configmap or not namespace:
        return None
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        log.warning("DENAS_RESULT_CONFIGMAP is set but the kubernetes client is not installed; not reporting")
        return None
    role = role or os.environ.get("DENAS_ROLE", "search")
    if rank is None:
        try:
            rank = int(os.environ.get("RANK", "0"))
        except ValueError:
            rank = 0
    max_best = int(os.environ.get("DENAS_TOP_K", DEFAULT_MAX_BEST))
    interval = float(os.environ.get("DENAS_REPORT_INTERVAL_S", PROGRESS_INTERVAL_S))
    return Reporter(configmap, namespace, role=role, rank=rank, max_best=max_best, interval_s=interval)
