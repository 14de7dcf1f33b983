"""The operator's side effects: observe a job's children, apply a Decision, write the status.

The observed state comes from kopf's watch-fed indexes (no GETs per reconcile); this module
patches over their lag: pods it just created count as present, pods it just deleted as
terminating, and the status it last wrote wins over a job body that predates it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException

from denas import status as S

from . import metrics as M
from . import names as n
from .api import Forbidden, Kube, MissingServiceAccount, Rejected
from .events import EventRecorder
from .reconcile import BLOCKED, Decision, Observed, decide
from .scheduling import is_gated, queue_name

log = logging.getLogger(__name__)

LAG_GRACE_S = 30.0  # how long a create/delete is trusted over the watch caches
RESULT_REREAD_S = 1.0
BURST_DEFER_S = 2.0  # children's reconciles wait at most this long for new jobs' first ones
STATUS_TRUST_S = 10.0  # how long the status just written is trusted over the job body
# The pods' per-job RBAC: created once per job incarnation (409 = exists), not watched.
WORKER_RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"}


def merge_patch(old: Any, new: Any) -> Any:
    """RFC 7386 merge patch turning `old` into `new` (None means: nothing to change)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            sub = merge_patch(old[key], value)
            if sub:
                patch[key] = sub
        elif old[key] != value:
            patch[key] = value
    return patch


def _block(d: Decision, reason: str, message: str) -> None:
    """A blocker met while applying: a Blocked condition in the status about to be written."""
    d.status["conditions"] = S.set_condition(
        d.status.get("conditions", []), BLOCKED, True, reason, message, d.status.get("observedGeneration")
    )


def _reject(d: Decision, rejected: Rejected) -> None:
    """The API server refused a child: an invalid object fails the job (the same object would be
    refused again: no retry loop; a spec edit re-evaluates it, see reconcile.decide); quota,
    LimitRange and admission refusals block it (they clear when the namespace changes; retried)."""
    r = rejected.rejection
    if r.invalid:
        gen = d.status.get("observedGeneration")
        d.status["conditions"] = S.set_condition(
            d.status.get("conditions", []), S.FAILED, True, r.reason, r.message, gen
        )
        for type_ in (S.SEARCH_RUNNING, S.TRAINING_RUNNING):
            if any(c.get("type") == type_ for c in d.status["conditions"]):
                d.status["conditions"] = S.set_condition(
                    d.status["conditions"], type_, False, r.reason, "", gen
                )
        d.status["phase"] = S.phase(d.status["conditions"])
    else:
        _block(d, r.reason, r.message)
    M.RECONCILE_ERRORS.labels(reason=r.reason).inc()


def _pod_prerequisite(obj: dict[str, Any]) -> bool:
    if obj["kind"] == "ServiceAccount":
        return True
    labels = obj["metadata"].get("labels") or {}
    return obj["kind"] == "ConfigMap" and labels.get(n.LABEL_ROLE) == n.ROLE_SPEC


class Reconciler:
    """One reconcile at a time per job; triggers arriving meanwhile coalesce into one more pass."""

    def __init__(self, kube: Kube, job_metrics: M.JobMetrics) -> None:
        self.kube = kube
        self.metrics = job_metrics
        self.events = EventRecorder(kube)
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: Any = {}
        self.configmaps: Any = {}
        self.services: Any = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._dirty: set[tuple[str, str]] = set()
        # uid -> (when, status last written): newer than the job body until its watch event arrives.
        # Trusted only briefly, so a replica resuming after a peering pause reads the cluster.
        self._statuses: dict[str, tuple[float, dict[str, Any]]] = {}
        # (namespace, job) -> {(kind, name): (when, object)}: children created, events pending
        self._created: dict[tuple[str, str], dict[tuple[str, str], tuple[float, dict[str, Any]]]] = {}
        self._deleted: dict[tuple[str, str], float] = {}
        self._worker_rbac: set[str] = set()  # uids of jobs whose pods' RBAC was created
        self._scheduled: set[tuple[str, str]] = set()  # delayed triggers pending
        self._result_reads: dict[tuple[str, str], float] = {}  # (namespace, job) -> last GET
        self._last_reconcile: dict[tuple[str, str], float] = {}
        self._first_pending: dict[tuple[str, str], float] = {}  # new jobs not reconciled yet
        self._tasks: set[asyncio.Task] = set()
        self.on_reconciled: Callable[[tuple[str, str]], None] = lambda key: None  # readiness

    def forget(self, namespace: str, name: str, uid: str | None) -> None:
        self.jobs.pop((namespace, name), None)
        self._created.pop((namespace, name), None)
        self._locks.pop((namespace, name), None)
        self._result_reads.pop((namespace, name), None)
        self._last_reconcile.pop((namespace, name), None)
        self._first_pending.pop((namespace, name), None)
        if uid:
            self._statuses.pop(uid, None)
            self._worker_rbac.discard(uid)
            self.events.forget(uid)
        self.metrics.forget(namespace, name)
        self.on_reconciled((namespace, name))  # a deleted job needs no reconcile to be caught up

    def trigger_soon(self, namespace: str, name: str, delay: float = 0.0) -> None:
        """Reconcile in the background, after `delay`; triggers arriving meanwhile join this one.
        Children's events come in bursts (a pod and its ConfigMaps, a pod's phases): waiting a
        moment turns a burst into one reconcile, and keeps the CPU for jobs still waiting for
        their first pods."""
        key = (namespace, name)
        if delay and key in self._scheduled:
            return

        async def later() -> None:
            if delay:
                await asyncio.sleep(delay)
                # New jobs waiting for their first reconcile go first (bounded: a burst of
                # creations delays the running jobs' bookkeeping by at most BURST_DEFER_S).
                waited = delay
                while self._new_jobs_waiting() and waited < BURST_DEFER_S:
                    await asyncio.sleep(0.1)
                    waited += 0.1
                self._scheduled.discard(key)
            await self.trigger(namespace, name)

        if delay:
            self._scheduled.add(key)
        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def expect_first_reconcile(self, namespace: str, name: str) -> None:
        """A job seen for the first time (no status yet): its first pods are what a user waits for."""
        self._first_pending[(namespace, name)] = time.monotonic()

    def _new_jobs_waiting(self) -> bool:
        """Cheap (every delayed trigger asks it every 0.1 s during a burst): entries are in the
        order they came, so only the oldest ones can be stale (never reconciled: deleted)."""
        now = time.monotonic()
        while self._first_pending:
            key, since = next(iter(self._first_pending.items()))
            if now - since <= 2 * BURST_DEFER_S:
                return True
            self._first_pending.pop(key, None)
        return False

    def reconciled_within(self, namespace: str, name: str, seconds: float) -> bool:
        return time.monotonic() - self._last_reconcile.get((namespace, name), float("-inf")) < seconds

    def finished_for_good(self, namespace: str, name: str) -> bool:
        """Succeeded, or Failed with no pod left running (not for an invalid spec: an edit revives
        it), and no TTL: nothing is left for the timer to do."""
        body = self.jobs.get((namespace, name)) or {}
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        if spec.get("ttlSecondsAfterFinished") is not None:
            return False
        conditions = (body.get("status") or {}).get("conditions") or []
        if S.condition_is_true(conditions, S.SUCCEEDED):
            return True
        failed = next((c for c in conditions if c.get("type") == S.FAILED), None)
        if not failed or failed.get("status") != "True" or failed.get("reason") == "InvalidSpec":
            return False
        # A failed job's reconcile still deletes its pods that run on: done once none is left.
        return all(
            (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            for p in self._store(self.pods, (namespace, name))
        )

    def news_in(self, previous: dict[str, Any] | None, body: dict[str, Any]) -> bool:
        """Whether a job's watch event carries anything a reconcile reads: a new spec generation,
        a deletion, labels, or a status that is neither the last one seen nor the one we wrote."""
        if previous is None:
            return True
        old_meta, meta = previous.get("metadata") or {}, body.get("metadata") or {}
        if any(old_meta.get(k) != meta.get(k) for k in ("generation", "deletionTimestamp", "labels", "uid")):
            return True
        status = body.get("status") or {}
        written = self._statuses.get(meta.get("uid", ""))
        return status != (previous.get("status") or {}) and not (written and status == written[1])

    async def trigger(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            self._dirty.add(key)
            return
        async with lock:
            for _ in range(5):  # bounded: a flapping child must not pin the event loop
                self._dirty.discard(key)
                body = self.jobs.get(key)
                if body is None:
                    return
                await self._reconcile_timed(body)
                if key not in self._dirty:
                    return

    async def _reconcile_timed(self, body: dict[str, Any]) -> None:
        started = time.monotonic()
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name"))
        self._last_reconcile[key] = started
        self._first_pending.pop(key, None)
        try:
            await self.reconcile(body)
        except Forbidden as exc:
            M.RECONCILE_ERRORS.labels(reason="Forbidden").inc()
            log.error("forbidden: %s", exc)
        except ApiException as exc:
            M.RECONCILE_ERRORS.labels(reason=f"HTTP{exc.status}").inc()
            log.warning(
                "API error while reconciling %s: %s %s", body["metadata"].get("name"), exc.status, exc.reason
            )
        except Exception:
            M.RECONCILE_ERRORS.labels(reason="Exception").inc()
            log.exception("reconcile of %s failed", body["metadata"].get("name"))
        finally:
            M.RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.on_reconciled(key)

    def _store(self, index: Any, key: tuple[str, str]) -> Iterable[dict[str, Any]]:
        try:
            return list(index.get(key, []))
        except Exception:
            return []

    async def observe(self, body: dict[str, Any]) -> Observed:
        meta = body["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        now = time.monotonic()
        # Shallow copies: only metadata is ever touched (deletionTimestamp, below).
        pods = {
            p["metadata"]["name"]: {**p, "metadata": dict(p["metadata"])}
            for p in self._store(self.pods, (ns, name))
        }
        configmaps = {cm["metadata"]["name"]: cm for cm in self._store(self.configmaps, (ns, name))}
        services = set(self._store(self.services, (ns, name)))
        created = self._created.get((ns, name), {})
        for (kind, cname), (at, obj) in list(created.items()):
            seen = cname in (pods if kind == "Pod" else configmaps if kind == "ConfigMap" else services)
            if seen or now - at > LAG_GRACE_S:
                created.pop((kind, cname), None)
            elif kind == "Pod":  # created, its watch event not here yet
                pods[cname] = {**obj, "metadata": dict(obj["metadata"])}
            elif kind == "ConfigMap":
                configmaps[cname] = obj
            else:
                services.add(cname)
        for (pns, pname), at in list(self._deleted.items()):
            if now - at > LAG_GRACE_S or (pns == ns and pname not in pods):
                self._deleted.pop((pns, pname), None)
            elif pns == ns:
                pods[pname]["metadata"]["deletionTimestamp"] = "pending"  # deleted, event not here yet
        obs = Observed(pods=list(pods.values()), configmaps=configmaps, services=services)
        obs.worker_rbac = meta.get("uid", "") in self._worker_rbac
        await self._refresh_result(ns, name, obs, body.get("status") or {})
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        storage = spec.get("storage") if isinstance(spec.get("storage"), dict) else {}
        claim = storage.get("claimName")
        if claim and isinstance(claim, str):
            obs.pvc_missing = await self.kube.pvc_missing(ns, claim)
        queue = queue_name(meta.get("labels"), spec)
        if queue and any(is_gated(p) for p in obs.pods):
            obs.kueue_queue_missing = await self.kube.localqueue_missing(ns, queue)
        training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
        if training.get("backend") == "kubeflow":
            obs.kubeflow_installed = await self.kube.kubeflow_installed()
            if obs.kubeflow_installed:
                obs.pytorchjob = await self.kube.get_pytorchjob(ns, n.pytorchjob(name))
        return obs

    async def _refresh_result(self, ns: str, name: str, obs: Observed, status: dict[str, Any]) -> None:
        """A pod's exit and the ConfigMap it wrote just before arrive on different watches: when
        a finished pod's key is not in the cache yet, read the ConfigMap itself (unless the status
        already holds what it would be read for)."""
        conditions = status.get("conditions") or []
        if S.condition_is_true(conditions, S.SUCCEEDED) or S.condition_is_true(conditions, S.FAILED):
            return
        search_done = S.condition_is_true(conditions, S.SEARCH_SUCCEEDED)
        data = (obs.configmaps.get(n.result_configmap(name)) or {}).get("data") or {}
        needed = set()
        for pod in obs.pods:
            if (pod.get("status") or {}).get("phase") != "Succeeded":
                continue
            role = pod["metadata"].get("labels", {}).get(n.LABEL_ROLE)
            if role == n.ROLE_SEARCH and pod["metadata"]["name"] == n.search_pod(name, 0) and not search_done:
                needed.add(n.RESULT_KEY)
            elif role == n.ROLE_TRAIN_MASTER:
                needed.add(n.METRICS_KEY)
        if needed - data.keys():
            # At most one read a second per job: a key a pod never wrote (a training run without
            # metrics) must not turn every reconcile into a GET.
            now = time.monotonic()
            if now - self._result_reads.get((ns, name), -RESULT_REREAD_S) < RESULT_REREAD_S:
                return
            self._result_reads[(ns, name)] = now
            fresh = await self.kube.read_configmap(ns, n.result_configmap(name))
            if fresh is not None:
                obs.configmaps[n.result_configmap(name)] = fresh

    async def reconcile(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        ns, name, uid = meta.get("namespace") or "default", meta["name"], meta.get("uid", "")
        if meta.get("deletionTimestamp"):
            return
        written = self._statuses.get(uid)
        if written and time.monotonic() - written[0] < STATUS_TRUST_S:
            old_status = written[1]
        else:
            old_status = body.get("status") or {}
        body = {**body, "status": old_status}  # decide() works on its own deep copy
        obs = await self.observe(body)
        decision = decide(body, obs, datetime.now(UTC))
        await self.apply(ns, name, decision, obs.pods, uid)
        new_status = decision.status
        patch = merge_patch(old_status, new_status)
        if patch:
            try:
                await self.kube.patch_status(ns, name, patch)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            self._statuses[uid] = (time.monotonic(), new_status)
            await self.events.record(meta, old_status, new_status)
        self.metrics.observe(
            ns, name, new_status, is_new=not old_status.get("observedGeneration") and bool(patch)
        )
        if decision.delete_job:
            log.info("deleting %s/%s: ttlSecondsAfterFinished elapsed", ns, name)
            await self.kube.delete_job(ns, name)

    async def apply(
        self, ns: str, name: str, d: Decision, observed_pods: list[dict[str, Any]], uid: str = ""
    ) -> None:
        try:
            # A pod's prerequisites (its ServiceAccount: admission rejects a pod naming a missing
            # one; its spec ConfigMap: it cannot start without the mount), then the pods, in one
            # trip to a worker thread; then the rest (result ConfigMap, Services, the Role and
            # RoleBinding) at once.
            first = [o for o in d.create if _pod_prerequisite(o)]
            pods = [o for o in d.create if o["kind"] == "Pod"]
            rest = [o for o in d.create if o["kind"] != "Pod" and not _pod_prerequisite(o)]
            created = self._created.setdefault((ns, name), {})
            for tier, fast in ((first + pods, True), (rest, False)):
                if not tier:
                    continue
                if fast:
                    await self.kube.create_in_order(tier, fast=True)
                else:
                    await asyncio.gather(*(self.kube.create(obj) for obj in tier))
                for obj in tier:
                    if obj["kind"] not in WORKER_RBAC_KINDS:
                        created[(obj["kind"], obj["metadata"]["name"])] = (time.monotonic(), obj)
            if any(o["kind"] in WORKER_RBAC_KINDS for o in d.create):
                self._worker_rbac.add(uid)  # all three exist now (409 counts as created)
            for obj in d.replace:
                await self.kube.replace_configmap(obj)
            uids = {p["metadata"]["name"]: p["metadata"].get("uid") for p in observed_pods}
            for pod in dict.fromkeys(d.delete_pods):
                await self.kube.delete_pod(ns, pod, uids.get(pod))
                self._deleted[(ns, pod)] = time.monotonic()
                self._created.get((ns, name), {}).pop(("Pod", pod), None)
            if d.delete_pytorchjob:
                await self.kube.delete_pytorchjob(ns, n.pytorchjob(name))
            if d.clear_result_keys:
                await self.kube.clear_keys(ns, n.result_configmap(name), d.clear_result_keys)
        except MissingServiceAccount as exc:
            if exc.account == n.worker_account(name):
                # Ours, deleted since we made it (it is not watched): make it again, then the pods.
                log.info("%s/%s: %s; creating it again", ns, name, exc)
                self._worker_rbac.discard(uid)
                self.trigger_soon(ns, name, 0.5)
                return
            _block(
                d,
                "ServiceAccountNotFound",
                f"spec.serviceAccountName: {exc}: create it, or remove the field to let the operator "
                "give the pods their own account",
            )
        except Rejected as exc:
            _reject(d, exc)
        except Forbidden as exc:
            _block(
                d,
                "Forbidden",
                f"the operator may not {exc}: grant its ServiceAccount the verbs listed in "
                "operator/denas_operator/RBAC.md (the Helm chart's ClusterRole has them)",
            )
            M.RECONCILE_ERRORS.labels(reason="Forbidden").inc()
