"""Pure builders: a DeNASJob's spec -> its desired search and training Pods.

No Kubernetes access here: every function maps plain dicts to plain dicts, so the whole pod
contract (commands, env, volumes, scheduling, PodSecurity "restricted") is unit-tested offline.
The torchrun env contract itself lives in `denas.train.envvars`, shared with `denas run`.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from typing import Any

from denas.fingerprints import search_fingerprint, stable_hash
from denas.job import openapi_schema
from denas.train.envvars import master_address, torchrun_command, torchrun_env

from . import names as n
from .scheduling import decorate_pod, queue_name

# Workers must not race the master's DNS record: an init container waits until it resolves.
WAIT_FOR_MASTER = """\
import os, socket, sys, time
addr, deadline = os.environ["MASTER_ADDR"], time.time() + 600
while True:
    try:
        socket.getaddrinfo(addr, None)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit(f"master {addr} did not resolve within 600 s: is pod 0 of the group scheduled?")
        time.sleep(2)
"""

DEFAULT_PINNED_MEMORY = "2Gi"
# Scraped by the PodMonitor (deploy/components/monitoring, chart metrics.podMonitor) by name.
METRICS_CONTAINER_PORT = {"name": n.METRICS_PORT_NAME, "containerPort": n.METRICS_PORT}


@dataclass(frozen=True)
class JobRef:
    """What the builders need to know about a job: identity plus the defaulted spec."""

    name: str
    namespace: str
    uid: str
    spec: dict[str, Any]
    queue: str = ""  # Kueue LocalQueue (label kueue.x-k8s.io/queue-name), "" when not queued

    @classmethod
    def from_body(cls, body: dict[str, Any], spec: dict[str, Any]) -> JobRef:
        meta = body.get("metadata", {})
        queue = queue_name(meta.get("labels"), spec)
        return cls(meta["name"], meta.get("namespace") or "default", meta.get("uid", ""), spec, queue)


@functools.cache
def crd_default_image() -> str:
    """spec.image's default in the CRD: the API server fills it in, so it means "not set"."""
    return openapi_schema()["properties"]["spec"]["properties"]["image"]["default"]


def worker_image(spec: dict[str, Any]) -> str:
    """spec.image, unless it is the CRD default: then the operator's DENAS_DEFAULT_WORKER_IMAGE
    (the chart's `worker.image`, e.g. a mirror registry) when set."""
    image = spec.get("image") or crd_default_image()
    if image == crd_default_image():
        return os.environ.get("DENAS_DEFAULT_WORKER_IMAGE") or image
    return image


# Spec fields that never shape a group's pods: editing them (or a CRD upgrade defaulting them)
# must not replace running pods. podTemplate metadata and imagePullSecrets are added after the
# hash (scheduling.decorate_pod): they change nothing a running process sees.
_NOT_IN_PODS = {
    "": ("suspend", "ttlSecondsAfterFinished", "podTemplate", "imagePullSecrets"),
    "search": ("backoffLimit",),
    "training": ("backoffLimit", "activeDeadlineSeconds"),
}


def _pruned(value: Any) -> Any:
    """Empty objects/lists and nulls removed: a newly defaulted `{}` changes no hash."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def group_template_hash(spec: dict[str, Any], group: str) -> str:
    """What decides whether a group's running pods are stale: the spec fields its pods come from.
    Deliberately not the pods themselves, which also carry the operator's own defaults
    (DENAS_DEFAULT_WORKER_IMAGE, the pods' uid) and whatever a new operator version adds:
    upgrading or reconfiguring the operator restarts no running job; groups created afterwards
    (new jobs, restarts) get the new defaults."""
    relevant = {k: v for k, v in spec.items() if k not in _NOT_IN_PODS[""]}
    for section in ("search", "training"):
        if isinstance(relevant.get(section), dict):
            relevant[section] = {k: v for k, v in relevant[section].items() if k not in _NOT_IN_PODS[section]}
    if group == "search":
        relevant.pop("training", None)  # search pods do not depend on it
    return stable_hash(_pruned(relevant))


def search_dir(job: JobRef) -> str:
    return f"{n.state_dir(job.name, job.spec)}/search-{search_fingerprint(job.spec)}"


def train_dir(job: JobRef) -> str:
    return f"{n.state_dir(job.name, job.spec)}/train"


def owner_reference(job: JobRef) -> dict[str, Any]:
    return {
        "apiVersion": n.API_VERSION,
        "kind": n.KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(job: JobRef, name: str, role: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": job.namespace,
        "labels": {n.LABEL_JOB: job.name, n.LABEL_ROLE: role, **(labels or {})},
        "ownerReferences": [owner_reference(job)],
    }


def container_resources(user: dict[str, Any] | None, pinned_cpus: int) -> dict[str, Any]:
    """The user's ResourceRequirements; in pinned mode, Guaranteed QoS with whole CPUs."""
    resources = copy.deepcopy(user or {})
    if pinned_cpus <= 0:
        return resources
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    memory = limits.get("memory") or requests.get("memory") or DEFAULT_PINNED_MEMORY
    # Guaranteed QoS needs requests == limits for every resource, CPU as an integer.
    merged = {**requests, **limits, "cpu": str(pinned_cpus), "memory": memory}
    return {"requests": dict(merged), "limits": dict(merged)}


DEFAULT_WORKER_UID = 1000  # the worker image's USER (images/Dockerfile.worker)


def worker_uid() -> int | None:
    """The pods' uid/gid/fsGroup: the operator's DENAS_WORKER_RUN_AS_USER (chart value
    `worker.runAsUser`), 1000 (the worker image's user) when unset; set but empty: none at all,
    the image's USER runs, or the platform assigns one (OpenShift's restricted SCC)."""
    value = os.environ.get("DENAS_WORKER_RUN_AS_USER")
    if value is None:
        return DEFAULT_WORKER_UID
    return int(value) if value.strip() else None


def restricted_container_security() -> dict[str, Any]:
    uid = worker_uid()
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        **({"runAsUser": uid} if uid is not None else {}),
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security() -> dict[str, Any]:
    uid = worker_uid()
    ids = {"runAsUser": uid, "runAsGroup": uid, "fsGroup": uid} if uid is not None else {}
    return {"runAsNonRoot": True, **ids, "seccompProfile": {"type": "RuntimeDefault"}}


def env_list(env: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in env.items()]


def read_only_root_env() -> dict[str, str]:
    """The root filesystem is read-only: every cache goes to the /tmp emptyDir."""
    return {"HOME": n.TMP_DIR, "XDG_CACHE_HOME": f"{n.TMP_DIR}/.cache", "MPLCONFIGDIR": f"{n.TMP_DIR}/.mpl"}


def placement(hardware: dict[str, Any]) -> dict[str, Any]:
    """A pod spec's nodeSelector, tolerations and affinity from a spec's ``hardware`` (copies)."""
    out: dict[str, Any] = {}
    if hardware.get("nodeSelector"):
        out["nodeSelector"] = dict(hardware["nodeSelector"])
    for key in ("tolerations", "affinity"):
        if hardware.get(key):
            out[key] = copy.deepcopy(hardware[key])
    return out


def common_env(job: JobRef, role: str, omp_threads: int) -> dict[str, str]:
    env = {
        "DENAS_JOB_NAME": job.name,
        "DENAS_NAMESPACE": job.namespace,
        "DENAS_RESULT_CONFIGMAP": n.result_configmap(job.name),
        "DENAS_ROLE": role,
        "DENAS_TOP_K": str((job.spec.get("search") or {}).get("topK", 5)),
        "PYTHONUNBUFFERED": "1",
        **read_only_root_env(),
    }
    if omp_threads > 0:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    return env


def _volumes(job: JobRef, with_result: bool, with_shm: bool) -> tuple[list[dict], list[dict]]:
    storage = job.spec.get("storage") or {}
    # The whole claim at the state root (as the CRD documents), no subPath: data sets and tokenizers
    # kept beside the jobs' directories (spec.training.dataset.path) must be visible too. The job's
    # own state still goes to /var/lib/denas/<subPath or job>/ (search_dir, train_dir).
    state_mount = {"name": "state", "mountPath": n.STATE_ROOT}
    if storage.get("claimName"):
        state = {"name": "state", "persistentVolumeClaim": {"claimName": storage["claimName"]}}
    else:
        state = {"name": "state", "emptyDir": {}}
    volumes = [
        {"name": "job", "configMap": {"name": n.spec_configmap(job.name)}},
        state,
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [
        {"name": "job", "mountPath": n.SPEC_DIR, "readOnly": True},
        state_mount,
        {"name": "tmp", "mountPath": n.TMP_DIR},
    ]
    if with_result:
        volumes.append(
            {
                "name": "result",
                "configMap": {
                    "name": n.result_configmap(job.name),
                    "items": [{"key": n.RESULT_KEY, "path": n.RESULT_KEY}],
                },
            }
        )
        mounts.append({"name": "result", "mountPath": n.RESULT_DIR, "readOnly": True})
    if with_shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": n.SHM_DIR})
    return volumes, mounts


def _pod(
    job: JobRef,
    name: str,
    role: str,
    group: str,
    rank: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    init_containers: list[dict[str, Any]] | None = None,
    subdomain: str | None = None,
) -> dict[str, Any]:
    hardware = job.spec.get("hardware") or {}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # the operator restarts whole groups, never single ranks
        "hostname": name,
        "subdomain": subdomain,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(),
        "containers": [container],
        "volumes": volumes,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    # Without spec.serviceAccountName the operator's per-job account (objects.build_worker_rbac),
    # which may get/patch only <job>-result: the namespace's `default` one may not.
    spec["serviceAccountName"] = job.spec.get("serviceAccountName") or n.worker_account(job.name)
    spec.update(placement(hardware))
    spec = {k: v for k, v in spec.items() if v is not None}
    metadata = child_metadata(job, name, role, {"denas.io/group": group, n.LABEL_RANK: str(rank)})
    metadata["annotations"] = {n.ANNOTATION_TEMPLATE_HASH: group_template_hash(job.spec, group)}
    # After the hash: template metadata and pull secrets change nothing a running process sees.
    return decorate_pod({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}, job.spec)


def _container(
    job: JobRef, command: list[str], env: dict[str, str], mounts, resources, ports
) -> dict[str, Any]:
    container = {
        "name": "denas",
        "image": worker_image(job.spec),
        "imagePullPolicy": job.spec.get("imagePullPolicy", "IfNotPresent"),
        "command": command,
        # the node a pod runs on names itself in hardware errors and in the model card's latency
        "env": [
            *env_list(env),
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "volumeMounts": mounts,
        "securityContext": restricted_container_security(),
        "ports": ports,
    }
    if resources:
        container["resources"] = resources
    return container


def build_search_pods(job: JobRef) -> list[dict[str, Any]]:
    """`search.replicas` pods sharing the scoring over gloo; rank 0 (`<job>-search-0`) coordinates."""
    search = job.spec.get("search") or {}
    replicas = int(search.get("replicas", 1))
    pinned = int((job.spec.get("hardware") or {}).get("pinnedCpus", 0))
    resources = container_resources(search.get("resources"), pinned)
    volumes, mounts = _volumes(job, with_result=False, with_shm=False)
    service = n.search_service(job.name)
    master = f"{n.search_pod(job.name, 0)}.{service}.{job.namespace}.svc"
    command = [
        "denas",
        "search",
        f"{n.SPEC_DIR}/{n.SPEC_KEY}",
        "--out",
        search_dir(job),
        "--metrics-port",
        str(n.METRICS_PORT),
        "--resume",
    ]
    storage = job.spec.get("storage") or {}
    if storage.get("scoreStore") and storage.get("claimName"):  # a campaign's shared scores
        command += ["--score-store", f"{n.STATE_ROOT}/{storage['scoreStore']}"]
    pods = []
    for rank in range(replicas):
        env = common_env(job, "search", pinned)
        env.update(
            {
                "RANK": str(rank),
                "WORLD_SIZE": str(replicas),
                "MASTER_ADDR": master,
                "MASTER_PORT": str(n.SEARCH_PORT),
            }
        )
        ports = [{"name": "gloo", "containerPort": n.SEARCH_PORT}, METRICS_CONTAINER_PORT]
        container = _container(job, command, env, mounts, resources, ports)
        pods.append(
            _pod(
                job,
                n.search_pod(job.name, rank),
                n.ROLE_SEARCH,
                "search",
                rank,
                container,
                volumes,
                None,
                service,
            )
        )
    return pods


def training_command(job: JobRef, node_rank: int, *, for_kubeflow: bool = False) -> list[str]:
    training = job.spec.get("training") or {}
    train_args = [
        f"{n.SPEC_DIR}/{n.SPEC_KEY}",
        "--structure",
        f"{n.RESULT_DIR}/{n.RESULT_KEY}",
        "--out",
        train_dir(job),
        "--metrics-port",  # served by global rank 0 only, i.e. in the master pod
        str(n.METRICS_PORT),
    ]
    if for_kubeflow:  # the PyTorchJob controller provides the PET_* env torchrun reads
        return ["torchrun", "-m", "denas", "train", *train_args]
    return torchrun_command(
        job.name,
        n.train_service(job.name),
        node_rank,
        int(training.get("replicas", 1)),
        int(training.get("nprocPerNode", 1)),
        n.TRAIN_PORT,
        master_addr=master_address(job.name, n.train_service(job.name), job.namespace),
        train_args=train_args,
        python="python",
    )


def build_training_pods(job: JobRef) -> list[dict[str, Any]]:
    """PyTorchJob-style pods: `<job>-train-master-0` plus `<job>-train-worker-<i>`."""
    training = job.spec.get("training") or {}
    nnodes = int(training.get("replicas", 1))
    nproc = int(training.get("nprocPerNode", 1))
    pinned = int((job.spec.get("hardware") or {}).get("pinnedCpus", 0))
    resources = container_resources(training.get("resources"), pinned)
    volumes, mounts = _volumes(job, with_result=True, with_shm=True)
    service = n.train_service(job.name)
    master = master_address(job.name, service, job.namespace)
    pods = []
    for node_rank in range(nnodes):
        env = common_env(job, "train", max(1, pinned // nproc) if pinned else 0)
        env.update(
            torchrun_env(job.name, service, node_rank, nnodes, nproc, n.TRAIN_PORT, master_addr=master)
        )
        role = n.ROLE_TRAIN_MASTER if node_rank == 0 else n.ROLE_TRAIN_WORKER
        ports = [{"name": "c10d", "containerPort": n.TRAIN_PORT}]
        if node_rank == 0:  # workers serve no metrics: a declared port would be a down target
            ports.append(METRICS_CONTAINER_PORT)
        container = _container(job, training_command(job, node_rank), env, mounts, resources, ports)
        init = None
        if node_rank > 0:
            init = [
                {
                    "name": "wait-for-master",
                    "image": container["image"],
                    "imagePullPolicy": container["imagePullPolicy"],
                    "command": ["python", "-c", WAIT_FOR_MASTER],
                    "env": env_list({"MASTER_ADDR": master}),
                    "securityContext": restricted_container_security(),
                    **({"resources": resources} if resources else {}),
                }
            ]
        pod_name = n.train_pod(job.name, node_rank)
        pods.append(_pod(job, pod_name, role, "train", node_rank, container, volumes, init, service))
    return pods
