"""E2E fixtures: a Kubernetes API (the kmock-based emulator, or a real cluster), a test-side
kubelet (emulator only), and the real operator process (`python -m denas_operator`).

Real cluster: `pytest -m e2e tests/e2e --real-cluster --kubeconfig ~/.kube/config` (or env
DENAS_E2E_REAL_CLUSTER=1 DENAS_E2E_KUBECONFIG=...). The CRD must be installed and the worker
image (DENAS_E2E_IMAGE) pullable; the operator still runs locally against that cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "denas.io", "v1alpha1", "denasjobs"
FAKE_IMAGE = "denas-test/fake:0"
FAKE_IMAGE_NEXT = "denas-test/fake:1"  # the same stand-in: "the next operator release's default image"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--real-cluster", action="store_true", help="run e2e tests against a real cluster")
    parser.addoption("--kubeconfig", default=None, help="kubeconfig of the real cluster")


def _real(config_: pytest.Config) -> tuple[bool, str | None]:
    real = (
        bool(config_.getoption("--real-cluster", default=False))
        or os.environ.get("DENAS_E2E_REAL_CLUSTER") == "1"
    )
    kubeconfig = config_.getoption("--kubeconfig", default=None) or os.environ.get("DENAS_E2E_KUBECONFIG")
    return real, kubeconfig


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """What the test bodies may use; identical for the emulator and a real cluster."""

    def __init__(self, api: client.ApiClient, kubeconfig: Path, namespace: str, real: bool) -> None:
        self.api = api
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.real = real
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.kubelet: Any = None
        self.emulator: Any = None  # the DenasEmulator (emulator runs only)
        self.lifecycle_image = (
            os.environ.get("DENAS_E2E_IMAGE", "ghcr.io/denas-io/denas-worker:0.1.0") if real else FAKE_IMAGE
        )
        self.engine_image = os.environ.get("DENAS_E2E_IMAGE", "ghcr.io/denas-io/denas-worker:0.1.0")

    # ----- jobs ---------------------------------------------------------------------------
    def job(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DeNASJob",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        # Strict: a real API server rejects unknown fields instead of pruning them silently.
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest, field_validation="Strict"
        )

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == type_), None)

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(every)

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status(name)
            if st.get("phase") == "Failed" and phase != "Failed":
                raise AssertionError(f"{name} failed: {st.get('conditions')}\n{self.debug(name)}")
            return st if st.get("phase") == phase else None

        try:
            return self.wait(f"{name} to be {phase}", check, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self.status(name)}\n{self.debug(name)}") from None

    # ----- children ---------------------------------------------------------------------------
    def selector(self, job: str) -> str:
        return f"denas.io/job-name={job}"

    def pods(self, job: str) -> dict[str, Any]:
        items = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector(job)).items
        return {p.metadata.name: p for p in items}

    def children(self, job: str) -> list[str]:
        sel = self.selector(job)
        names = [f"pod/{p}" for p in self.pods(job)]
        names += [
            f"svc/{s.metadata.name}"
            for s in self.core.list_namespaced_service(self.namespace, label_selector=sel).items
        ]
        names += [
            f"cm/{c.metadata.name}"
            for c in self.core.list_namespaced_config_map(self.namespace, label_selector=sel).items
        ]
        return names

    def kill_pod(self, name: str) -> None:
        """A pod dies abruptly: the test kubelet SIGKILLs it; on a real cluster it is deleted."""
        if self.kubelet is not None:
            assert self.kubelet.kill(self.namespace, name), f"pod {name} has no running process"
        else:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def create_pvc(self, name: str) -> None:
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        }
        try:
            self.core.create_namespaced_persistent_volume_claim(self.namespace, pvc)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def debug(self, job: str) -> str:
        if self.kubelet is None:
            return ""
        return "\n".join(self.kubelet.logs(self.namespace, p) for p in self.pods(job))


class OperatorProcess:
    """The real operator, as a subprocess: start, stop and restart it like a Deployment would."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        logdir: Path,
        extra: tuple[str, ...] = ("--standalone",),
        scope: tuple[str, ...] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = env or {}
        self.extra = extra
        self.scope = scope if scope is not None else ("-n", namespace)  # e.g. ("--all-namespaces",)
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.logdir = logdir
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.readiness_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"operator-{self.liveness_port}-{self.starts}.log", "wb")
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), **self.env)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "denas_operator",
                *self.scope,
                *self.extra,
                "--metrics-port",
                str(self.metrics_port),
                "--liveness",
                f"http://127.0.0.1:{self.liveness_port}/healthz",
                "--readiness",
                f"http://127.0.0.1:{self.readiness_port}/readyz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"operator exited: {self.log()[-3000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"operator not live after 30 s: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2)
            return True
        except OSError:
            return False

    def readiness(self) -> tuple[int, str]:
        """(HTTP status, reason) of the readiness endpoint."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.readiness_port}/readyz", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> str:
        return urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()

    def log(self) -> str:
        path = self.logdir / f"operator-{self.liveness_port}-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    real, kubeconfig = _real(request.config)
    workdir = tmp_path_factory.mktemp("e2e")
    if real:
        if not kubeconfig:
            pytest.fail("--real-cluster needs --kubeconfig or DENAS_E2E_KUBECONFIG")
        namespace = os.environ.get("DENAS_E2E_NAMESPACE", "default")
        api = config.new_client_from_config(kubeconfig)
        yield Cluster(api, Path(kubeconfig), namespace, real=True)
        return
    from kube_doubles.emulator import EmulatorServer
    from kube_doubles.kubelet import Kubelet

    server = EmulatorServer(workdir, namespaces=("default",)).start()
    api = config.new_client_from_config(str(server.kubeconfig))
    c = Cluster(api, server.kubeconfig, "default", real=False)
    kubelet = Kubelet(
        config.new_client_from_config(str(server.kubeconfig)),
        server.kubeconfig,
        workdir / "kubelet",
        image_commands={
            image: [sys.executable, str(Path(__file__).parent / "kube_doubles" / "fake_denas.py")]
            for image in (FAKE_IMAGE, FAKE_IMAGE_NEXT)
        },
        node_labels={"kubernetes.io/os": "linux", "feature.node.kubernetes.io/cpu-cpuid.AMXBF16": "true"},
        extra_env={"DENAS_REPORT_INTERVAL_S": "0.2"},
    ).start()
    c.kubelet = kubelet
    c.emulator = server.emulator
    # DeNASCampaigns are served too (before the operator starts: kopf discovers resources once)
    server.emulator.register(
        "denas.io/v1alpha1/denascampaigns", "DeNASCampaign", True, {"status"}, shortnames={"dnc"}
    )
    yield c
    kubelet.stop()
    server.stop()


@pytest.fixture(scope="session")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster.kubeconfig, cluster.namespace, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture()
def job_name(request: pytest.FixtureRequest) -> str:
    base = request.node.name.replace("test_", "").replace("_", "-")[:30].strip("-")
    return f"{base}-{uuid.uuid4().hex[:4]}"
