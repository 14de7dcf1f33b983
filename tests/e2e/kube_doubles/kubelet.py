"""A test-side kubelet: runs the pods it finds in an API server as local processes.

It polls the pods of its namespaces, and for each new pod: checks "scheduling" (nodeSelector
against its node labels) and "image pulls" (images listed as unpullable), prepares its volumes
as directories, runs init containers then the main container with the pod's env, and reports
Pending -> Running -> Succeeded/Failed with containerStatuses into the pod's status. Deleted
pods have their processes killed.

Pods are processes on one machine, so in-pod paths and addresses are rewritten:
- each volume mountPath becomes a directory (emptyDir: per pod; PVC: per claim, shared; ConfigMap:
  files written from its data), in args and env values;
- service DNS names (`*.svc`) become 127.0.0.1, and each group's rendezvous port becomes a free
  local port (per master pod incarnation, so restarted groups never meet stale listeners).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

PORT_VARS = ("MASTER_PORT", "PET_MASTER_PORT")
ADDR_VARS = ("MASTER_ADDR", "PET_MASTER_ADDR")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_status(name: str, image: str, state: dict[str, Any], ready: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imageID": f"local://{image}",
        "ready": ready,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningPod:
    namespace: str
    name: str
    uid: str
    workdir: Path
    process: subprocess.Popen | None = None
    killed: bool = False
    done: bool = False
    thread: threading.Thread | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Kubelet:
    """Run pods as processes. `image_commands` maps an image to a command prefix that replaces the
    container's executable (tests use it for fast stand-ins of `denas search/train`)."""

    def __init__(
        self,
        api: client.ApiClient,
        kubeconfig: Path,
        workdir: Path,
        namespaces: tuple[str, ...] = ("default",),
        image_commands: dict[str, list[str]] | None = None,
        node_labels: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        unpullable: tuple[str, ...] = ("does-not-exist",),
        poll_s: float = 0.25,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(workdir)
        self.namespaces = namespaces
        self.image_commands = image_commands or {}
        self.node_labels = node_labels or {"kubernetes.io/os": "linux"}
        self.unpullable = unpullable
        self.poll_s = poll_s
        self.extra_env = extra_env or {}
        self.pods: dict[str, RunningPod] = {}  # by uid
        self._gated: set[str] = set()  # uids reported SchedulingGated
        self.ports: dict[tuple, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="test-kubelet", daemon=True)
        self._lock = threading.Lock()

    # ----- public ---------------------------------------------------------------------------

    def start(self) -> Kubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for pod in list(self.pods.values()):
            self._kill(pod)

    def kill(self, namespace: str, name: str, wait_s: float = 10.0) -> bool:
        """SIGKILL a pod's process (as an OOM kill or a node crash would): the pod fails with 137.
        A pod reported Running may not have spawned its process yet (the status goes out first):
        wait up to `wait_s` for it."""
        deadline = time.monotonic() + wait_s
        while True:
            pods = [p for p in list(self.pods.values()) if p.namespace == namespace and p.name == name]
            live = [p for p in pods if not p.done]
            for pod in live:
                if pod.process and pod.process.poll() is None:
                    try:
                        os.killpg(pod.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    return True
            if not live or time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def logs(self, namespace: str, name: str) -> str:
        texts = []
        for pod in self.pods.values():
            if pod.namespace == namespace and pod.name == name:
                for f in sorted(pod.workdir.glob("*.log")):
                    texts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}")
        return "\n".join(texts)

    def host_ports(self, namespace: str, name: str) -> dict[str, int]:
        """The local port each named container port of a running pod was given (e.g. "metrics")."""
        for pod in self.pods.values():
            if pod.namespace == namespace and pod.name == name and not pod.done:
                return dict(pod.extra.get("ports") or {})
        return {}

    # ----- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # the API may blink during operator restarts in tests
                log.debug("kubelet sync failed: %s", exc)
            self._stop.wait(self.poll_s)

    def _sync(self) -> None:
        seen: set[str] = set()
        listed: list[Any] = []
        for ns in self.namespaces:
            listed += self.core.list_namespaced_pod(ns, _request_timeout=10).items
        for pod in listed:
            uid = pod.metadata.uid
            seen.add(uid)
            if pod.metadata.deletion_timestamp:
                continue
            if uid not in self.pods and (pod.status is None or pod.status.phase in (None, "Pending")):
                if pod.spec.scheduling_gates:  # the scheduler leaves gated pods alone (e.g. Kueue's)
                    self._report_gated(pod)
                    continue
                self._admit(pod, listed)
        for uid, running in list(self.pods.items()):
            if uid not in seen and not running.done:
                self._kill(running)
                running.done = True

    def _patch_status(self, pod: RunningPod, status: dict[str, Any]) -> None:
        if pod.killed:
            return  # deleted: a namesake may exist by now, and it is not ours to report on
        body = {"metadata": {"uid": pod.uid}, "status": status}  # uid: a precondition
        try:
            self.core.patch_namespaced_pod_status(pod.name, pod.namespace, body, _request_timeout=10)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("kubelet could not patch %s: %s", pod.name, exc.reason)

    def _report_gated(self, pod: Any) -> None:
        """What kube-scheduler reports for a pod with scheduling gates, once per pod."""
        meta = pod.metadata
        if meta.uid in self._gated:
            return
        self._gated.add(meta.uid)
        cond = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
        }
        self._patch_status(
            RunningPod(meta.namespace, meta.name, meta.uid, self.workdir), {"conditions": [cond]}
        )

    def _admit(self, pod: Any, listed: list[Any]) -> None:
        meta, spec = pod.metadata, pod.spec
        running = RunningPod(
            meta.namespace, meta.name, meta.uid, self.workdir / "pods" / f"{meta.name}-{meta.uid[:8]}"
        )
        self.pods[meta.uid] = running
        selector = spec.node_selector or {}
        unmatched = {k: v for k, v in selector.items() if self.node_labels.get(k) != v}
        if unmatched:
            message = (
                f"0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector ({unmatched})."
            )
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
            self._patch_status(running, {"phase": "Pending", "conditions": [cond]})
            running.done = True
            return
        image = spec.containers[0].image
        if any(bad in image for bad in self.unpullable):
            waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
            status = {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [container_status(spec.containers[0].name, image, {"waiting": waiting})],
            }
            self._patch_status(running, status)
            running.done = True
            return
        try:
            mounts = self._prepare_volumes(running, pod)
        except _ConfigError as exc:
            waiting = {"reason": "CreateContainerConfigError", "message": str(exc)}
            status = {
                "phase": "Pending",
                "containerStatuses": [container_status(spec.containers[0].name, image, {"waiting": waiting})],
            }
            self._patch_status(running, status)
            running.done = True
            return
        running.thread = threading.Thread(target=self._run, args=(running, pod, mounts, listed), daemon=True)
        running.thread.start()

    # ----- volumes, env, command rewriting ---------------------------------------------------

    def _prepare_volumes(self, running: RunningPod, pod: Any) -> dict[str, Path]:
        running.workdir.mkdir(parents=True, exist_ok=True)
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts: dict[str, Path] = {}
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            for mount in container.volume_mounts or []:
                volume = volumes[mount.name]
                if volume.persistent_volume_claim:
                    base = (
                        self.workdir
                        / "pvc"
                        / pod.metadata.namespace
                        / volume.persistent_volume_claim.claim_name
                    )
                    path = base / (mount.sub_path or "")
                elif volume.config_map:
                    path = running.workdir / f"vol-{mount.name}"
                    self._write_configmap(pod.metadata.namespace, volume.config_map, path)
                else:
                    path = running.workdir / f"vol-{mount.name}"
                path.mkdir(parents=True, exist_ok=True)
                mounts[mount.mount_path] = path
        return mounts

    def _write_configmap(self, namespace: str, source: Any, path: Path) -> None:
        try:
            cm = self.core.read_namespaced_config_map(source.name, namespace, _request_timeout=10)
        except ApiException as exc:
            raise _ConfigError(f'configmap "{source.name}" not found') from exc
        data = cm.data or {}
        path.mkdir(parents=True, exist_ok=True)
        items = source.items or [client.V1KeyToPath(key=k, path=k) for k in data]
        for item in items:
            if item.key not in data:
                raise _ConfigError(f"couldn't find key {item.key} in ConfigMap {namespace}/{source.name}")
            (path / item.path).write_text(data[item.key])

    def _rewrite(self, value: str, mounts: dict[str, Path], ports: dict[str, str]) -> str:
        if "=" in value and value.startswith("--"):
            flag, _, rest = value.partition("=")
            return f"{flag}={self._rewrite(rest, mounts, ports)}"
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(mounts[mount_path]) + value[len(mount_path.rstrip("/")) :]
        if re.fullmatch(r"[a-z0-9.-]+\.svc(\.cluster\.local)?", value):
            return "127.0.0.1"
        return ports.get(value, value)

    def _port_map(self, namespace: str, env: dict[str, str], listed: list[Any]) -> dict[str, str]:
        addr = env.get("MASTER_ADDR")
        port = env.get("MASTER_PORT")
        if not addr or not port:
            return {}
        master_pod = addr.split(".")[0]
        master_uid = next(
            (
                p.metadata.uid
                for p in listed
                if p.metadata.name == master_pod and p.metadata.namespace == namespace
            ),
            "",
        )
        key = (namespace, addr, port, master_uid)
        with self._lock:
            if key not in self.ports:
                self.ports[key] = free_port()
        return {port: str(self.ports[key])}

    def _command(self, container: Any) -> list[str]:
        command = [*(container.command or []), *(container.args or [])]
        prefix = self.image_commands.get(container.image)
        if prefix is not None:
            return [*prefix, *command]
        if command and command[0] == "python":
            command[0] = sys.executable
        return command

    # ----- running ---------------------------------------------------------------------------

    def _run(self, running: RunningPod, pod: Any, mounts: dict[str, Path], listed: list[Any]) -> None:
        main = pod.spec.containers[0]
        start = _now()
        self._patch_status(
            running,
            {
                "phase": "Running",
                "startTime": start,
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": [
                    container_status(main.name, main.image, {"running": {"startedAt": start}}, True)
                ],
            },
        )
        code = 0
        for container in [*(pod.spec.init_containers or []), main]:
            code = self._exec(running, pod, container, mounts, listed)
            if code != 0 or running.killed:
                break
        running.done = True
        exit_code = 128 - code if code < 0 else code
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else ("OOMKilled" if exit_code == 137 else "Error"),
            "startedAt": start,
            "finishedAt": _now(),
        }
        if exit_code:
            tail = (
                (running.workdir / f"{main.name}.log").read_text(errors="replace")[-400:]
                if (running.workdir / f"{main.name}.log").exists()
                else ""
            )
            terminated["message"] = tail
        self._patch_status(
            running,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False"},
                ],
                "containerStatuses": [container_status(main.name, main.image, {"terminated": terminated})],
            },
        )

    def _exec(
        self, running: RunningPod, pod: Any, container: Any, mounts: dict[str, Path], listed: list[Any]
    ) -> int:
        raw_env = {e.name: e.value or _field_ref(pod, e) for e in container.env or []}
        ports = self._port_map(pod.metadata.namespace, raw_env, listed)
        # Every pod shares this host: a container's own listening ports (e.g. "metrics") get free
        # local ones, recorded so tests can scrape them (`host_ports`).
        for port in container.ports or []:
            if port.name == "metrics" and str(port.container_port) not in ports:
                host = free_port()
                ports[str(port.container_port)] = str(host)
                running.extra.setdefault("ports", {})[port.name] = host
        env = {k: self._rewrite(v, mounts, ports) for k, v in raw_env.items()}
        venv_bin = str(Path(sys.executable).parent)
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST",)},
            **env,
            **self.extra_env,
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(self.kubeconfig),
        }
        command = [self._rewrite(arg, mounts, ports) for arg in self._command(container)]
        with open(running.workdir / f"{container.name}.log", "ab") as out:
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
            if running.killed:
                return -signal.SIGKILL
            running.process = subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=running.workdir,
                start_new_session=True,
            )
            return running.process.wait()

    def _kill(self, running: RunningPod) -> None:
        running.killed = True
        proc = running.process
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun's children go too
            except ProcessLookupError:
                pass


class _ConfigError(Exception):
    pass


def _field_ref(pod: Any, var: Any) -> str:
    """The downward API's spec.nodeName (this host's node name); other references resolve to ""."""
    ref = getattr(getattr(var, "value_from", None), "field_ref", None)
    if ref is not None and ref.field_path == "spec.nodeName":
        return pod.spec.node_name or "fake-node"
    return ""
