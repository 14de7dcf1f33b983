"""deploy/: `kubectl apply -k` installs a valid, least-privilege, PodSecurity-restricted operator."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys

import pytest
from deploy_support import (
    ROOT,
    assert_valid,
    by_kind,
    kustomize_build,
    load_docs,
    one,
    rules_by_resource,
)
from podsecurity import assert_restricted, restricted_violations

DEPLOY = ROOT / "deploy"
BUILDS = {
    "default": DEPLOY,
    "ha": DEPLOY / "overlays" / "ha",
    "namespaced": DEPLOY / "overlays" / "namespaced",
    "monitoring": DEPLOY / "overlays" / "monitoring",
}


@pytest.fixture(scope="module")
def builds() -> dict[str, list[dict]]:
    return {name: kustomize_build(path) for name, path in BUILDS.items()}


def _args(objects: list[dict]) -> list[str]:
    deployment = one(objects, "Deployment", "denas-operator")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


# ----- CRD copies -----------------------------------------------------------------------------


def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_crd", ROOT / "scripts" / "sync_crd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crd_copies_match_the_package_source():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_crd.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_sync_crd_check_fails_on_a_drifted_copy_and_sync_repairs_it(tmp_path, monkeypatch, capsys):
    sync = _sync_module()
    monkeypatch.setattr(sync, "ROOT", tmp_path)
    monkeypatch.setattr(sync, "TARGET_DIRS", (tmp_path / "deploy" / "crds",))
    source = tmp_path / "denas" / "crd" / sync.SOURCE.name
    source.parent.mkdir(parents=True)
    source.write_text(sync.SOURCE.read_text())
    monkeypatch.setattr(sync, "SOURCE", source)
    monkeypatch.setattr(sync, "SOURCES", (source,))

    assert sync.main([]) == 0
    assert sync.main(["--check"]) == 0
    copy_path = tmp_path / "deploy" / "crds" / source.name
    copy_path.write_text(copy_path.read_text().replace("shortNames: [dnj]", "shortNames: [dj]"))
    assert sync.main(["--check"]) == 1
    assert "deploy/crds/denasjobs.denas.io.yaml is out of date" in capsys.readouterr().err
    assert sync.main([]) == 0
    assert sync.main(["--check"]) == 0


def test_the_campaign_crd_ships_beside_the_job_crd():
    from denas.campaign.spec import crd

    for directory in (DEPLOY / "crds", ROOT / "charts" / "denas-operator" / "crds"):
        (shipped,) = load_docs(directory / "denascampaigns.denas.io.yaml")
        assert shipped == crd()
        assert (
            shipped["spec"]["names"]["shortNames"] == ["dnc"]
            and "denas" in shipped["spec"]["names"]["categories"]
        )


def test_generated_crd_is_the_package_crd():
    from denas.job import crd

    (shipped,) = load_docs(DEPLOY / "crds" / "denasjobs.denas.io.yaml")
    assert shipped == crd()


# ----- every build ------------------------------------------------------------------------------


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_object_validates_against_kubernetes_schemas(builds, build):
    assert_valid(builds[build])


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_operator_pod_meets_podsecurity_restricted(builds, build):
    assert_restricted(one(builds[build], "Deployment", "denas-operator"))


def test_default_install_includes_the_crds_and_a_restricted_namespace(builds):
    objects = builds["default"]
    crds = {o["metadata"]["name"] for o in by_kind(objects, "CustomResourceDefinition")}
    assert crds == {
        "denasjobs.denas.io",
        "denascampaigns.denas.io",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    namespace = one(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    namespaced = [o for o in objects if o["kind"] not in {"Namespace", "CustomResourceDefinition"}]
    for obj in namespaced:
        if not obj["kind"].startswith("Cluster"):
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["kind"]


def test_default_install_runs_one_standalone_replica_with_recreate(builds):
    deployment = one(builds["default"], "Deployment", "denas-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    args = _args(builds["default"])
    assert "--standalone" in args and "--all-namespaces" in args
    assert not [a for a in args if a.startswith("--peering")]


def test_ha_overlay_runs_two_peered_replicas_with_rolling_updates(builds):
    objects = builds["ha"]
    deployment = one(objects, "Deployment", "denas-operator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    args = _args(objects)
    assert "--standalone" not in args
    (peering_arg,) = [a for a in args if a.startswith("--peering=")]
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == peering_arg.split("=", 1)[1]
    pdb = one(objects, "PodDisruptionBudget")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_namespaced_overlay_watches_exactly_the_namespaces_it_grants(builds):
    objects = builds["namespaced"]
    args = _args(objects)
    assert "--all-namespaces" not in args
    watched = {a.split("=", 1)[1] for a in args if a.startswith("--namespace=")}
    bindings = by_kind(objects, "RoleBinding")
    assert watched == {b["metadata"]["namespace"] for b in bindings} and len(watched) == 2
    for binding in bindings:
        assert binding["roleRef"]["name"] == "denas-operator"
    cluster_bindings = {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")}
    assert cluster_bindings == {"denas-operator-discovery"}, "workload rules must not be granted cluster-wide"


def test_bindings_grant_the_service_account_the_pod_runs_as(builds):
    for name, objects in builds.items():
        deployment = one(objects, "Deployment", "denas-operator")
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        sa = one(objects, "ServiceAccount", account)
        for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": account, "namespace": sa["metadata"]["namespace"]}
            ], name
            one(objects, "ClusterRole", binding["roleRef"]["name"])


def test_rbac_is_least_privilege(builds):
    objects = builds["default"]
    granted: dict[str, set[str]] = {}
    for role in by_kind(objects, "ClusterRole"):
        for resource, verbs in rules_by_resource(role["rules"]).items():
            granted.setdefault(resource, set()).update(verbs)
    for resource, verbs in granted.items():
        assert "*" not in resource and "*" not in verbs, resource
    assert not {r for r in granted if r.endswith("/secrets")}, "the operator never reads secrets"
    # It never changes what users wrote: no update of DeNASJob spec, CRDs or namespaces read-only.
    assert "update" not in granted["denas.io/denasjobs"]
    assert granted["apiextensions.k8s.io/customresourcedefinitions"] == {"get", "list", "watch"}
    assert granted["/namespaces"] == {"get", "list", "watch"}
    assert {"create", "delete"} <= granted["/pods"]
    assert granted["/events"] == {"create"}


def test_service_and_service_monitor_select_the_operator_metrics_port(builds):
    objects = builds["monitoring"]
    deployment = one(objects, "Deployment", "denas-operator")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {
        p["name"]: p["containerPort"]
        for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    service = one(objects, "Service", "denas-operator-metrics")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    assert f"--metrics-port={ports['metrics']}" in _args(objects)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service_port["name"]
    pod_monitor = one(objects, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchExpressions"][0]["key"] == "denas.io/job-name"


# ----- the PodSecurity checker itself -----------------------------------------------------------


def _mutated(deployment: dict, mutate) -> dict:
    changed = copy.deepcopy(deployment)
    mutate(changed["spec"]["template"]["spec"])
    return changed


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.update(hostNetwork=True), "hostNetwork"),
        (lambda s: s.update(hostPID=True), "hostPID"),
        (lambda s: s["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (
            lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation",
        ),
        (lambda s: s["containers"][0]["securityContext"]["capabilities"].update(drop=[]), "must include ALL"),
        (
            lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
            "SYS_ADMIN",
        ),
        (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda s: s["securityContext"].update(runAsUser=0), "runAsUser"),
        (
            lambda s: (
                s["securityContext"].pop("runAsNonRoot"),
                s["containers"][0]["securityContext"].pop("runAsNonRoot"),
            ),
            "runAsNonRoot",
        ),
        (
            lambda s: s["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
            "seccompProfile",
        ),
        (
            lambda s: s["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem",
        ),
        (lambda s: s["containers"][0].update(volumeMounts=[]), "/tmp"),
        (lambda s: s["containers"][0]["ports"][0].update(hostPort=8080), "hostPort"),
    ],
)
def test_podsecurity_checker_names_each_violation(builds, mutate, expected):
    deployment = one(builds["default"], "Deployment", "denas-operator")
    assert restricted_violations(deployment) == []
    violations = restricted_violations(_mutated(deployment, mutate))
    assert any(expected in v for v in violations), violations


def test_podsecurity_checker_accepts_kubernetes_client_models(builds):
    from kubernetes.client import ApiClient

    deployment = one(builds["default"], "Deployment", "denas-operator")
    pod_spec = deployment["spec"]["template"]["spec"]

    model = ApiClient().deserialize(json.dumps(pod_spec), "V1PodSpec", "application/json")
    assert restricted_violations(model) == []
    model.host_network = True
    assert any("hostNetwork" in v for v in restricted_violations(model))


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_operator_accepts_the_arguments_the_deployment_passes(builds, build):
    from denas_operator.__main__ import build_parser

    deployment = one(builds[build], "Deployment", "denas-operator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.metrics_port == ports["metrics"]
    assert args.liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    assert args.readiness == f"http://0.0.0.0:{ports['ready']}/readyz"
    probes = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert probes[0] == {"path": "/healthz", "port": "health"}  # not stuck (kopf's event loop answers)
    assert probes[1] == {"path": "/readyz", "port": "ready"}  # watching and caught up: not the liveness probe
    assert args.all_namespaces or args.namespace
    assert bool(args.peering) == (deployment["spec"]["replicas"] > 1)


def test_uninstall_friendly_crd_categories_keep_denasjobs_out_of_kubectl_get_all():
    """`kubectl get all` (and tools that delete "all") must not reach DeNASJobs: category denas only."""
    from denas.job import crd

    assert crd()["spec"]["names"]["categories"] == ["denas"]
    for path in (
        ROOT / "deploy" / "crds" / "denasjobs.denas.io.yaml",
        ROOT / "charts" / "denas-operator" / "crds" / "denasjobs.denas.io.yaml",
    ):
        assert load_docs(path.read_text())[0]["spec"]["names"]["categories"] == ["denas"]
