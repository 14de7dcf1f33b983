"""GitOps health of a DeNASJob: the Argo CD Lua check (run with lupa) and the Flux CEL
healthCheckExprs (run with cel-python) agree with each other on real status shapes."""

from __future__ import annotations

import re
import shutil
import subprocess

import celpy
import lupa
import pytest
from deploy_support import ROOT, load_docs

from denas import status as S

HEALTH_LUA = ROOT / "gitops" / "argocd" / "health.lua"
FLUX_HEALTH = ROOT / "gitops" / "flux" / "denasjob-health.yaml"
T0 = "2026-11-23T12:00:00Z"


def job(status: dict | None = None, generation: int = 1) -> dict:
    obj = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "digits", "namespace": "default", "generation": generation},
        "spec": {"domain": "cnn"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def status_with(*conditions: tuple[str, bool, str, str], observed: int = 1) -> dict:
    """A status as the operator writes it: conditions via denas.status, phase derived from them."""
    current: list[dict] = []
    for type_, value, reason, message in conditions:
        current = S.set_condition(current, type_, value, reason, message, observed, T0)
    return {"observedGeneration": observed, "conditions": current, "phase": S.phase(current)}


# name -> (object, Argo CD status, text the Argo message contains, Flux status)
CASES = {
    "new-no-status": (job(), "Progressing", "Waiting for the DeNAS operator", "InProgress"),
    "searching": (
        job(status_with((S.SEARCH_RUNNING, True, "PodsRunning", "2 search pod(s) running"))),
        "Progressing",
        "PodsRunning: 2 search pod(s) running",
        "InProgress",
    ),
    "pods-pending": (
        job(status_with((S.SEARCH_RUNNING, True, "PodsPending", "waiting for 1 pod to be scheduled"))),
        "Progressing",
        "PodsPending",
        "InProgress",
    ),
    "training": (
        job(
            status_with(
                (S.SEARCH_RUNNING, False, "SearchCompleted", "the search pods finished"),
                (S.SEARCH_SUCCEEDED, True, "ResultReady", "5 structures"),
                (S.TRAINING_RUNNING, True, "PodsRunning", "2 training pod(s) running"),
            )
        ),
        "Progressing",
        "2 training pod(s) running",
        "InProgress",
    ),
    "blocked-on-kubeflow": (
        job(
            status_with(
                (S.SEARCH_SUCCEEDED, True, "ResultReady", "5 structures"),
                (S.TRAINING_RUNNING, False, "KubeflowNotInstalled", "install the Kubeflow training operator"),
                ("Blocked", True, "KubeflowNotInstalled", "install the Kubeflow training operator"),
            )
        ),
        "Progressing",
        "KubeflowNotInstalled: install the Kubeflow training operator",
        "InProgress",
    ),
    "succeeded": (
        job(
            status_with(
                (S.SEARCH_SUCCEEDED, True, "ResultReady", "5 structures"),
                (S.TRAINING_SUCCEEDED, True, "TrainingCompleted", "trained"),
                (S.SUCCEEDED, True, "Completed", "search and training finished"),
            )
        ),
        "Healthy",
        "Completed: search and training finished",
        "Current",
    ),
    "failed-image-pull": (
        job(
            status_with(
                (S.SEARCH_RUNNING, False, "ImagePullBackOff", "image cannot be pulled"),
                (S.FAILED, True, "ImagePullBackOff", "pod digits-search-0: image x:1 cannot be pulled"),
            )
        ),
        "Degraded",
        "ImagePullBackOff: pod digits-search-0: image x:1 cannot be pulled",
        "Failed",
    ),
    "failed-invalid-spec": (
        job(status_with((S.FAILED, True, "InvalidSpec", "spec.search.population: should be >= 2"))),
        "Degraded",
        "InvalidSpec: spec.search.population",
        "Failed",
    ),
    "spec-fixed-after-failure": (
        job(
            status_with(
                (S.FAILED, False, "SpecFixed", "the spec is valid again"),
                (S.SEARCH_RUNNING, True, "PodsRunning", "1 search pod(s) running"),
            )
        ),
        "Progressing",
        "PodsRunning",
        "InProgress",
    ),
    "suspended": (
        job(status_with((S.SUSPENDED, True, "Suspended", "pods deleted, state kept"))),
        "Suspended",
        "pods deleted, state kept",
        "Current",
    ),
    "stale-status-after-spec-edit": (
        job(status_with((S.SUCCEEDED, True, "Completed", "done"), observed=1), generation=2),
        "Progressing",
        "generation 2",
        "InProgress",
    ),
    "phase-only-failed": (
        job({"observedGeneration": 1, "phase": "Failed"}),
        "Degraded",
        "Phase: Failed",
        "InProgress",
    ),
    "phase-only-succeeded": (
        job({"observedGeneration": 1, "phase": "Succeeded"}),
        "Healthy",
        "Phase",
        "InProgress",
    ),
}


# ----- Argo CD (Lua) -----------------------------------------------------------------------------


def argocd_health(obj: dict) -> dict:
    """Run health.lua the way Argo CD does: the object as global `obj`, the script returns a table."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return dict(result.items())


@pytest.mark.parametrize("case", sorted(CASES))
def test_argocd_health_check(case):
    obj, expected_status, message_part, _ = CASES[case]
    health = argocd_health(obj)
    assert health["status"] == expected_status
    assert message_part in health["message"]


def test_argocd_health_check_names_only_conditions_the_operator_writes():
    from denas_operator.metrics import PHASES
    from denas_operator.reconcile import BLOCKED

    known = {S.SEARCH_RUNNING, S.SEARCH_SUCCEEDED, S.TRAINING_RUNNING, S.TRAINING_SUCCEEDED}
    known |= {S.SUSPENDED, S.SUCCEEDED, S.FAILED, BLOCKED}
    script = HEALTH_LUA.read_text()
    used = set(re.findall(r'is_true\(conditions, "(\w+)"\)', script))
    used |= set(re.findall(r'"(\w+)"', script.split("for _, type_ in ipairs(", 1)[1].split(")", 1)[0]))
    assert used and used <= known, used - known
    phases = set(re.findall(r'phase == "(\w+)"', script))
    assert phases and phases <= set(PHASES), phases - set(PHASES)


def test_argocd_component_installs_the_script_into_argocd_cm(tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl)")
    shutil.copytree(ROOT / "gitops" / "argocd", tmp_path / "argocd")
    install = tmp_path / "install"
    install.mkdir()
    (install / "argocd-cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cm, namespace: argocd}\ndata: {url: https://argo}\n"
    )
    (install / "kustomization.yaml").write_text("resources: [argocd-cm.yaml]\ncomponents: [../argocd]\n")
    out = subprocess.run(
        [kubectl, "kustomize", str(install), "--load-restrictor", "LoadRestrictionsNone"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (cm,) = load_docs(out.stdout)
    assert cm["metadata"]["name"] == "argocd-cm" and cm["data"]["url"] == "https://argo"
    assert cm["data"]["resource.customizations.health.denas.io_DeNASJob"] == HEALTH_LUA.read_text()
    campaign_lua = (ROOT / "gitops" / "argocd" / "campaign-health.lua").read_text()
    assert cm["data"]["resource.customizations.health.denas.io_DeNASCampaign"] == campaign_lua


# ----- Flux (CEL) --------------------------------------------------------------------------------


def flux_exprs() -> dict:
    (entry,) = load_docs(FLUX_HEALTH)
    return entry


def flux_health(obj: dict, exprs: dict) -> str:
    """Flux's order: inProgress, failed, current; no match, or a missing field, means InProgress."""
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(obj[key]) for key in ("metadata", "spec", "status") if key in obj}
    for key, outcome in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if key not in exprs:
            continue
        program = env.program(env.compile(exprs[key]))
        try:
            value = program.evaluate(activation)
        except celpy.CELEvalError:
            return "InProgress"
        if isinstance(value, celpy.CELEvalError):
            return "InProgress"
        if bool(value):
            return outcome
    return "InProgress"


@pytest.mark.parametrize("case", sorted(CASES))
def test_flux_health_check_exprs(case):
    obj, _, _, expected = CASES[case]
    assert flux_health(obj, flux_exprs()) == expected


def test_flux_and_argocd_agree_wherever_both_decide():
    mapping = {
        "Healthy": "Current",
        "Suspended": "Current",
        "Degraded": "Failed",
        "Progressing": "InProgress",
    }
    for case, (obj, *_rest) in CASES.items():
        if "conditions" not in obj.get("status", {"conditions": []}):
            continue  # phase-only statuses: Flux's expressions read conditions only
        assert mapping[argocd_health(obj)["status"]] == flux_health(obj, flux_exprs()), case


def test_flux_snippet_targets_denasjobs():
    exprs = flux_exprs()
    assert (exprs["apiVersion"], exprs["kind"]) == ("denas.io/v1alpha1", "DeNASJob")


# ----- against the statuses the real operator decides ----------------------------------------------


def test_health_checks_follow_a_job_through_the_operators_own_decisions():
    """Drive the operator's pure `decide` through a job's life and check both tools at each step."""
    import copy
    import json

    from denas_operator import names as n
    from denas_operator.reconcile import Observed, decide

    from denas.job import load_job

    body = copy.deepcopy(load_job(ROOT / "deploy" / "samples" / "digits.yaml").manifest)
    body["metadata"].update(namespace="default", uid="uid-1", generation=1)
    seen = []

    def step(observed: Observed) -> list[dict]:
        decision = decide(body, observed)
        body["status"] = decision.status
        seen.append((argocd_health(body)["status"], flux_health(body, flux_exprs())))
        return decision.create

    created = step(Observed())
    configmaps = {o["metadata"]["name"]: o for o in created if o["kind"] == "ConfigMap"}
    search_pods = [o for o in created if o["kind"] == "Pod"]
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes",
    }
    for pod in search_pods:
        pod["status"] = {"phase": "Pending", "conditions": [unschedulable]}
    step(Observed(pods=search_pods, configmaps=configmaps))
    assert "Unschedulable" in argocd_health(body)["message"]
    for pod in search_pods:
        pod["status"] = {"phase": "Succeeded"}
    result = {
        "best": [
            {
                "structure": {},
                "hash": "h",
                "params": 1,
                "flops": 1,
                "latency_ms": 1.0,
                "scores": {"de_score": 1.0},
            }
        ]
    }
    configmaps[n.result_configmap("digits")]["data"] = {n.RESULT_KEY: json.dumps(result)}
    created = step(Observed(pods=search_pods, configmaps=configmaps))
    train_pods = [o for o in created if o["kind"] == "Pod"]
    assert train_pods and body["status"]["phase"] == "Training"
    for pod in train_pods:
        pod["status"] = {"phase": "Succeeded"}
    configmaps[n.result_configmap("digits")]["data"][n.METRICS_KEY] = json.dumps(
        {"metric": 0.9, "metric_name": "accuracy"}
    )
    step(Observed(pods=search_pods + train_pods, configmaps=configmaps))
    assert body["status"]["phase"] == "Succeeded"
    assert seen == [
        ("Progressing", "InProgress"),  # search pods created
        ("Progressing", "InProgress"),  # blocked: unschedulable
        ("Progressing", "InProgress"),  # training
        ("Healthy", "Current"),  # done
    ]

    body["spec"]["suspend"] = True
    body["metadata"]["generation"] = 2
    body["status"] = {}
    step(Observed())
    assert seen[-1] == ("Suspended", "Current")

    broken = copy.deepcopy(body)
    broken["spec"]["search"]["population"] = 1  # the API server would reject it; an old CRD might not
    broken["status"] = {}
    decision = decide(broken, Observed())
    broken["status"] = decision.status
    assert (argocd_health(broken)["status"], flux_health(broken, flux_exprs())) == ("Degraded", "Failed")
    assert "InvalidSpec" in argocd_health(broken)["message"]
