"""Progress of a search: a tqdm bar on a TTY, JSON lines otherwise, plus optional mirrors.

Besides one event per generation, a search reports where its time goes before and inside a
generation: ``startup`` events (what start-up is doing: imports, warm-up, latency calibration)
and ``scored`` events inside a generation (candidates scored so far / this generation's total and
an ETA; on a TTY a second bar, as JSON lines at most once a second plus the first and last).

Mirrors: a callback (``on_event``), a JSON file atomically replaced on every event
(``--progress-file``, what an operator sidecar or the local executor reads), and, when
``DENAS_RESULT_CONFIGMAP`` is set, the pod's ConfigMap reporter from `denas.kube_report`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from denas.search.checkpoint import atomic_write_json

log = logging.getLogger(__name__)


def kube_reporter() -> Any:
    """The ConfigMap reporter when running in a search pod, else None."""
    if not os.environ.get("DENAS_RESULT_CONFIGMAP"):
        return None
    try:
        from denas.kube_report import reporter_from_env
    except ImportError:
        log.warning("DENAS_RESULT_CONFIGMAP is set but denas.kube_report is not installed; not reporting")
        return None
    return reporter_from_env(role="search", rank=0)


def _call(reporter: Any, names: tuple[str, ...], payload: dict[str, Any] | None = None) -> None:
    for name in names:
        method = getattr(reporter, name, None)
        if callable(method):
            try:
                method(*([] if payload is None else [payload]))
            except Exception as e:  # noqa: BLE001 - reporting must never kill the search
                log.warning("progress reporter %s failed: %s", name, e)
            return


def _summary(event: dict[str, Any]) -> dict[str, Any]:
    """Log lines stay short: the result event names the best candidate, not the whole archive."""
    if event["event"] != "result":
        return event
    result = event["result"]
    best = result["best"][0] if result["best"] else {}
    return {
        "event": "result",
        "evaluated": result["evaluated"],
        "generations": result["generations"],
        "best_hash": best.get("hash"),
        "best_score": best.get("fitness"),
        "elapsed_s": result["elapsed_s"],
    }


#: seconds between two ``scored`` JSON lines (the first and the last of a generation always go out)
SCORED_INTERVAL_S = 1.0


def startup(stage: str, message: str, stream: TextIO | None = None) -> None:
    """Say what start-up is doing (a text line to stderr on a TTY, a JSON line otherwise).

    Callable before torch is imported: it imports nothing heavy."""
    stream = stream or sys.stdout
    if stream.isatty():
        print(f"search: {message}", file=sys.stderr, flush=True)
    else:
        stream.write(json.dumps({"event": "startup", "stage": stage, "message": message}) + "\n")
        stream.flush()


class Progress:
    def __init__(
        self,
        generations: int,
        stream: TextIO | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        progress_file: str | Path | None = None,
        reporter: Any = None,
        bar: bool | None = None,
    ):
        self.generations = generations
        self.stream = stream or sys.stdout  # like `denas train`: the local executor reads stdout
        self.on_event = on_event
        self.progress_file = Path(progress_file) if progress_file else None
        self.reporter = reporter
        use_bar = self.stream.isatty() if bar is None else bar
        self.bar = None
        self.inner: Any = None  # the bar of the generation being scored (TTY only)
        self._scored_at = 0.0  # when the last `scored` line went out
        self._generation_started = time.monotonic()
        self.rung_bar: Any = None  # one bar per selection rung
        self.rung_no: int | None = None
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=generations, desc="search", unit="gen", file=sys.stderr)

    def start_generation(self, generation: int, total: int) -> None:
        """Generation ``generation`` (1-based) starts scoring ``total`` new candidates."""
        self._generation_started = time.monotonic()
        self._scored_at = 0.0
        if self.bar is None and total > 0:
            self.scored(generation, 0, total)  # "generation g: 0/total" before the first score
        elif self.bar is not None and total > 0:
            from tqdm import tqdm

            if self.inner is not None:
                self.inner.close()
            self.inner = tqdm(
                total=total, desc=f"  generation {generation}", unit="cand", file=sys.stderr, leave=False
            )

    def scored(self, generation: int, done: int, total: int) -> None:
        """``done`` of this generation's ``total`` new candidates are scored."""
        if self.inner is not None:
            self.inner.n = done
            self.inner.refresh()
            if done >= total:
                self.inner.close()
                self.inner = None
            return
        if self.bar is not None:
            return
        now = time.monotonic()
        if done not in (0, 1, total) and now - self._scored_at < SCORED_INTERVAL_S:
            return
        self._scored_at = now
        elapsed = now - self._generation_started
        event = {
            "event": "scored",
            "of_generation": generation,
            "generations": self.generations,
            "done": done,
            "total": total,
            "elapsed_s": round(elapsed, 3),
            "eta_s": round(elapsed / done * (total - done), 1) if done else None,
        }
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()

    def event(self, event: dict[str, Any]) -> None:
        if self.bar is not None:
            if event["event"] == "generation":
                self.bar.n = event["generation"]
                self.bar.set_postfix(
                    best=f"{event['best_score']:.4g}" if event["best_score"] is not None else "-",
                    evaluated=event["evaluated"],
                )
                self.bar.refresh()
            elif event["event"] == "selection":
                self._rung_bar(event["selection"])
        else:
            self.stream.write(json.dumps(_summary(event)) + "\n")
            self.stream.flush()
        if self.progress_file is not None:
            atomic_write_json(self.progress_file, event)
        if self.on_event is not None:
            self.on_event(event)
        if self.reporter is not None:
            if event["event"] == "result":
                _call(self.reporter, ("result", "report_result"), event["result"])
            else:
                _call(self.reporter, ("progress", "report_progress"), event)

    def _rung_bar(self, sel: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self.rung_no != sel["rung"]:
            if self.rung_bar is not None:
                self.rung_bar.close()
            self.rung_no = sel["rung"]
            self.rung_bar = tqdm(
                total=sel["total"],
                desc=f"selection rung {sel['rung'] + 1}/{sel['rungs']}",
                unit="run",
                file=sys.stderr,
            )
        if self.rung_bar.total != sel["total"]:  # rung 0 grows by the surrogate's (and steering's) picks
            self.rung_bar.total = sel["total"]
        self.rung_bar.n = sel["done"]
        self.rung_bar.refresh()

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        if self.rung_bar is not None:
            self.rung_bar.close()
        if self.bar is not None:
            self.bar.close()
        if self.reporter is not None:
            _call(self.reporter, ("close",))
