"""Thin calls to the Kubernetes API for the operator's side effects (no decisions here).

409 on create and 404 on delete are success. The hot calls (creates, the status patch, the result
read) go through the client's `param_serialize`/`call_api`: its auth, TLS and connection pool
without the generated per-endpoint layer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from . import names as n
from .rejections import RBAC, Rejection, api_message, classify

API_TIMEOUT_S = 20
FAST_LANE_THREADS = 8
CREATE_PATHS = {
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "PyTorchJob": "/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}


class Forbidden(Exception):
    """The operator's ServiceAccount lacks a permission (HTTP 403)."""


class Rejected(Exception):
    """The API server refused a child for a reason other than the operator's RBAC (quota,
    LimitRange, PodSecurity, a webhook: 403; an invalid object: 400/422)."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


class MissingServiceAccount(Exception):
    """A pod was refused because the ServiceAccount it names does not exist (HTTP 403)."""

    def __init__(self, namespace: str, account: str) -> None:
        super().__init__(f"ServiceAccount {account} does not exist in namespace {namespace}")
        self.account = account


def _spec_fields(obj: dict[str, Any]) -> str:
    """The DeNASJob fields a child's template comes from, for the user's fix."""
    group = ((obj.get("metadata") or {}).get("labels") or {}).get("denas.io/group")
    if obj["kind"] == "Pod" and group in ("search", "train"):
        section = "search" if group == "search" else "training"
        return f"pod {obj['metadata']['name']}: spec.{section}.resources, spec.hardware, spec.image"
    if obj["kind"] == "PyTorchJob":
        return "spec.training"
    return ""


class Kube:
    """Thin async wrappers over the official client; 409 on create and 404 on delete are success."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self._kubeflow: tuple[float, bool] | None = None
        # Pods and what they need to start (their ServiceAccount, their spec ConfigMap) skip the
        # queue of the shared executor: during a burst of new jobs, first pods come first.
        self._fast = ThreadPoolExecutor(FAST_LANE_THREADS, thread_name_prefix="denas-api-fast")
        self._pvcs: dict[tuple[str, str], tuple[float, bool]] = {}
        self._queues: dict[tuple[str, str], tuple[float, bool | None]] = {}

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, _request_timeout=API_TIMEOUT_S, **kwargs)

    async def create(self, obj: dict[str, Any], fast: bool = False) -> None:
        """Create a child; 409 (it exists) is success. `fast`: through the lane kept for pods and
        what they need to start, so a burst of other calls does not queue ahead of them."""
        await self.create_in_order([obj], fast=fast)

    async def create_in_order(self, objs: list[dict[str, Any]], fast: bool = False) -> None:
        """Create these one after the other in one trip to a worker thread (a trip back through
        a busy event loop between them would cost more than the calls themselves)."""

        def run() -> None:
            for obj in objs:
                self._create_sync(obj)

        await asyncio.get_running_loop().run_in_executor(self._fast if fast else None, run)

    def _request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> bytes:
        """One API call through the client's own auth, TLS and connection pool, without its
        generated per-endpoint layer (argument validation, model (de)serialisation): about half
        of the client's CPU per call, which is most of the operator's own work in a burst.
        Non-2xx answers raise ApiException, as the generated methods do."""
        method, url, headers, data, post = self.api.param_serialize(
            method=method,
            resource_path=path,
            body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, headers, data, post, _request_timeout=API_TIMEOUT_S)
        payload = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return payload

    def _create_sync(self, obj: dict[str, Any]) -> None:
        ns, kind = obj["metadata"]["namespace"], obj["kind"]
        if kind not in CREATE_PATHS:
            raise ValueError(f"unsupported child kind {kind}")
        try:
            self._request("POST", CREATE_PATHS[kind].format(ns=ns), obj)
        except ApiException as exc:
            if exc.status == 409:
                return
            if exc.status == 404 and kind == "NetworkPolicy":
                return  # an API server without networking.k8s.io/v1: nothing to enforce it either
            if exc.status == 403:
                account = (obj.get("spec") or {}).get("serviceAccountName")
                if kind == "Pod" and account and "service account" in str(exc.body or ""):
                    # The ServiceAccount admission plugin: the account the pod names is missing.
                    raise MissingServiceAccount(ns, account) from exc
            rejection = classify(exc.status, exc.body, kind, ns, _spec_fields(obj))
            if rejection is None:
                raise
            if rejection.reason == RBAC:
                raise Forbidden(
                    f"create {kind.lower()}s in namespace {ns} ({api_message(exc.body)})"
                ) from exc
            raise Rejected(rejection) from exc

    async def replace_configmap(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            await self._call(self.core.patch_namespaced_config_map, meta["name"], meta["namespace"], obj)
        except ApiException as exc:
            if exc.status == 403:
                raise Forbidden(f"patch configmaps in namespace {meta['namespace']}") from exc
            if exc.status != 404:
                raise

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            raw = await asyncio.to_thread(
                self._request, "GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}"
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        cm = json.loads(raw)
        return {
            "metadata": {"name": name, "annotations": (cm.get("metadata") or {}).get("annotations") or {}},
            "data": cm.get("data") or {},
        }

    async def clear_keys(self, namespace: str, name: str, keys: list[str]) -> None:
        try:
            await self._call(
                self.core.patch_namespaced_config_map, name, namespace, {"data": dict.fromkeys(keys)}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a pod; with `uid`, only that incarnation (never a namesake created since)."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)) if uid else None
        try:
            await self._call(self.core.delete_namespaced_pod, name, namespace, body=options)
        except ApiException as exc:
            if exc.status == 403:
                raise Forbidden(f"delete pods in namespace {namespace}") from exc
            if exc.status not in (404, 409):
                raise

    async def delete_pytorchjob(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object,
                "kubeflow.org",
                "v1",
                namespace,
                "pytorchjobs",
                name,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def get_pytorchjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(
                self.custom.get_namespaced_custom_object, "kubeflow.org", "v1", namespace, "pytorchjobs", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def kubeflow_installed(self) -> bool:
        now = time.monotonic()
        if self._kubeflow and now - self._kubeflow[0] < 10:
            return self._kubeflow[1]
        try:
            ext = client.ApiextensionsV1Api(self.api)
            await self._call(ext.read_custom_resource_definition, "pytorchjobs.kubeflow.org")
            found = True
        except ApiException as exc:
            if exc.status not in (404, 403):
                raise
            found = False
        self._kubeflow = (now, found)
        return found

    async def pvc_missing(self, namespace: str, claim: str) -> bool:
        now = time.monotonic()
        cached = self._pvcs.get((namespace, claim))
        if cached and now - cached[0] < 10:
            return cached[1]
        try:
            await self._call(self.core.read_namespaced_persistent_volume_claim, claim, namespace)
            missing = False
        except ApiException as exc:
            if exc.status != 404:
                raise
            missing = True
        self._pvcs[(namespace, claim)] = (now, missing)
        return missing

    async def localqueue_missing(self, namespace: str, queue: str) -> bool | None:
        """Whether Kueue's LocalQueue `queue` is absent (404, also when Kueue is not installed);
        None when the operator may not look (403) or the API failed. Cached 10 s."""
        now = time.monotonic()
        cached = self._queues.get((namespace, queue))
        if cached and now - cached[0] < 10:
            return cached[1]
        try:
            await asyncio.to_thread(
                self._request,
                "GET",
                f"/apis/kueue.x-k8s.io/v1beta1/namespaces/{namespace}/localqueues/{queue}",
            )
            missing: bool | None = False
        except ApiException as exc:
            missing = True if exc.status == 404 else None
        self._queues[(namespace, queue)] = (now, missing)
        return missing

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self._request,
            "PATCH",
            f"/apis/{n.GROUP}/{n.VERSION}/namespaces/{namespace}/{n.PLURAL}/{name}/status",
            {"status": patch},
            "application/merge-patch+json",
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object, n.GROUP, n.VERSION, namespace, n.PLURAL, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
