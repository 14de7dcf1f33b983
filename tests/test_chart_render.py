"""charts/denas-operator: rendered by Helm's own engine (helm-python-sdk), linted, schema-checked,
and every rendered object validated against Kubernetes 1.30 and 1.33 schemas.

ServiceMonitor/PodMonitor (monitoring.coreos.com) are not in kubernetes-validate's schema set:
they get the structural check of deploy_support.check_monitoring_object instead.
"""

from __future__ import annotations

import copy
import json

import helm_python as helm
import jsonschema
import pytest
from deploy_support import (
    KUBE_VERSIONS,
    ROOT,
    assert_valid,
    by_kind,
    kustomize_build,
    load_docs,
    one,
    rules_by_resource,
)
from podsecurity import assert_restricted

CHART = ROOT / "charts" / "denas-operator"
RELEASE = "denas-operator"
NAMESPACE = "denas-system"

SCENARIOS: dict[str, dict] = {
    "default": {},
    "namespaced": {"rbac": {"clusterWide": False, "watchNamespaces": ["team-a", "team-b"]}},
    "ha": {"replicas": 2},
    "ha-namespaced": {"replicas": 3, "rbac": {"clusterWide": False, "watchNamespaces": ["team-a", "team-b"]}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "podMonitor": {"enabled": True},
        }
    },
    "custom-security": {
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/denas-operator.json"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    },
    "everything-set": {
        "image": {
            "repository": "registry.example.com/denas/operator",
            "tag": "0.1.0-rc1",
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"name": "nas-bot", "annotations": {"iam.gke.io/gcp-service-account": "nas@p.iam"}},
        "resources": {
            "requests": {"cpu": "200m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["infra"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "podLabels": {"team": "ml"},
        "metrics": {"port": 9090, "service": {"type": "ClusterIP", "annotations": {"a": "b"}}},
        "health": {"port": 9091},
        "worker": {
            "image": "registry.example.com/denas/worker:0.1.0-rc1",
            "imagePullSecrets": [{"name": "corp-mirror"}, {"name": "regcred"}],
            "runAsUser": 1000710000,
        },
        # Helm merges maps: null drops the default's key.
        "networkPolicy": {
            "metricsNamespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": None, "team": "observability"}
            }
        },
        "verbose": True,
        "extraArgs": ["--priority=10"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    },
}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart, values: dict) -> list[dict]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        doc for path, text in sorted(manifests.items()) if path.endswith(".yaml") for doc in load_docs(text)
    ]


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict]]:
    return {name: render(chart, values) for name, values in SCENARIOS.items()}


def _container(objects: list[dict]) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _env(objects: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in _container(objects)["env"]}


# ----- lint and values schema --------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_lints_clean_in_strict_mode(scenario):
    for version in KUBE_VERSIONS:
        report = helm.lint(
            CHART, SCENARIOS[scenario], strict=True, namespace=NAMESPACE, kube_version=f"v{version}.0"
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, (version, report)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_values_pass_the_values_schema(chart, scenario):
    chart.validate_schema(SCENARIOS[scenario])
    jsonschema.validate(
        chart.merge_values(SCENARIOS[scenario]), json.loads((CHART / "values.schema.json").read_text())
    )


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"replicas": 0}, "replicas"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"rbac": {"clusterWide": False}}, "watchNamespaces"),
        ({"rbac": {"watchNamespaces": ["Not_A_Namespace"]}}, "watchNamespaces"),
        ({"metrics": {"port": 80}}, "port"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval"),
        ({"replica": 2}, "replica"),
    ],
)
def test_values_schema_rejects_bad_values_naming_the_key(chart, values, key):
    with pytest.raises(helm.HelmValuesError, match=key):
        chart.validate_schema(values)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(chart.merge_values(values), chart.schema)


def test_namespaced_mode_without_namespaces_fails_with_a_clear_message(chart):
    # values.schema.json catches it at install; the template also fails for --skip-schema-validation.
    with pytest.raises(helm.HelmError, match="rbac.watchNamespaces"):
        chart.render(
            {"rbac": {"clusterWide": False, "watchNamespaces": []}}, name=RELEASE, namespace=NAMESPACE
        )


# ----- every rendered object ----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_objects_validate_against_kubernetes_schemas(rendered, scenario):
    assert_valid(rendered[scenario])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_operator_pod_meets_podsecurity_restricted(rendered, scenario):
    assert_restricted(one(rendered[scenario], "Deployment"))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_operator_accepts_the_arguments_the_chart_passes(rendered, scenario):
    from denas_operator.__main__ import build_parser

    container = _container(rendered[scenario])
    args = build_parser().parse_args(container["args"])
    values = SCENARIOS[scenario]
    assert args.metrics_port == values.get("metrics", {}).get("port", 8080)
    watch = values.get("rbac", {}).get("watchNamespaces")
    assert args.namespace == (watch or []) and args.all_namespaces == (not watch)
    assert bool(args.peering) == (values.get("replicas", 1) > 1)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_carries_the_standard_labels(rendered, scenario):
    for obj in rendered[scenario]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == "denas-operator-0.1.0"


def test_chart_crds_are_the_generated_deploy_crds(chart):
    shipped = {c["filename"].split("/")[-1]: c["data"] for c in chart.crds}
    deploy = {p.name: p.read_text() for p in (ROOT / "deploy" / "crds").glob("*.yaml")}
    assert {name: load_docs(text) for name, text in shipped.items()} == {
        name: load_docs(text) for name, text in deploy.items()
    }


# ----- behaviour per scenario -----------------------------------------------------------------------


def test_default_matches_the_kubectl_install(rendered):
    """The chart and deploy/ are two doors to the same operator: same args, env, probes, security."""
    chart_objects = rendered["default"]
    deploy_objects = kustomize_build(ROOT / "deploy")
    ours, theirs = _container(chart_objects), _container(deploy_objects)
    for key in ("args", "env", "ports", "securityContext", "livenessProbe", "readinessProbe", "volumeMounts"):
        assert ours[key] == theirs[key], key
    chart_pod = one(chart_objects, "Deployment")["spec"]["template"]["spec"]
    deploy_pod = one(deploy_objects, "Deployment")["spec"]["template"]["spec"]
    assert chart_pod["securityContext"] == deploy_pod["securityContext"]
    assert chart_pod["volumes"] == deploy_pod["volumes"]

    def grants(objects, kind):
        return {
            role["metadata"]["name"].endswith("-discovery"): rules_by_resource(role["rules"])
            for role in by_kind(objects, kind)
        }

    assert grants(chart_objects, "ClusterRole") == grants(deploy_objects, "ClusterRole")


def test_default_runs_one_standalone_cluster_wide_replica(rendered):
    objects = rendered["default"]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    args = _container(objects)["args"]
    assert args[:2] == ["--all-namespaces", "--standalone"]
    assert not by_kind(objects, "Role") and not by_kind(objects, "PodDisruptionBudget")
    assert not by_kind(objects, "ServiceMonitor") and not by_kind(objects, "PodMonitor")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    for binding in by_kind(objects, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]


def test_namespaced_mode_grants_a_role_in_each_watched_namespace_only(rendered):
    objects = rendered["namespaced"]
    args = _container(objects)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=team-a", "--namespace=team-b"]
    roles = by_kind(objects, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == {"team-a", "team-b"}
    bindings = by_kind(objects, "RoleBinding")
    assert {(b["metadata"]["namespace"], b["roleRef"]["kind"]) for b in bindings} == {
        ("team-a", "Role"),
        ("team-b", "Role"),
    }
    # Only the read-only discovery role stays cluster-wide.
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert set(rules_by_resource(cluster_role["rules"])) == {
        "apiextensions.k8s.io/customresourcedefinitions",
        "/namespaces",
    }
    cluster_wide = rules_by_resource(one(rendered["default"], "ClusterRole", RELEASE)["rules"])
    namespaced = rules_by_resource(roles[0]["rules"])
    assert namespaced == {k: v for k, v in cluster_wide.items() if k != "kopf.dev/clusterkopfpeerings"}


def test_more_than_one_replica_means_peering_rolling_updates_and_a_pdb(rendered):
    objects = rendered["ha"]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    args = _container(objects)["args"]
    assert "--standalone" not in args and f"--peering={RELEASE}" in args
    assert one(objects, "ClusterKopfPeering")["metadata"]["name"] == RELEASE
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"]


def test_namespaced_ha_peers_through_a_kopfpeering_in_each_namespace(rendered):
    objects = rendered["ha-namespaced"]
    peerings = by_kind(objects, "KopfPeering")
    assert {p["metadata"]["namespace"] for p in peerings} == {"team-a", "team-b"}
    assert not by_kind(objects, "ClusterKopfPeering")
    assert one(objects, "Deployment")["spec"]["replicas"] == 3


def test_monitors_select_the_operator_service_and_the_worker_pods(rendered):
    objects = rendered["monitoring"]
    service = one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    pod_monitor = one(objects, "PodMonitor")
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    assert pod_monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": "denas.io/job-name", "operator": "Exists"}
    ]


def test_custom_security_contexts_are_rendered_as_given(rendered):
    objects = rendered["custom-security"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == SCENARIOS["custom-security"]["podSecurityContext"]
    assert pod["containers"][0]["securityContext"] == SCENARIOS["custom-security"]["securityContext"]


def test_every_knob_reaches_the_deployment(rendered):
    values = SCENARIOS["everything-set"]
    objects = rendered["everything-set"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    assert container["image"] == "registry.example.com/denas/operator:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == values["imagePullSecrets"]
    assert pod["serviceAccountName"] == "nas-bot"
    sa = one(objects, "ServiceAccount", "nas-bot")
    assert sa["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    assert container["resources"] == values["resources"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == values[key], key
    template_meta = one(objects, "Deployment")["spec"]["template"]["metadata"]
    assert template_meta["annotations"] == values["podAnnotations"]
    assert template_meta["labels"]["team"] == "ml"
    assert container["args"][-2:] == ["--verbose", "--priority=10"]
    assert "--metrics-port=9090" in container["args"]
    assert "--liveness=http://0.0.0.0:9091/healthz" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 9090,
        "health": 9091,
        "ready": 8082,
    }
    env = _env(objects)
    assert env["DENAS_DEFAULT_WORKER_IMAGE"] == values["worker"]["image"]
    assert env["DENAS_WORKER_RUN_AS_USER"] == str(values["worker"]["runAsUser"])
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 9090 and service["metadata"]["annotations"] == {"a": "b"}


def test_default_worker_image_is_the_crd_default(rendered):
    from denas.job import load_job

    job = load_job(
        {
            "apiVersion": "denas.io/v1alpha1",
            "kind": "DeNASJob",
            "metadata": {"name": "x"},
            "spec": {"domain": "cnn"},
        }
    )
    assert _env(rendered["default"])["DENAS_DEFAULT_WORKER_IMAGE"] == job.spec["image"]


def test_rbac_and_service_account_can_be_left_to_the_cluster_admin(chart):
    objects = render(
        chart, {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "preexisting"}}
    )
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "preexisting"


def test_notes_tell_how_to_upgrade_the_crds(chart):
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["denas-operator/templates/NOTES.txt"]
    assert "kubectl apply --server-side -f deploy/crds/" in notes
    ns_notes = chart.render(copy.deepcopy(SCENARIOS["namespaced"]), name=RELEASE, namespace=NAMESPACE)
    assert "team-a, team-b" in ns_notes["denas-operator/templates/NOTES.txt"]


# ----- NetworkPolicy and pull secrets ------------------------------------------------------------


def test_network_policy_for_the_operator_admits_metrics_only_from_monitoring(rendered):
    objects = rendered["default"]
    policy = one(objects, "NetworkPolicy")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and all(pod_labels.get(k) == v for k, v in selector.items())
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    env = _env(objects)
    assert env["DENAS_NETWORK_POLICY"] == "true"
    assert (
        json.loads(env["DENAS_NETWORK_POLICY_METRICS_NAMESPACE_SELECTOR"])
        == rule["from"][0]["namespaceSelector"]
    )
    custom = rendered["everything-set"]
    assert json.loads(_env(custom)["DENAS_NETWORK_POLICY_METRICS_NAMESPACE_SELECTOR"]) == {
        "matchLabels": {"team": "observability"}
    }
    assert_valid([policy])


def test_network_policy_off_renders_none_and_tells_the_operator(chart):
    objects = render(chart, {"networkPolicy": {"enabled": False}})
    assert by_kind(objects, "NetworkPolicy") == []
    assert _env(objects)["DENAS_NETWORK_POLICY"] == "false"


def test_network_policy_rbac_lets_the_operator_create_the_jobs_policies(rendered):
    role = one(rendered["default"], "ClusterRole", f"{RELEASE}")
    assert "create" in rules_by_resource(role["rules"])["networking.k8s.io/networkpolicies"]


def test_pull_secrets_default_reaches_the_operator_env(rendered):
    assert _env(rendered["everything-set"])["DENAS_DEFAULT_IMAGE_PULL_SECRETS"] == "corp-mirror,regcred"
    assert "DENAS_DEFAULT_IMAGE_PULL_SECRETS" not in _env(rendered["default"])


def test_worker_uid_is_a_value_and_null_leaves_it_to_the_image(chart):
    default = _env(render(chart, {}))
    assert default["DENAS_WORKER_RUN_AS_USER"] == "1000"  # the worker image's user
    assert _env(render(chart, {"worker": {"runAsUser": None}}))["DENAS_WORKER_RUN_AS_USER"] == ""
    assert (
        _env(render(chart, {"worker": {"runAsUser": 1000710000}}))["DENAS_WORKER_RUN_AS_USER"] == "1000710000"
    )
