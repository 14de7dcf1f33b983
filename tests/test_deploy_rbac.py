"""The operator's RBAC grants every API call its code makes, and the grants stay least-privilege.

The calls are read from the operator's source (kubernetes-client methods, the lean
`_request(METHOD, path)` calls and `*_PATHS` tables of kube.py, and kopf decorators),
so a new call without a matching rule fails here instead of as a 403 in somebody's cluster.
"""

from __future__ import annotations

import ast
import re

import pytest
from deploy_support import ROOT, by_kind, load_docs, rules_by_resource

OPERATOR = ROOT / "operator" / "denas_operator"
CLIENT_CALL = re.compile(r"^(create|delete|patch|read|replace|list|get)_(namespaced_)?(\w+?)(_status)?$")
VERBS = {
    "create": "create",
    "delete": "delete",
    "patch": "patch",
    "read": "get",
    "get": "get",
    "replace": "update",
    "list": "list",
}
CORE_RESOURCES = {
    "pod": "/pods",
    "pod_log": "/pods/log",
    "service": "/services",
    "config_map": "/configmaps",
    "persistent_volume_claim": "/persistentvolumeclaims",
    "event": "/events",
    "namespace": "/namespaces",
    "custom_resource_definition": "apiextensions.k8s.io/customresourcedefinitions",
    "service_account": "/serviceaccounts",
    "role": "rbac.authorization.k8s.io/roles",
    "role_binding": "rbac.authorization.k8s.io/rolebindings",
}
# kopf handlers that keep state on the object (finalizers, progress annotations) patch it.
KOPF_PATCHING = {"create", "update", "delete", "resume", "timer", "daemon", "field"}


def _names() -> dict[str, str]:
    from denas_operator import names

    return {k: v for k, v in vars(names).items() if isinstance(v, str)}


def _value(node: ast.AST, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "n":
        return names.get(node.attr)
    return None


def _receiver(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _api_clients(tree: ast.AST) -> set[str]:
    """Names bound to kubernetes-client API objects: `self.core = client.CoreV1Api(...)`, `ext = ...`."""
    receivers = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr.endswith("Api") and func.attr != "ApiClient":
                receivers |= {r for r in map(_receiver, node.targets) if r}
    return receivers


def _client_calls(tree: ast.AST, names: dict[str, str]) -> set[tuple[str, str]]:
    """(resource, verb) of every call on a kubernetes-client API object, also via `self._call(fn, ...)`."""
    receivers = _api_clients(tree)
    needs = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        candidates = [(node.func, node.args)]
        if node.args and isinstance(node.args[0], ast.Attribute):  # self._call(self.core.create_..., *args)
            candidates.append((node.args[0], node.args[1:]))
        for func, args in candidates:
            if not isinstance(func, ast.Attribute) or _receiver(func.value) not in receivers:
                continue
            match = CLIENT_CALL.match(func.attr.removesuffix("_for_all_namespaces"))
            assert match and match.group(1) in VERBS, f"unknown client call {func.attr} (line {node.lineno})"
            verb, _, kind, status = match.groups()
            if kind in ("custom_object", "cluster_custom_object"):
                plural_at = 3 if kind == "custom_object" else 2  # (group, version, [namespace,] plural)
                group, plural = _value(args[0], names), _value(args[plural_at], names)
                assert group and plural, f"cannot resolve the resource of {func.attr} on line {node.lineno}"
                needs.add((f"{group}/{plural}{'/status' if status else ''}", VERBS[verb]))
            else:
                assert kind in CORE_RESOURCES, f"map {kind} (line {node.lineno}) to its RBAC resource here"
                needs.add((CORE_RESOURCES[kind] + ("/status" if status else ""), VERBS[verb]))
    return needs


HTTP_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def _path_text(node: ast.AST, names: dict[str, str]) -> str | None:
    """A path template as text: literal parts kept, `{n.X}` resolved, other fields as `{}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append(_value(value.value, names) or "{}")
        return "".join(parts)
    return None


def _path_resource(path: str) -> str:
    """`/api/v1/namespaces/{}/pods/{}` -> `/pods`; `/apis/g/v/namespaces/{}/p/{}/status` -> `g/p/status`."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        assert parts[0] == "apis", f"not an API path: {path}"
        group, rest = parts[1], parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource = f"{group}/{rest[0]}"
    return resource + ("/" + rest[2] if len(rest) > 2 else "")


def _from_path_table(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        node = node.func.value
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id.endswith("_PATHS")
    )


def _request_calls(tree: ast.AST, names: dict[str, str]) -> set[tuple[str, str]]:
    """`self._request("PATCH", f"/apis/...")` (also through `asyncio.to_thread(self._request, ...)`)
    and module tables `CREATE_PATHS = {kind: "/api/v1/namespaces/{ns}/pods"}` (creates)."""
    needs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.endswith("_PATHS"):
                verb = "create" if target.id.startswith("CREATE") else None
                assert verb, f"say which verb {target.id} (line {node.lineno}) is for"
                for value in node.value.values:
                    path = _path_text(value, names)
                    assert path, f"cannot read the path on line {value.lineno}"
                    needs.add((_path_resource(path), verb))
        if not isinstance(node, ast.Call):
            continue
        args = list(node.args)
        func = node.func
        if args and isinstance(args[0], ast.Attribute) and args[0].attr == "_request":
            args = args[1:]  # asyncio.to_thread(self._request, METHOD, path, ...)
        elif not (isinstance(func, ast.Attribute) and func.attr == "_request"):
            continue
        if len(args) < 2:
            continue
        method, path = _value(args[0], names), _path_text(args[1], names)
        if method is None and path is None:
            continue  # the helper's own definition or a pass-through
        if _from_path_table(args[1]):
            continue  # `CREATE_PATHS[kind].format(...)`: the table itself is scanned above
        assert method in HTTP_VERBS and path, f"cannot resolve the _request call on line {node.lineno}"
        needs.add((_path_resource(path), HTTP_VERBS[method]))
    return needs


def _kopf_calls(tree: ast.AST, names: dict[str, str]) -> set[tuple[str, str]]:
    needs = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        chain = []
        func = node.func
        while isinstance(func, ast.Attribute):
            chain.insert(0, func.attr)
            func = func.value
        if not (isinstance(func, ast.Name) and func.id == "kopf") or not chain:
            continue
        if chain[0] not in ("on", "index", "timer", "daemon") or chain[-1] in (
            "startup",
            "cleanup",
            "login",
            "probe",
        ):
            continue
        args = [_value(a, names) for a in node.args]
        if len(args) >= 3:
            resource = f"{args[0]}/{args[2]}"
        elif len(args) == 1 and args[0] and "/" not in args[0]:
            resource = f"/{args[0]}"
        else:
            pytest.fail(f"cannot resolve the resource of kopf.{'.'.join(chain)} on line {node.lineno}")
        needs |= {(resource, "list"), (resource, "watch")}
        if chain[-1] in KOPF_PATCHING:
            needs.add((resource, "patch"))
    return needs


def operator_needs() -> set[tuple[str, str]]:
    names = _names()
    needs = {("/events", "create")}  # kopf posts an Event for handler failures and successes
    for path in OPERATOR.glob("*.py"):
        tree = ast.parse(path.read_text())
        needs |= _client_calls(tree, names) | _request_calls(tree, names) | _kopf_calls(tree, names)
    return needs


def _granted() -> dict[str, set[str]]:
    roles = by_kind(load_docs(ROOT / "deploy" / "base" / "rbac" / "clusterrole.yaml"), "ClusterRole")
    granted: dict[str, set[str]] = {}
    for role in roles:
        for resource, verbs in rules_by_resource(role["rules"]).items():
            granted.setdefault(resource, set()).update(verbs)
    return granted


def test_the_scan_finds_the_operators_calls():
    needs = operator_needs()
    assert ("/pods", "create") in needs and ("/pods", "watch") in needs
    assert ("denas.io/denasjobs/status", "patch") in needs
    assert ("kubeflow.org/pytorchjobs", "create") in needs
    assert ("/configmaps", "get") in needs and ("rbac.authorization.k8s.io/roles", "create") in needs


def test_the_scan_reads_lean_requests_and_path_tables():
    code = """
CREATE_PATHS = {"Pod": "/api/v1/namespaces/{ns}/pods", "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"}
self._request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
await asyncio.to_thread(self._request, "PATCH", f"/apis/{n.GROUP}/{n.VERSION}/namespaces/{ns}/{n.PLURAL}/{name}/status", {})
"""
    assert _request_calls(ast.parse(code), _names()) == {
        ("/pods", "create"),
        ("rbac.authorization.k8s.io/roles", "create"),
        ("/configmaps", "get"),
        ("denas.io/denasjobs/status", "patch"),
    }
    with pytest.raises(AssertionError, match="cannot resolve"):
        _request_calls(ast.parse("self._request(method, f'/api/v1/{x}')"), _names())


def test_the_scan_maps_calls_to_verbs_and_refuses_what_it_cannot_map():
    names = _names()
    code = """
self.core = client.CoreV1Api(api)
ext = client.ApiextensionsV1Api(api)
await self._call(self.core.list_namespaced_pod, ns)
self.core.read_namespaced_pod_log(name, ns)
self.custom.get_namespaced_custom_object(n.GROUP, n.VERSION, ns, n.PLURAL, name)
ext.read_custom_resource_definition("x")
self.kube.delete_pod(ns, name)  # a wrapper, not a client: ignored
"""
    assert _client_calls(ast.parse(code), names) == {
        ("/pods", "list"),
        ("/pods/log", "get"),
        ("apiextensions.k8s.io/customresourcedefinitions", "get"),
    }  # self.custom is not bound to a client in this snippet, so its call is not counted
    with pytest.raises(AssertionError, match="secret"):
        _client_calls(
            ast.parse("self.core = client.CoreV1Api()\nself.core.read_namespaced_secret(n, ns)"), names
        )


def test_rbac_grants_every_call_the_operator_makes():
    granted = _granted()
    missing = sorted(
        f"{verb} {resource}"
        for resource, verb in operator_needs()
        if verb not in granted.get(resource, set())
    )
    assert not missing, f"deploy/base/rbac/clusterrole.yaml (and the chart) lack: {missing}"


def test_rbac_grants_nothing_beyond_the_calls_and_reads_around_them():
    """Extra grants must be reads (get/list/watch), kopf's peering, or the status update verb."""
    needs = operator_needs()
    allowed_extras = {"get", "list", "watch"}
    unexplained = []
    for resource, verbs in _granted().items():
        if resource.startswith("kopf.dev/"):
            continue  # kopf's own peering (HA), not visible in the operator's code
        for verb in verbs - allowed_extras:
            if (resource, verb) not in needs and not (resource.endswith("/status") and verb == "update"):
                unexplained.append(f"{verb} {resource}")
    assert not unexplained, f"granted but never used by the operator: {sorted(unexplained)}"
