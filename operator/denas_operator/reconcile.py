"""The level-based reconcile decision (pure): job body + observed children -> actions + status.

`decide` never talks to Kubernetes; `kube.py` gathers the `Observed` state and applies the
`Decision`. Every call recomputes everything from what exists, so running it twice, or after an
operator restart, converges to the same children (names are deterministic, creates are 409-safe).

Spec edits while the job runs (documented in the operator README):
- search fields (domain, searchSpace, score, search except replicas/resources, constraints):
  the search restarts from scratch in a new directory `search-<fingerprint>`, with new pods;
- anything else that changes the pod templates (image, resources, replicas, hardware, training):
  the running group is replaced and resumes from its checkpoint;
- suspend/ttlSecondsAfterFinished: take effect in place;
- a finished job (Succeeded/Failed) does not restart; a job Failed for an invalid spec is
  re-evaluated when the spec is fixed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from denas import status as S

from . import names as n
from .export_status import mirror_export
from .groups import GroupOutcome, reconcile_group
from .network import desired_network_policy
from .objects import (
    build_headless_service,
    build_pytorchjob,
    build_result_configmap,
    build_spec_configmap,
    build_worker_rbac,
    spec_hash,
)
from .pods import (
    JobRef,
    build_search_pods,
    build_training_pods,
    group_template_hash,
    search_dir,
    train_dir,
)
from .podstate import pod_state
from .rejections import INVALID
from .scheduling import kueue_conditions, kueue_pod_group
from .suspension import account_suspension, parse_ts, training_seconds
from .validation import validate_body

BLOCKED = "Blocked"
MAX_STATUS_STRUCTURE_BYTES = 256 * 1024
RESULT_GRACE_S = 30  # how long a finished search pod's result may lag behind its exit


@dataclass
class Observed:
    """The job's children as the operator sees them (from its watch caches or the API)."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    configmaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    pvc_missing: bool = False
    kubeflow_installed: bool | None = None
    pytorchjob: dict[str, Any] | None = None
    worker_rbac: bool = False  # the per-job ServiceAccount/Role/RoleBinding (NetworkPolicy) exist
    kueue_queue_missing: bool | None = None  # the job's Kueue LocalQueue is absent (None: unknown)


@dataclass
class Decision:
    status: dict[str, Any]
    create: list[dict[str, Any]] = field(default_factory=list)
    replace: list[dict[str, Any]] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    delete_pytorchjob: bool = False
    clear_result_keys: list[str] = field(default_factory=list)
    delete_job: bool = False


def _ts(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_json(cm: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    text = ((cm or {}).get("data") or {}).get(key)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def bounded_structures(result: dict[str, Any], top_k: int) -> list[dict[str, Any]]:
    """Top-K for the status, shortened further if it would bloat the object in etcd."""
    best = S.best_structures(result, top_k)
    while best and len(json.dumps(best)) > MAX_STATUS_STRUCTURE_BYTES:
        best = best[:-1]
    return best


class _Status:
    """The status being built: conditions keyed by type, stamped with the job's generation."""

    def __init__(self, old: dict[str, Any], generation: int, now: datetime) -> None:
        self.st = copy.deepcopy(old)
        self.st.setdefault("conditions", [])
        self.st["observedGeneration"] = generation
        self.generation = generation
        self.now = _ts(now)

    def cond(self, type_: str, status: bool, reason: str, message: str = "") -> None:
        self.st["conditions"] = S.set_condition(
            self.st["conditions"], type_, status, reason, message, self.generation, self.now
        )

    def is_true(self, type_: str) -> bool:
        return S.condition_is_true(self.st["conditions"], type_)

    def reason(self, type_: str) -> str | None:
        return next((c.get("reason") for c in self.st["conditions"] if c.get("type") == type_), None)

    def unset(self, type_: str, reason: str, message: str = "") -> None:
        """Flip a condition to False only if it exists (keeps fresh jobs' lists short)."""
        if any(c.get("type") == type_ for c in self.st["conditions"]):
            self.cond(type_, False, reason, message)

    def finish(self) -> dict[str, Any]:
        self.st["phase"] = S.phase(self.st["conditions"])
        return self.st


def decide(body: dict[str, Any], obs: Observed, now: datetime | None = None) -> Decision:
    now = now or datetime.now(UTC)
    meta = body.get("metadata") or {}
    st = _Status(body.get("status") or {}, int(meta.get("generation") or 1), now)
    d = Decision(status=st.st)
    active_pods = [
        p["metadata"]["name"] for p in obs.pods if not (p.get("metadata") or {}).get("deletionTimestamp")
    ]

    spec, errors = validate_body(body)
    if spec is None:
        st.cond(
            S.FAILED,
            True,
            "InvalidSpec",
            "the spec is invalid: " + "; ".join(errors) + ". Fix these fields (kubectl edit dnj "
            f"{meta.get('name')}) and the job is re-evaluated.",
        )
        d.delete_pods = active_pods
        d.status = st.finish()
        return d
    if st.is_true(S.FAILED) and st.reason(S.FAILED) == "InvalidSpec":
        st.cond(S.FAILED, False, "SpecFixed", "the spec is valid again")
    if st.is_true(S.FAILED) and st.reason(S.FAILED) == INVALID and _failed_before(st, st.generation):
        # The API server refused a child as invalid (kube.py): the spec was edited since; try again.
        st.cond(S.FAILED, False, "SpecChanged", "the spec changed; creating the children again")

    job = JobRef.from_body(body, spec)
    if st.is_true(S.SUCCEEDED) or st.is_true(S.FAILED):
        _finished(job, st, obs, d, now)
        d.status = st.finish()
        return d

    _ensure_configmaps(job, obs, d)
    if spec.get("suspend"):
        d.delete_pods = active_pods
        d.delete_pytorchjob = obs.pytorchjob is not None
        st.cond(S.SUSPENDED, True, "Suspended", "pods deleted, state kept; set spec.suspend: false to resume")
        st.unset(S.SEARCH_RUNNING, "Suspended")
        st.unset(S.TRAINING_RUNNING, "Suspended")
        st.unset("Queued", "Suspended")  # Kueue: no pods, nothing waits for admission
        training = st.st.get("training") or {}
        if training.get("startTime") and not training.get("suspendedAt"):
            training["suspendedAt"] = st.now  # this interval does not count against the deadline
        d.status = st.finish()
        return d
    # Like a batch/v1 Job's: set when the job first runs (a job created suspended has none yet).
    st.st.setdefault("startTime", st.now)
    if st.is_true(S.SUSPENDED):
        st.cond(S.SUSPENDED, False, "Resumed", "resumed from the last checkpoint")
    account_suspension(st.st.get("training"), now)
    if not spec.get("serviceAccountName") and not obs.worker_rbac:
        d.create += build_worker_rbac(job)  # before any pod: pods name this account
    if not obs.worker_rbac and (policy := desired_network_policy(job)):
        d.create.append(policy)  # created once per job and operator run, like the worker RBAC

    claim = (spec.get("storage") or {}).get("claimName")
    if obs.pvc_missing:
        st.cond(
            BLOCKED,
            True,
            "PersistentVolumeClaimNotFound",
            f"PersistentVolumeClaim {claim} (spec.storage.claimName) does not exist in namespace "
            f"{job.namespace}: create it, or remove spec.storage.claimName to use an emptyDir",
        )
        d.status = st.finish()
        return d

    _mirror_progress(job, st, obs)
    current_dir = search_dir(job)
    result_ref = st.st.get("resultRef") or {}
    if st.is_true(S.SEARCH_SUCCEEDED) and result_ref.get("path") not in (None, current_dir):
        _restart_search_from_scratch(st, obs, d)

    if not st.is_true(S.SEARCH_SUCCEEDED):
        _search_stage(job, st, obs, d, current_dir, now)
    else:
        _training_stage(job, st, obs, d, now)
    before = (body.get("status") or {}).get("conditions") or []
    kueue_conditions(st, job.queue, obs.pods, job.namespace, obs.kueue_queue_missing, before)
    d.status = st.finish()
    return d


def _failed_before(st: _Status, generation: int) -> bool:
    failed = next((c for c in st.st["conditions"] if c.get("type") == S.FAILED), {})
    return int(failed.get("observedGeneration") or 0) < generation


def _ensure_configmaps(job: JobRef, obs: Observed, d: Decision) -> None:
    existing = obs.configmaps.get(n.spec_configmap(job.name))
    if existing is None:
        d.create.append(build_spec_configmap(job))
    elif (existing.get("metadata", {}).get("annotations") or {}).get(n.ANNOTATION_SPEC_HASH) != spec_hash(
        job
    ):
        d.replace.append(build_spec_configmap(job))
    if n.result_configmap(job.name) not in obs.configmaps:
        d.create.append(build_result_configmap(job))


def _ensure_service(job: JobRef, group: str, obs: Observed, d: Decision) -> None:
    name = n.search_service(job.name) if group == "search" else n.train_service(job.name)
    if name not in obs.services:
        d.create.append(build_headless_service(job, group))


def _mirror_progress(job: JobRef, st: _Status, obs: Observed) -> None:
    result_cm = obs.configmaps.get(n.result_configmap(job.name))
    progress = _read_json(result_cm, n.SEARCH_PROGRESS_KEY)
    if progress:
        st.st["search"] = {**(st.st.get("search") or {}), **S.search_progress(progress)}
    train = _read_json(result_cm, "train-progress-0")
    if train:
        st.st["training"] = {**(st.st.get("training") or {}), **S.training_progress(train)}


def _restart_search_from_scratch(st: _Status, obs: Observed, d: Decision) -> None:
    st.cond(S.SEARCH_SUCCEEDED, False, "SpecChanged", "the search spec changed; searching again from scratch")
    st.unset(S.TRAINING_RUNNING, "SpecChanged")
    for key in ("bestStructures", "resultRef", "training"):
        st.st.pop(key, None)
    st.st["search"] = {"restarts": 0}
    d.delete_pods = [p["metadata"]["name"] for p in obs.pods]
    d.delete_pytorchjob = obs.pytorchjob is not None
    d.clear_result_keys = [n.SEARCH_PROGRESS_KEY, n.RESULT_KEY, n.METRICS_KEY, "train-progress-0"]
    obs.pods = []


def _set_blocker(st: _Status, outcome: GroupOutcome) -> None:
    if outcome.blocker:
        st.cond(BLOCKED, True, *outcome.blocker)
    else:
        st.unset(BLOCKED, "Progressing")


def _fail(st: _Status, reason: str, message: str) -> None:
    st.cond(S.FAILED, True, reason, message)
    st.unset(S.SEARCH_RUNNING, reason)
    st.unset(S.TRAINING_RUNNING, reason)
    st.st["completionTime"] = st.now


def _search_stage(job: JobRef, st: _Status, obs: Observed, d: Decision, out_dir: str, now: datetime) -> None:
    _ensure_service(job, "search", obs, d)
    search = st.st.setdefault("search", {})
    search.setdefault("generations", int(job.spec["search"]["generations"]))
    pods = [p for p in obs.pods if p["metadata"].get("labels", {}).get("denas.io/group") == "search"]
    others = [
        p["metadata"]["name"]
        for p in obs.pods
        if p not in pods and not p["metadata"].get("deletionTimestamp")
    ]
    d.delete_pods += others
    backoff = int(job.spec["search"].get("backoffLimit", 3))  # the search's own, not training's
    rank0 = n.search_pod(job.name, 0)
    restarts = int(search.get("restarts", 0))
    outcome = reconcile_group(
        kueue_pod_group(build_search_pods(job), job.queue, job.name, job.uid, "search", restarts),
        pods,
        lambda s: s.get(rank0) == "succeeded",
        restarts,
        backoff,
    )
    search["restarts"] = outcome.restarts
    d.create += outcome.create
    d.delete_pods += outcome.delete
    _set_blocker(st, outcome)
    if outcome.state == "failed":
        _fail(st, "SearchFailed", outcome.message + ". Fix the cause and create the job again.")
        return
    if outcome.state == "done":
        result = _read_json(obs.configmaps.get(n.result_configmap(job.name)), n.RESULT_KEY)
        if result is None and _finished_within(obs, rank0, now, RESULT_GRACE_S):
            st.cond(
                S.SEARCH_RUNNING, True, "WaitingForResult", f"{rank0} finished; waiting for its result.json"
            )
            return
        if result is None:
            _fail(
                st,
                "ResultMissing",
                f"{rank0} exited 0 but no result.json reached ConfigMap {n.result_configmap(job.name)}: "
                "the pods' ServiceAccount (spec.serviceAccountName) needs get/patch on it (see RBAC.md)",
            )
            return
        best = bounded_structures(result, int(job.spec["search"].get("topK", 5)))
        st.st["bestStructures"] = best
        st.st["search"] = {**st.st.get("search", {}), **S.score_counts(result)}  # a campaign sums these
        claim = (job.spec.get("storage") or {}).get("claimName")
        ref = {"configMap": n.result_configmap(job.name), "path": out_dir}
        if claim:
            ref["claimName"] = claim
        st.st["resultRef"] = ref
        score = best[0].get("deScore") if best else None
        st.cond(S.SEARCH_RUNNING, False, "SearchCompleted", "the search pods finished")
        st.cond(
            S.SEARCH_SUCCEEDED,
            True,
            "ResultReady",
            f"{len(best)} structure(s) in status.bestStructures, best DE-Score {score}; the full "
            f"result is in ConfigMap {ref['configMap']} (key result.json) and at {out_dir}",
        )
        if job.spec["training"].get("enabled", True):
            _training_stage(job, st, obs, d, now)
        else:
            st.cond(S.SUCCEEDED, True, "SearchCompleted", "search finished; training is disabled")
            st.st["completionTime"] = st.now
        return
    if outcome.state == "restarting":
        st.cond(S.SEARCH_RUNNING, True, "Restarting", outcome.message or "replacing the search pods")
    elif outcome.state == "running":
        st.cond(S.SEARCH_RUNNING, True, "PodsRunning", f"{outcome.active} search pod(s) running")
    else:
        msg = outcome.blocker[1] if outcome.blocker else "waiting for the search pods to start"
        st.cond(S.SEARCH_RUNNING, True, "PodsPending", msg)


def _finished_within(obs: Observed, pod_name: str, now: datetime, seconds: float) -> bool:
    """True while `pod_name` finished less than `seconds` ago (or its finish time is unknown)."""
    pod = next((p for p in obs.pods if p["metadata"]["name"] == pod_name), None)
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        finished = parse_ts(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None:
            return (now - finished).total_seconds() < seconds
    return True


def _training_stage(job: JobRef, st: _Status, obs: Observed, d: Decision, now: datetime) -> None:
    training = st.st.setdefault("training", {})
    spec_training = job.spec["training"]
    train_pods = [p for p in obs.pods if p["metadata"].get("labels", {}).get("denas.io/group") == "train"]
    # Search ranks still running once rank 0 finished are leftovers; completed pods stay for logs.
    d.delete_pods += [
        p["metadata"]["name"]
        for p in obs.pods
        if p not in train_pods
        and pod_state(p) in ("pending", "running")
        and p["metadata"]["name"] not in d.delete_pods
    ]
    training.setdefault("startTime", st.now)
    deadline = spec_training.get("activeDeadlineSeconds")
    started = parse_ts(training.get("startTime"))
    if deadline and started and training_seconds(training, started, now) > int(deadline):
        d.delete_pods += [p["metadata"]["name"] for p in train_pods]
        d.delete_pytorchjob = obs.pytorchjob is not None
        _fail(
            st,
            "DeadlineExceeded",
            f"training ran longer than spec.training.activeDeadlineSeconds ({deadline} s); raise it or "
            "lower the budget (epochs, dataset.limit)",
        )
        return
    if spec_training.get("backend") == "kubeflow":
        _kubeflow_training(job, st, obs, d)
        return
    _ensure_service(job, "train", obs, d)
    restarts = int(training.get("restarts", 0))
    outcome = reconcile_group(
        kueue_pod_group(build_training_pods(job), job.queue, job.name, job.uid, "train", restarts),
        train_pods,
        lambda s: all(v == "succeeded" for v in s.values()),
        restarts,
        int(spec_training.get("backoffLimit", 3)),
    )
    training.update(
        restarts=outcome.restarts, active=outcome.active, succeeded=outcome.succeeded, failed=outcome.failed
    )
    d.create += outcome.create
    d.delete_pods += [p for p in outcome.delete if p not in d.delete_pods]
    _set_blocker(st, outcome)
    if outcome.state == "failed":
        _fail(st, "TrainingFailed", outcome.message + ". Fix the cause and create the job again.")
    elif outcome.state == "done":
        _training_succeeded(job, st, obs)
    elif outcome.state == "restarting":
        st.cond(S.TRAINING_RUNNING, True, "Restarting", outcome.message or "replacing the training pods")
    elif outcome.state == "running":
        st.cond(S.TRAINING_RUNNING, True, "PodsRunning", f"{outcome.active} training pod(s) running")
    else:
        msg = outcome.blocker[1] if outcome.blocker else "waiting for the training pods to start"
        st.cond(S.TRAINING_RUNNING, True, "PodsPending", msg)


def _training_succeeded(job: JobRef, st: _Status, obs: Observed) -> None:
    metrics = _read_json(obs.configmaps.get(n.result_configmap(job.name)), n.METRICS_KEY) or {}
    training = st.st["training"]
    if metrics.get("metric") is not None:
        training["metric"] = metrics["metric"]
    if metrics.get("metric_name"):
        training["metricName"] = metrics["metric_name"]
    if metrics.get("epoch") is not None:
        training["epoch"] = metrics["epoch"]
    training["active"] = 0
    st.cond(S.TRAINING_RUNNING, False, "TrainingCompleted", "every training rank exited 0")
    st.cond(S.TRAINING_SUCCEEDED, True, "TrainingCompleted", f"trained to {train_dir(job)}")
    st.cond(S.SUCCEEDED, True, "Completed", "search and training finished")
    st.st["completionTime"] = st.now
    # the master pod exported after training (denas.export.pod); copy its modelRef / ExportFailed
    cm = obs.configmaps.get(n.result_configmap(job.name))
    st.st = mirror_export(st.st, job.spec, cm, st.generation, st.now)


def _kubeflow_training(job: JobRef, st: _Status, obs: Observed, d: Decision) -> None:
    if not obs.kubeflow_installed:
        msg = (
            "spec.training.backend is kubeflow but the kubeflow.org/v1 PyTorchJob CRD is not installed: "
            "install the Kubeflow training operator, or set spec.training.backend: native"
        )
        st.cond(BLOCKED, True, "KubeflowNotInstalled", msg)
        st.cond(S.TRAINING_RUNNING, False, "KubeflowNotInstalled", msg)
        return
    st.unset(BLOCKED, "Progressing")
    if obs.pytorchjob is None:
        d.create.append(build_pytorchjob(job, build_training_pods(job), job.queue))
        st.cond(S.TRAINING_RUNNING, True, "PyTorchJobCreated", f"created PyTorchJob {n.pytorchjob(job.name)}")
        return
    if _pytorchjob_stale(job, obs.pytorchjob):
        # A spec edit: replace it (deleted now, created again once gone); it resumes from train/.
        d.delete_pytorchjob = not (obs.pytorchjob.get("metadata") or {}).get("deletionTimestamp")
        st.cond(
            S.TRAINING_RUNNING,
            True,
            "Restarting",
            f"the spec changed: replacing PyTorchJob {n.pytorchjob(job.name)} (it resumes from its checkpoint)",
        )
        return
    conditions = (obs.pytorchjob.get("status") or {}).get("conditions") or []
    last = next((c for c in reversed(conditions) if c.get("status") == "True"), None)
    kind = (last or {}).get("type", "Created")
    msg = f"PyTorchJob {n.pytorchjob(job.name)}: {kind} {(last or {}).get('message', '')}".strip()
    if kind == "Succeeded":
        _training_succeeded(job, st, obs)
    elif kind == "Failed":
        _fail(st, "TrainingFailed", msg)
    else:
        st.cond(S.TRAINING_RUNNING, True, f"PyTorchJob{kind}", msg)


def _pytorchjob_stale(job: JobRef, ptj: dict[str, Any]) -> bool:
    """Made from an older spec (a PyTorchJob of an operator before the hash: left be)."""
    have = ((ptj.get("metadata") or {}).get("annotations") or {}).get(n.ANNOTATION_TEMPLATE_HASH)
    return have is not None and have != group_template_hash(job.spec, "train")


def _finished(job: JobRef, st: _Status, obs: Observed, d: Decision, now: datetime) -> None:
    if st.is_true(S.FAILED):
        d.delete_pods = [
            p["metadata"]["name"]
            for p in obs.pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
    ttl = job.spec.get("ttlSecondsAfterFinished")
    done_at = parse_ts(st.st.get("completionTime"))
    if ttl is not None and done_at is not None and (now - done_at).total_seconds() >= int(ttl):
        d.delete_job = True
