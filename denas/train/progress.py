"""Where training progress goes: JSON lines (or a bar on a TTY), Prometheus, and callbacks.

Only rank 0 reports. Prometheus metrics carry the ``denas_train_`` prefix and no pod names or
structure hashes as labels.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], None]


class Progress:
    def __init__(
        self,
        enabled: bool,
        epochs: int,
        metrics_port: int | None = None,
        callbacks: list[ProgressCallback] | None = None,
        stream: TextIO | None = None,
    ):
        self.enabled = enabled
        self.epochs = epochs
        self.callbacks = list(callbacks or [])
        self.stream = stream or sys.stdout
        self.tty = enabled and self.stream.isatty()
        self._bar = None
        self._prom = _PrometheusMetrics(metrics_port) if enabled and metrics_port else None

    def emit(self, event: dict[str, Any]) -> None:
        """One event: a JSON line (or a line above the bar), Prometheus gauges, callbacks."""
        if not self.enabled:
            return
        event = {"time": round(time.time(), 3), **event}
        line = json.dumps(event, default=str)
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
        if self._prom and event.get("phase") == "training":
            self._prom.update(event)
        for callback in self.callbacks if "phase" in event else []:
            try:
                callback(event)
            except Exception as exc:  # a reporter must never kill training
                log.warning("progress callback %r failed: %s", callback, exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=steps, desc=f"epoch {epoch + 1}/{self.epochs}", file=self.stream, leave=False
            )

    def step(self, loss: float, samples: int) -> None:
        if self._prom:
            self._prom.samples.inc(samples)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self._bar.update(1)

    def end_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _PrometheusMetrics:
    def __init__(self, port: int):
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        # A private registry: several trainings in one process (tests) must not collide.
        self.registry = CollectorRegistry()
        self.loss = Gauge("denas_train_loss", "Mean training loss of the last epoch.", registry=self.registry)
        self.metric = Gauge(
            "denas_train_metric",
            "Task metric on the test split after the last epoch.",
            ["metric"],
            registry=self.registry,
        )
        self.throughput = Gauge(
            "denas_train_samples_per_second",
            "Training samples per second (all ranks) in the last epoch.",
            registry=self.registry,
        )
        self.epoch = Gauge("denas_train_epoch", "Epochs completed.", registry=self.registry)
        self.samples = Counter(
            "denas_train_samples", "Training samples processed by rank 0.", registry=self.registry
        )
        self.server, _ = start_http_server(port, registry=self.registry)
        log.info("Prometheus metrics on :%d/metrics", port)

    def update(self, event: dict[str, Any]) -> None:
        self.loss.set(event["loss"])
        self.metric.labels(event["metric_name"]).set(event["metric"])
        self.throughput.set(event["samples_per_s"])
        self.epoch.set(event["epoch"])


def kube_reporter() -> Any | None:
    """The operator's ConfigMap reporter (``denas.kube_report``) when ``DENAS_RESULT_CONFIGMAP`` is set.

    It has ``progress(event)``, ``result(metrics)`` and ``close()``; None outside operator pods.
    """
    try:
        from denas import kube_report
    except ImportError:
        return None
    return kube_report.reporter_from_env(role="train")
