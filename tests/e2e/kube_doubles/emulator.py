"""A Kubernetes API emulator for the operator's e2e tests and benchmarks (kmock, test extra).

kmock's `KubernetesEmulator` stores objects and streams watch events; this subclass adds the
API-server semantics the operator relies on:
- uid, creationTimestamp, resourceVersion, generation (bumped on spec changes), generateName;
- status subresources: `/status` writes only status, main-resource writes never touch it;
- label selectors on list and watch;
- garbage collection of objects whose owners (ownerReferences) are gone;
- bounded object history (kmock keeps every version otherwise);
- optionally, pods that succeed at once (for scale benchmarks: no processes at all).
No admission, no schema validation: exactly why the operator validates specs itself.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import dicts as kdicts
from kmock._internal import enums, parsing

_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    """kmock reads `/api/v1/namespaces[/NAME]` as a namespace prefix; it is the namespaces resource."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (3, 4):
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _parse_path(path)


parsing.parse_path = _parse_path_with_namespaces

CORE = {
    "namespaces": ("Namespace", False, set()),
    "pods": ("Pod", True, {"status", "log"}),
    "services": ("Service", True, {"status"}),
    "configmaps": ("ConfigMap", True, set()),
    "events": ("Event", True, set()),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True, {"status"}),
    "serviceaccounts": ("ServiceAccount", True, set()),
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


# resource.Quantity's grammar (k8s.io/apimachinery), enough to refuse what the API server refuses.
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def selector_matches(labels: dict[str, str], selector: str) -> bool:
    """Kubernetes label selector: a=b, a==b, a!=b, a, !a, a in (x,y), a notin (x,y)."""
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            ok = labels.get(key) in values if op == "in" else labels.get(key) not in values
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            ok = labels.get(key) == value
        elif term.startswith("!"):
            ok = term[1:].strip() not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


@attrs.define(kw_only=True)
class DenasEmulator(kmock.KubernetesEmulator):
    instant_pods: bool = False
    _rv: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    _status_subresources: set = attrs.field(factory=set, init=False)
    # (plural, namespace) pairs whose creates answer 403, as a missing RBAC rule would (tests).
    forbidden: set = attrs.field(factory=set, init=False)
    # (plural, namespace) -> (HTTP status, reason, message): creates answer this, as ResourceQuota,
    # LimitRange, PodSecurity admission or a webhook would (tests; the message is the server's own).
    rejections: dict = attrs.field(factory=dict, init=False)
    # (plural, namespace) -> (HTTP status, reason, message) answered to deletes (tests).
    delete_rejections: dict = attrs.field(factory=dict, init=False)
    # (plural, namespace, name) -> time.monotonic() of the first create: benchmarks read it.
    created_at: dict = attrs.field(factory=dict, init=False)
    # (action, plural, subresource) -> requests served: benchmarks report where the calls go.
    request_counts: collections.Counter = attrs.field(factory=collections.Counter, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for plural, (kind, namespaced, subresources) in CORE.items():
            self.register(f"v1/{plural}", kind, namespaced, subresources)
        self.register(
            "apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, {"status"}
        )
        self.register("denas.io/v1alpha1/denasjobs", "DeNASJob", True, {"status"}, shortnames={"dnj"})
        self.register("rbac.authorization.k8s.io/v1/roles", "Role", True, set())
        self.register("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding", True, set())
        self.register("kopf.dev/v1/kopfpeerings", "KopfPeering", True, set())
        self.register("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True, set())
        self.register("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", False, set())

    def register(self, key: str, kind: str, namespaced: bool, subresources: set, **extra: Any) -> None:
        self.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources, **extra
        )
        if "status" in subresources:
            self._status_subresources.add(kmock.resource(key))

    # ----- request pre-processing: metadata the API server owns -----------------------------

    def _admit_service_account(self, request: kmock.Request) -> None:
        """The ServiceAccount admission plugin: a pod naming a missing account is refused (every
        real namespace has `default`, which the emulator does not store)."""
        data = request.data if isinstance(request.data, dict) else {}
        account = (data.get("spec") or {}).get("serviceAccountName") or "default"
        ns = request.namespace or (data.get("metadata") or {}).get("namespace")
        found = self._objects._objects.get((kmock.resource("v1/serviceaccounts"), ns, account))
        if account != "default" and (found is None or found.deleted):
            name = (data.get("metadata") or {}).get("name")
            raise kmock.KubernetesError(
                status=403,
                reason="Forbidden",
                message=f'pods "{name}" is forbidden: error looking up service account {ns}/{account}: '
                f'serviceaccount "{account}" not found',
            )

    def _validate_pod_quantities(self, request: kmock.Request) -> None:
        """Pod validation of resource quantities: the API server answers 422 Invalid naming the
        field (the CRD's free-form `resources` let any string through)."""
        data = request.data if isinstance(request.data, dict) else {}
        spec = data.get("spec") or {}
        name = (data.get("metadata") or {}).get("name")
        for kind in ("initContainers", "containers"):
            for i, container in enumerate(spec.get(kind) or []):
                for section in ("limits", "requests"):
                    for resource, value in ((container.get("resources") or {}).get(section) or {}).items():
                        if not QUANTITY.match(str(value)):
                            raise kmock.KubernetesError(
                                status=422,
                                reason="Invalid",
                                message=f'Pod "{name}" is invalid: spec.{kind}[{i}].resources.{section}[{resource}]: '
                                f'Invalid value: "{value}": must be a valid quantity',
                            )

    def _prepare(self, request: kmock.Request) -> None:
        data = request.data
        if isinstance(data, list) and request.action == enums.action.UPDATE:
            self._prepare_json_patch(request)
            return
        if not isinstance(data, dict):
            return
        meta = data.setdefault("metadata", {})
        if request.action == enums.action.CREATE:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            meta["resourceVersion"] = str(next(self._rv))
            self.created_at.setdefault(
                (request.resource.plural, meta.get("namespace"), meta.get("name")), time.monotonic()
            )
            if request.resource in self._status_subresources:
                data.pop("status", None)
            if request.resource == kmock.resource("v1/pods"):
                data["status"] = {"phase": "Pending"}
            return
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = self.objects[key].raw
        # A uid in the body is a precondition: it never applies to a namesake re-created since.
        expected_uid = (data.get("preconditions") or {}).get("uid") or meta.get("uid")
        if expected_uid and expected_uid != current.get("metadata", {}).get("uid"):
            raise kmock.KubernetesError(
                status=409,
                reason="Conflict",
                message=f"Precondition failed: UID in precondition: {expected_uid}",
            )
        if request.action == enums.action.DELETE:
            request.data.clear()
            return
        if request.subresource == "status":
            for field in list(data):
                if field not in ("status", "metadata"):
                    data.pop(field)
            data["metadata"] = {}
        elif request.resource in self._status_subresources:
            data.pop("status", None)
        # Clients must not set these; the emulator owns them.
        for field in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            meta = data.setdefault("metadata", {})
            meta.pop(field, None)
        if "spec" in data:
            merged = kdicts.patch_dict(json.loads(json.dumps(current)), {"spec": data["spec"]})
            if merged.get("spec") != current.get("spec"):
                data["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        data["metadata"]["resourceVersion"] = str(next(self._rv))

    def _prepare_json_patch(self, request: kmock.Request) -> None:
        """JSON patches (kopf uses them with a resourceVersion `test`): a failed test is a 422,
        as the API server answers, which kopf expects and retries on its next cycle."""
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = self.objects[key].raw
        try:
            patched = jsonpatch.apply_patch(current, request.data, in_place=False)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise kmock.KubernetesError(
                status=422, reason="Invalid", message=f"the object has been modified: {exc}"
            ) from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None
        meta = current.get("metadata", {})
        if patched.get("spec") != current.get("spec"):
            request.data.append(
                {"op": "add", "path": "/metadata/generation", "value": int(meta.get("generation", 1)) + 1}
            )
        request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": str(next(self._rv))})

    async def _handle(self, request: kmock.Request) -> Any:
        # kmock matches each request against its whole request history (for assertions we never
        # make): cost grows with every request served. Keep only this request.
        del self._requests[:-1]
        for payload in self._payloads:
            payload._requests.clear()
        self.request_counts[
            (str(request.action), request.resource.plural if request.resource else None, request.subresource)
        ] += 1
        modifying = request.resource is not None and request.action in (
            enums.action.CREATE,
            enums.action.UPDATE,
            enums.action.DELETE,
        )
        if (
            request.action == enums.action.CREATE
            and (request.resource.plural, request.namespace) in self.forbidden
        ):
            raise kmock.KubernetesError(
                status=403,
                reason="Forbidden",
                message=f'{request.resource.plural} is forbidden: cannot create resource "{request.resource.plural}" '
                f'in the namespace "{request.namespace}"',
            )
        rejection = (
            self.rejections.get((request.resource.plural, request.namespace))
            if request.action == enums.action.CREATE
            else None
        )
        if request.action == enums.action.DELETE and request.resource is not None:
            rejection = self.delete_rejections.get((request.resource.plural, request.namespace))
        if rejection:
            status, reason, message = rejection
            raise kmock.KubernetesError(status=status, reason=reason, message=message)
        if request.action == enums.action.CREATE and request.resource == kmock.resource("v1/pods"):
            self._admit_service_account(request)
            self._validate_pod_quantities(request)
        if modifying:
            self._prepare(request)
        response = await super()._handle(request)
        if modifying:
            await self._after_write(request)
        return response

    async def _after_write(self, request: kmock.Request) -> None:
        async with self._lock:
            meta = request.data.get("metadata", {}) if isinstance(request.data, dict) else {}
            key = (
                request.resource,
                request.namespace or meta.get("namespace"),
                request.name or meta.get("name"),
            )
            if key in self.objects:
                history = self.objects[key].history  # kmock keeps every version; only the last matters
                if len(history) > 4:
                    del history[:-2]
            gone = key in self.objects and self.objects[key].deleted
            if request.action == enums.action.DELETE or (request.action == enums.action.UPDATE and gone):
                await self._collect_garbage()
        if (
            self.instant_pods
            and request.action == enums.action.CREATE
            and request.resource == kmock.resource("v1/pods")
        ):
            asyncio.get_running_loop().create_task(self._complete_pod(request.data))

    async def _collect_garbage(self) -> None:
        """Delete objects whose every owner is gone (cascading), as the garbage collector does."""
        while True:
            live = {obj.raw["metadata"].get("uid") for obj in self.objects.values() if not obj.deleted}
            orphans = [
                (key, obj)
                for key, obj in self.objects.items()
                if not obj.deleted
                and (refs := obj.raw.get("metadata", {}).get("ownerReferences"))
                and not any(ref.get("uid") in live for ref in refs)
            ]
            if not orphans:
                return
            for (resource, _, _), obj in orphans:
                raw = obj.raw
                obj.delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})

    def _KubernetesEmulator__get_objs(self, request: kmock.Request, strict: bool) -> list[Any]:
        """kmock scans every stored object to find the one a request names (O(objects) per
        request: most of the emulator's time with 200 jobs' children). A named request is a
        dict lookup here; anything else, or a miss, takes kmock's scan, so answers are the same."""
        if request.resource is not None and request.name is not None and (strict or request.namespace):
            obj = self._objects._objects.get((request.resource, request.namespace, request.name))
            if obj is not None:
                return [obj]
        return self._scan_objs(request, strict)

    def _scan_objs(self, request: kmock.Request, strict: bool) -> list[Any]:
        return kmock.KubernetesEmulator._KubernetesEmulator__get_objs(self, request, strict)

    # ----- list/watch with label selectors -------------------------------------------------------

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [
                o
                for o in result["items"]
                if selector_matches(o.get("metadata", {}).get("labels") or {}, selector)
            ]
        result["metadata"]["resourceVersion"] = str(next(self._rv))
        return result

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if selector and isinstance(event, dict):
                labels = event.get("object", {}).get("metadata", {}).get("labels") or {}
                if not selector_matches(labels, selector):
                    continue
            yield event

    def phases(self, resource: str, namespace: str) -> dict[str, str | None]:
        """name -> status.phase of the live objects (benchmarks poll this instead of LISTing
        through HTTP, which would load the emulator they measure against)."""
        res = kmock.resource(resource)
        for _ in range(10):  # the emulator's thread may be inserting meanwhile
            try:
                items = list(self.objects.items())
                break
            except RuntimeError:
                continue
        else:
            return {}
        return {
            name: (obj.raw.get("status") or {}).get("phase")
            for (r, ns, name), obj in items
            if r == res and ns == namespace and not obj.deleted
        }

    # ----- instant pods (benchmarks) -------------------------------------------------------------

    async def _set(self, resource: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        res = kmock.resource(resource)
        async with self._lock:
            key = (res, namespace, name)
            if key not in self.objects or self.objects[key].deleted:
                return
            patch.setdefault("metadata", {})["resourceVersion"] = str(next(self._rv))
            self.objects[key].patch(patch)
            await self._buses[res].put({"type": "MODIFIED", "object": self.objects[key].raw})

    async def _complete_pod(self, pod: dict[str, Any]) -> None:
        """A pod that runs and exits 0 at once; search rank 0 also leaves a tiny result behind."""
        meta = pod["metadata"]
        ns, name, labels = meta["namespace"], meta["name"], meta.get("labels") or {}
        await asyncio.sleep(0.05)
        job = labels.get("denas.io/job-name")
        if job and labels.get("denas.io/role") == "search" and labels.get("denas.io/rank") == "0":
            result = {
                "best": [
                    {
                        "structure": {"w": 1},
                        "hash": "h0",
                        "params": 1,
                        "flops": 1,
                        "scores": {"de_score": 1.0},
                    }
                ]
            }
            # A real search runs for minutes, long after its result ConfigMap exists; an instant
            # one waits for it (the operator may create it just after the pods).
            key = (kmock.resource("v1/configmaps"), ns, f"{job}-result")
            for _ in range(600):
                if key in self.objects and not self.objects[key].deleted:
                    break
                await asyncio.sleep(0.05)
            await self._set(
                "v1/configmaps", ns, f"{job}-result", {"data": {"result.json": json.dumps(result)}}
            )
        terminated = {"exitCode": 0, "reason": "Completed", "startedAt": _now(), "finishedAt": _now()}
        status = {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "denas",
                    "image": "instant",
                    "imageID": "instant",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        await self._set("v1/pods", ns, name, {"status": status})


class EmulatorServer:
    """The emulator on a local port, in its own thread and event loop, with a kubeconfig file."""

    def __init__(
        self, workdir: Path, namespaces: tuple[str, ...] = ("default",), instant_pods: bool = False
    ) -> None:
        self.workdir = Path(workdir)
        self.namespaces = namespaces
        self.instant_pods = instant_pods
        self.url = ""
        self.kubeconfig = self.workdir / "kubeconfig.yaml"
        self.emulator: DenasEmulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> EmulatorServer:
        self._thread.start()
        if not self._ready.wait(30) or self._error:
            raise RuntimeError(f"the emulator did not start: {self._error}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
            "current-context": "emulator",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with (
            DenasEmulator(instant_pods=self.instant_pods) as emulator,
            kmock.Server(emulator) as server,
        ):
            for ns in self.namespaces:
                emulator.objects["v1/namespaces", None, ns] = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "uid": str(uuid.uuid4())},
                }
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
