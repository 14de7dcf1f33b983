"""kopf wiring: thin handlers that feed the Reconciler; all decisions live in reconcile.py.

Triggers (all level-based, all converge on `Reconciler.trigger(namespace, job)`):
- every watch event of a DeNASJob (create, spec edit, status write, resume after a restart);
- every event of a child Pod / ConfigMap (pods change phase, pods report progress);
- a timer per job, so deadlines and TTLs fire and nothing waits on a missed event.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from . import health
from . import metrics as M
from . import names as n
from .api import Forbidden, Kube
from .health import Readiness
from .kube import Reconciler
from .peering import PeeringWatch

log = logging.getLogger(__name__)

CHILD = {n.LABEL_JOB: kopf.PRESENT}
TIMER_INTERVAL_S = 5.0
CHILD_DEBOUNCE_S = 0.2  # children's events within this window make one reconcile
FINALIZE_TIMEOUT_S = 10.0  # the delete handler's bound: a job's deletion never waits longer


class JobsOnlyDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf builds every watched object's "essence" (a deep copy) on every event to detect
    create/update causes; only DeNASJobs have such handlers here, and the children's events
    (pods, ConfigMaps, Services: most of a burst) need none of it."""

    CHILD_KINDS = frozenset({"Pod", "ConfigMap", "Service"})

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        if body.get("kind") in self.CHILD_KINDS:
            return None
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> Any:
        if body.get("kind") in self.CHILD_KINDS:
            return None
        return super().fetch(body=body)


class Runtime:
    """Process-wide state created at start-up (the kopf memo)."""

    reconciler: Reconciler | None = None
    metrics_port: int | None = 8080
    readiness = Readiness()
    readiness_url: str | None = None
    namespaces: list[str] | None = None  # None: cluster-wide
    peering: tuple[str, str, int] | None = None  # (name, own kopf identity, priority)
    background: set[asyncio.Task] = set()


RUNTIME = Runtime()


def _reconciler() -> Reconciler:
    if RUNTIME.reconciler is None:
        RUNTIME.reconciler = Reconciler(Kube(), M.JobMetrics())
    return RUNTIME.reconciler


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "denas.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="denas.io")
    settings.persistence.diffbase_storage = JobsOnlyDiffBaseStorage(
        prefix="denas.io", key="last-handled-configuration"
    )
    # Server-side watch timeouts make every stream end and re-list regularly, so a watch silently
    # stuck behind a load balancer costs at most a few minutes.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16
    # API calls of many jobs' reconciles run in threads (the official client is synchronous).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32, thread_name_prefix="denas-api"))
    _configure_client()
    rec = _reconciler()
    if RUNTIME.metrics_port:
        M.serve(RUNTIME.metrics_port)
        log.info("metrics on :%d/metrics", RUNTIME.metrics_port)
    await _start_health(rec)


async def _start_health(rec: Reconciler) -> None:
    """Readiness: the jobs that exist now must each be reconciled once (kopf's start-up events
    trigger that); with --peering, follow the pause to drop stale gauges (peering.py)."""
    rec.on_reconciled = RUNTIME.readiness.reconciled
    RUNTIME.readiness.expect(await health.list_jobs(RUNTIME.namespaces) or set())
    if RUNTIME.readiness_url:
        health.serve(RUNTIME.readiness_url, RUNTIME.readiness)
    if RUNTIME.peering:
        name, identity, priority = RUNTIME.peering

        def on_change(paused: bool) -> None:
            RUNTIME.readiness.paused = paused
            if paused:
                rec.metrics.pause()
                return
            rec.metrics.resume({key: body.get("status") or {} for key, body in rec.jobs.items()})
            RUNTIME.readiness.expect({key for key in rec.jobs if not rec.finished_for_good(*key)})

        watch = PeeringWatch(name, RUNTIME.namespaces, identity, priority, on_change)
        task = asyncio.get_running_loop().create_task(watch.run())
        RUNTIME.background.add(task)


def _configure_client() -> None:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 32  # reconciles of many jobs run concurrently
    client.Configuration.set_default(cfg)


# ----- indexes: the children of every job, fed by watches (no GETs per reconcile) -------------


@kopf.index("pods", labels=CHILD)
async def pods_by_job(namespace: str, name: str, labels: dict, meta: dict, status: dict, **_: Any) -> dict:
    pod = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": dict(meta.get("annotations") or {}),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "uid": meta.get("uid"),
        },
        "status": dict(status),
    }
    return {(namespace, labels[n.LABEL_JOB]): pod}


@kopf.index("configmaps", labels=CHILD)
async def configmaps_by_job(
    namespace: str, name: str, labels: dict, meta: dict, body: kopf.Body, **_: Any
) -> dict:
    cm = {
        "metadata": {"name": name, "annotations": dict(meta.get("annotations") or {})},
        # The spec ConfigMap's text is never read back (its hash annotation says enough).
        "data": {} if labels.get(n.LABEL_ROLE) == n.ROLE_SPEC else dict(body.get("data") or {}),
    }
    return {(namespace, labels[n.LABEL_JOB]): cm}


@kopf.index("services", labels=CHILD)
async def services_by_job(namespace: str, name: str, labels: dict, **_: Any) -> dict:
    return {(namespace, labels[n.LABEL_JOB]): name}


def _attach(
    pods_by_job: kopf.Index, configmaps_by_job: kopf.Index, services_by_job: kopf.Index
) -> Reconciler:
    rec = _reconciler()
    rec.pods, rec.configmaps, rec.services = pods_by_job, configmaps_by_job, services_by_job
    return rec


# ----- triggers --------------------------------------------------------------------------------


@kopf.on.event(n.GROUP, n.VERSION, n.PLURAL)
async def job_event(event: dict, body: kopf.Body, namespace: str, name: str, uid: str, **kwargs: Any) -> None:
    rec = _attach(kwargs["pods_by_job"], kwargs["configmaps_by_job"], kwargs["services_by_job"])
    if event.get("type") == "DELETED":
        rec.forget(namespace, name, uid)
        return
    previous = rec.jobs.get((namespace, name))
    rec.jobs[(namespace, name)] = dict(body)
    if previous is None and not (body.get("status") or {}).get("startTime"):
        rec.expect_first_reconcile(namespace, name)  # a new job: its first pods go first
    # The echoes of our own status writes and of kopf's finalizer/annotation patches change
    # nothing a reconcile reads: skipping them halves the reconciles of a burst of new jobs.
    if event.get("type") == "ADDED" or rec.news_in(previous, body):
        # In the background: kopf patches the job (its finalizer) right after this handler, and
        # would otherwise race the status our reconcile writes (a 422 and a retry per new job).
        rec.trigger_soon(namespace, name)


@kopf.on.event("pods", labels=CHILD)
@kopf.on.event("configmaps", labels=CHILD)
async def child_event(namespace: str, labels: dict, **kwargs: Any) -> None:
    rec = _attach(kwargs["pods_by_job"], kwargs["configmaps_by_job"], kwargs["services_by_job"])
    rec.trigger_soon(namespace, labels[n.LABEL_JOB], CHILD_DEBOUNCE_S)


@kopf.timer(n.GROUP, n.VERSION, n.PLURAL, interval=TIMER_INTERVAL_S, initial_delay=TIMER_INTERVAL_S)
async def periodic(namespace: str, name: str, body: kopf.Body, **kwargs: Any) -> None:
    rec = _attach(kwargs["pods_by_job"], kwargs["configmaps_by_job"], kwargs["services_by_job"])
    rec.jobs.setdefault((namespace, name), dict(body))
    # The timer is the safety net (missed events, deadlines, TTLs): a job reconciled moments ago
    # needs none, and a finished job only if it has a TTL to run out.
    if rec.reconciled_within(namespace, name, TIMER_INTERVAL_S / 2) or rec.finished_for_good(namespace, name):
        return
    await rec.trigger(namespace, name)


@kopf.on.delete(n.GROUP, n.VERSION, n.PLURAL)
async def job_deleted(namespace: str, name: str, uid: str, **kwargs: Any) -> None:
    """Best effort, never blocking: the pods go right away so their CPUs free up before the
    garbage collector gets to them (owner references remove every child anyway). Whatever the
    API answers (a 5xx, a 403, a slow server during an uninstall), kopf releases the finalizer
    once this returns: deleting a job never waits on its children."""
    rec = _attach(kwargs["pods_by_job"], kwargs["configmaps_by_job"], kwargs["services_by_job"])

    async def delete_pods() -> None:
        for pod in list(kwargs["pods_by_job"].get((namespace, name), [])):
            await rec.kube.delete_pod(namespace, pod["metadata"]["name"], pod["metadata"].get("uid"))

    try:
        await asyncio.wait_for(delete_pods(), FINALIZE_TIMEOUT_S)
    except (Forbidden, ApiException, TimeoutError) as exc:
        log.warning(
            "%s/%s: deleting its pods failed (%s); the garbage collector removes them through their "
            "owner references%s",
            namespace,
            name,
            exc,
            " (grant the operator delete on pods for prompt cleanup, RBAC.md)"
            if isinstance(exc, Forbidden)
            else "",
        )
    rec.forget(namespace, name, uid)
