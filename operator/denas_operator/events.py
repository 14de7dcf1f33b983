"""Kubernetes Events for a DeNASJob's lifecycle (`kubectl describe dnj` / `kubectl get events`).

Events are derived, not decided: `lifecycle_events(old, new)` compares the status the operator
last wrote with the one it just wrote (pure, unit-tested), so a level-based reconcile that runs
twice emits nothing twice, and an operator restart does not replay history.

Reasons (involvedObject: the DeNASJob; type Normal unless noted):
SearchStarted, GenerationDone (bounded rate), SearchSucceeded, TrainingStarted,
GroupRestarted (Warning), Blocked (Warning, the condition's reason and message), Queued
(waiting for Kueue admission), Suspended, Resumed, Succeeded, Failed (Warning).

Rate limits (per job and reason, a token bucket: `burst` events at once, then one more every
`every_s` seconds; events over the limit are dropped and counted in
`denas_events_dropped_total{reason}`): GenerationDone 2 then 1 per 30 s; GroupRestarted and
Blocked 3 then 1 per 60 s; every other reason 5 then 1 per 60 s. A crash-looping group can so
write at most 3 + minutes GroupRestarted (and as many Blocked) Events per job, whatever its
backoffLimit; etcd's Event TTL (1 h by default) removes them.

Why not kopf.event/info/warn: they post through kopf's per-handler context and queue, while the
operator's reconciles run in their own tasks and write through `api.Kube`; a small emitter here
uses the same client, the same threads and the same error handling as every other write.
The core/v1 Event API is used (what `kubectl describe` reads on every supported version; the
operator's RBAC grants `create` on `events`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException
from prometheus_client import Counter

from denas import status as S

from . import names as n

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"
MAX_MESSAGE = 1024  # the API server rejects longer Event messages
# reason -> (burst, seconds per extra event)
LIMITS: dict[str, tuple[int, float]] = {
    "GenerationDone": (2, 30.0),
    "GroupRestarted": (3, 60.0),
    "Blocked": (3, 60.0),
}
DEFAULT_LIMIT = (5, 60.0)

DROPPED = Counter("denas_events_dropped_total", "Events not written because of the rate limit", ["reason"])


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def _became_true(old: dict[str, Any], new: dict[str, Any], type_: str) -> dict[str, Any] | None:
    cond = _cond(new, type_)
    if cond.get("status") == "True" and _cond(old, type_).get("status") != "True":
        return cond
    return None


def _int(section: dict[str, Any] | None, key: str) -> int:
    value = (section or {}).get(key)
    return int(value) if isinstance(value, int | float) else 0


def lifecycle_events(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """The Events of one status transition, in lifecycle order."""
    out: list[Event] = []
    if c := _became_true(old, new, S.SEARCH_RUNNING):
        out.append(Event(NORMAL, "SearchStarted", c.get("message") or "search started"))
    search_old, search_new = old.get("search") or {}, new.get("search") or {}
    if _int(search_new, "generation") > _int(search_old, "generation"):
        score = search_new.get("bestScore")
        out.append(
            Event(
                NORMAL,
                "GenerationDone",
                f"generation {_int(search_new, 'generation')}/{_int(search_new, 'generations')} done: "
                f"{_int(search_new, 'evaluated')} architectures evaluated, best DE-Score {score}",
            )
        )
    if c := _became_true(old, new, S.SEARCH_SUCCEEDED):
        out.append(Event(NORMAL, "SearchSucceeded", c.get("message") or "search succeeded"))
    if c := _became_true(old, new, S.TRAINING_RUNNING):
        out.append(Event(NORMAL, "TrainingStarted", c.get("message") or "training started"))
    for group, section in (("search", "search"), ("training", "training")):
        before, after = _int(old.get(section), "restarts"), _int(new.get(section), "restarts")
        if after > before:
            running = _cond(new, S.SEARCH_RUNNING if group == "search" else S.TRAINING_RUNNING)
            why = running.get("message") or _cond(new, S.FAILED).get("message") or ""
            out.append(Event(WARNING, "GroupRestarted", f"{group} group restart {after}: {why}".strip()))
    blocked = _cond(new, "Blocked")
    if blocked.get("status") == "True" and (
        _cond(old, "Blocked").get("status") != "True"
        or _cond(old, "Blocked").get("reason") != blocked.get("reason")
    ):
        out.append(Event(WARNING, "Blocked", f"{blocked.get('reason')}: {blocked.get('message', '')}"))
    if c := _became_true(old, new, "Queued"):
        out.append(Event(NORMAL, "Queued", c.get("message") or "waiting for admission"))
    if c := _became_true(old, new, S.SUSPENDED):
        out.append(Event(NORMAL, "Suspended", c.get("message") or "suspended"))
    suspended = _cond(new, S.SUSPENDED)
    if _cond(old, S.SUSPENDED).get("status") == "True" and suspended.get("status") == "False":
        out.append(Event(NORMAL, "Resumed", suspended.get("message") or "resumed"))
    if c := _became_true(old, new, S.SUCCEEDED):
        out.append(Event(NORMAL, "Succeeded", c.get("message") or "succeeded"))
    if c := _became_true(old, new, S.FAILED):
        out.append(Event(WARNING, "Failed", c.get("message") or "failed"))
    return out


class RateLimiter:
    """Token buckets per (job uid, reason)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def allow(self, uid: str, reason: str) -> bool:
        burst, every = LIMITS.get(reason, DEFAULT_LIMIT)
        now = self.clock()
        tokens, last = self._buckets.get((uid, reason), (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) / every)
        if tokens < 1.0:
            self._buckets[(uid, reason)] = (tokens, now)
            return False
        self._buckets[(uid, reason)] = (tokens - 1.0, now)
        return True

    def forget(self, uid: str) -> None:
        for key in [k for k in self._buckets if k[0] == uid]:
            del self._buckets[key]


def build_event(meta: dict[str, Any], event: Event, now: datetime, instance: str) -> dict[str, Any]:
    """A core/v1 Event about the DeNASJob `meta` describes."""
    ns = meta.get("namespace") or "default"
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # Unique and sortable, as the client libraries' recorders name theirs.
        "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": ns},
        "involvedObject": {
            "apiVersion": n.API_VERSION,
            "kind": n.KIND,
            "name": meta["name"],
            "namespace": ns,
            "uid": meta.get("uid", ""),
        },
        "reason": event.reason,
        "message": event.message[:MAX_MESSAGE],
        "type": event.type,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": "denas-operator"},
        "reportingComponent": "denas.io/operator",
        "reportingInstance": instance,
    }


class EventRecorder:
    """Writes a job's lifecycle Events through the operator's API client; never raises.

    `record` decides and rate-limits at once, then queues: one background task writes the queue
    in order (so a job's Events keep their order), and a reconcile never waits for an Event
    (during a burst of new jobs they would delay the next jobs' first pods). The queue is bounded:
    with the API server down, Events beyond MAX_PENDING are dropped (and counted), not hoarded."""

    MAX_PENDING = 1000

    def __init__(self, kube: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.limiter = RateLimiter(clock)
        self.instance = os.environ.get("POD_ID") or socket.gethostname()
        self._forbidden_logged = False
        self._queue: asyncio.Queue[tuple[dict[str, Any], Event]] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def record(self, meta: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
        """Queue the Events of this transition that the rate limits allow; returns them."""
        accepted = []
        ref = {k: meta.get(k) for k in ("name", "namespace", "uid")}
        for event in lifecycle_events(old, new):
            if not self.limiter.allow(meta.get("uid", ""), event.reason):
                DROPPED.labels(reason=event.reason).inc()
                continue
            if self._writer is None or self._writer.done():
                self._queue = asyncio.Queue(self.MAX_PENDING)
                self._writer = asyncio.get_running_loop().create_task(self._write_all(self._queue))
            try:
                self._queue.put_nowait((ref, event))  # type: ignore[union-attr]
            except asyncio.QueueFull:
                DROPPED.labels(reason=event.reason).inc()
                continue
            accepted.append(event)
        return accepted

    async def flush(self) -> None:
        """Wait until every queued Event was written (tests)."""
        if self._queue is not None and self._writer is not None and not self._writer.done():
            await self._queue.join()

    async def _write_all(self, queue: asyncio.Queue[tuple[dict[str, Any], Event]]) -> None:
        while True:
            ref, event = await queue.get()
            try:
                await self._post(ref, event)
            finally:
                queue.task_done()

    async def _post(self, meta: dict[str, Any], event: Event) -> None:
        ns = meta.get("namespace") or "default"
        body = build_event(meta, event, datetime.now(UTC), self.instance)
        try:
            await asyncio.to_thread(self.kube._request, "POST", f"/api/v1/namespaces/{ns}/events", body)
        except ApiException as exc:
            if exc.status == 403 and not self._forbidden_logged:
                self._forbidden_logged = True
                log.warning("cannot create events in %s (403): grant `create` on events (RBAC.md)", ns)
            elif exc.status != 403:
                log.debug("event %s of %s not written: %s", event.reason, meta.get("name"), exc.status)
        except Exception as exc:  # an Event is never worth a failed reconcile
            log.debug("event %s of %s not written: %s", event.reason, meta.get("name"), exc)

    def forget(self, uid: str) -> None:
        self.limiter.forget(uid)
