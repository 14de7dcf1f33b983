"""dashboards/denas.json: a well-formed Grafana dashboard that queries only metrics the code exports."""

from __future__ import annotations

import json
import re

import helm_python as helm
import pytest
from deploy_support import ROOT, exported_series, kustomize_build, load_docs, one

DASHBOARD = ROOT / "dashboards" / "denas.json"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_dashboard_is_well_formed(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            expr = target["expr"]
            for opening, closing in ("()", "{}", "[]"):
                assert expr.count(opening) == expr.count(closing), expr
            assert set(re.findall(r"\$(\w+)", expr)) <= variables, expr


SEARCH_POD_METRICS = (
    "denas_search_candidates_scored_total",
    "denas_search_score_seconds",
    "denas_search_best_score",
)


def _missing_series(dashboard: dict, only_search_pods: bool) -> list[str]:
    series = exported_series()
    used = {name for expr in _queries(dashboard) for name in re.findall(r"\bdenas_\w+", expr)}
    used -= {"denasjob"}  # the label the PodMonitor relabels the pod's denas.io/job-name to
    used = {u for u in used if u.startswith(SEARCH_POD_METRICS) == only_search_pods}
    return sorted(used - set(series))


def test_every_queried_metric_is_exported_by_the_code(dashboard):
    missing = _missing_series(dashboard, only_search_pods=False)
    assert not missing, (
        f"the dashboard queries {missing}, which no Counter/Gauge/Histogram in denas/ or operator/ defines"
    )


def test_search_pod_metrics_the_dashboard_plots_are_exported(dashboard):
    missing = _missing_series(dashboard, only_search_pods=True)
    assert not missing, f"the dashboard queries {missing}, which denas/search does not define"


def test_dashboard_covers_the_operator_metrics(dashboard):
    from denas_operator import metrics

    used = " ".join(_queries(dashboard))
    defined = {
        m._name for m in vars(metrics).values() if hasattr(m, "_name") and m._name.startswith("denas_")
    }
    uncovered = sorted(name for name in defined if name not in used)
    assert not uncovered, f"operator metrics without a panel: {uncovered}"


def test_per_job_queries_use_labels_the_operator_sets(dashboard):
    from denas_operator import metrics

    labels_by_metric = {
        m._name: set(m._labelnames)
        for m in vars(metrics).values()
        if hasattr(m, "_labelnames") and hasattr(m, "_name")
    }
    for expr in _queries(dashboard):
        for name, selector in re.findall(r"\b(denas_\w+)\{([^}]*)\}", expr):
            if name in labels_by_metric:
                used = set(re.findall(r"(\w+)\s*=~?", selector))
                assert used <= labels_by_metric[name], (
                    f"{name}: labels {used - labels_by_metric[name]} not set"
                )


def test_pod_series_get_the_job_label_the_dashboard_filters_on():
    """Pod metrics carry no job label themselves: the PodMonitors relabel denas.io/job-name."""
    component = load_docs(ROOT / "deploy" / "components" / "monitoring" / "podmonitor.yaml")
    with helm.Chart.load(ROOT / "charts" / "denas-operator") as chart:
        rendered = chart.render({"metrics": {"podMonitor": {"enabled": True}}}, name="d", namespace="d")
    chart_monitor = load_docs(rendered["denas-operator/templates/podmonitor.yaml"])
    for monitor in component + chart_monitor:
        relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
        assert {
            "sourceLabels": ["__meta_kubernetes_pod_label_denas_io_job_name"],
            "targetLabel": "denasjob",
        } in relabel


def test_service_monitor_needs_no_honor_labels_as_no_label_collides_with_target_labels():
    from denas_operator import metrics

    objects = kustomize_build(ROOT / "deploy" / "overlays" / "monitoring")
    assert not one(objects, "ServiceMonitor")["spec"]["endpoints"][0].get("honorLabels")
    with helm.Chart.load(ROOT / "charts" / "denas-operator") as chart:
        rendered = chart.render({"metrics": {"serviceMonitor": {"enabled": True}}}, name="d", namespace="d")
    monitor = load_docs(rendered["denas-operator/templates/servicemonitor.yaml"])[0]
    assert not monitor["spec"]["endpoints"][0].get("honorLabels")
    labels = {label for m in vars(metrics).values() if hasattr(m, "_labelnames") for label in m._labelnames}
    assert not labels & {"job", "namespace", "instance", "pod", "service", "container", "endpoint"}, labels
    assert {"denasjob", "denasjob_namespace"} <= labels
