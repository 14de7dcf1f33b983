"""Helpers shared by the shipping tests (deploy/, the chart, GitOps examples).

Every manifest the project ships is checked the same way: Kubernetes' own OpenAPI schemas
(kubernetes-validate) for built-in kinds, the CRD's schema for kinds whose CRD we ship, and a
structural check for prometheus-operator kinds (their CRDs are not in kubernetes-validate's set).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# The oldest Kubernetes minor we support and a current one.
KUBE_VERSIONS = ("1.30", "1.33")
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor"}


def load_docs(source: str | Path) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a file (Path) or a string."""
    text = source.read_text() if isinstance(source, Path) else source
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` (kustomize is built into kubectl; no cluster is contacted)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl): cannot build the kustomizations")
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return load_docs(proc.stdout)


def _shipped_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD in deploy/crds/."""
    schemas = {}
    for path in sorted((ROOT / "deploy" / "crds").glob("*.yaml")):
        for crd in load_docs(path):
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def check_monitoring_object(obj: dict[str, Any]) -> list[str]:
    """Structural check of a ServiceMonitor / PodMonitor (monitoring.coreos.com/v1)."""
    errors = []
    name = obj.get("metadata", {}).get("name")
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"{obj['kind']} {name}: apiVersion must be monitoring.coreos.com/v1")
    if not name:
        errors.append(f"{obj['kind']}: metadata.name is required")
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        errors.append(f"{obj['kind']} {name}: spec.selector needs matchLabels or matchExpressions")
    endpoints_key = "endpoints" if obj["kind"] == "ServiceMonitor" else "podMetricsEndpoints"
    endpoints = spec.get(endpoints_key)
    if not isinstance(endpoints, list) or not endpoints:
        errors.append(f"{obj['kind']} {name}: spec.{endpoints_key} must be a non-empty list")
    for i, endpoint in enumerate(endpoints or []):
        if not isinstance(endpoint.get("port"), str):
            errors.append(f"{obj['kind']} {name}: spec.{endpoints_key}[{i}].port must name a port")
        unknown = set(endpoint) - {
            "port",
            "path",
            "interval",
            "scrapeTimeout",
            "scheme",
            "honorLabels",
            "relabelings",
        }
        if unknown:
            errors.append(
                f"{obj['kind']} {name}: spec.{endpoints_key}[{i}] has unexpected keys {sorted(unknown)}"
            )
    ns_selector = spec.get("namespaceSelector")
    if ns_selector is not None and not (set(ns_selector) <= {"any", "matchNames"}):
        errors.append(f"{obj['kind']} {name}: spec.namespaceSelector takes only any / matchNames")
    return errors


def validation_errors(obj: dict[str, Any], versions: Iterable[str] = KUBE_VERSIONS) -> list[str]:
    """Why the API server of each Kubernetes version would reject `obj` (empty list: it would not)."""
    kind = obj.get("kind")
    name = obj.get("metadata", {}).get("name")
    if kind in MONITORING_KINDS:
        return check_monitoring_object(obj)
    if obj.get("apiVersion") == "denas.io/v1alpha1" and kind == "DeNASCampaign":
        from denas.campaign.spec import CampaignValidationError, load_campaign

        try:
            load_campaign(obj)
        except CampaignValidationError as error:
            return [str(error)]
        return []
    if obj.get("apiVersion") == "denas.io/v1alpha1":
        from denas.job import JobValidationError, load_job

        try:
            load_job(obj)
        except JobValidationError as error:
            return [str(error)]
        return []
    custom = _shipped_crd_schemas().get((obj.get("apiVersion"), kind))
    if custom is not None:
        validator = jsonschema.Draft7Validator(custom)
        return [f"{kind} {name}: {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{kind} {name} (Kubernetes {version}): {error.json_path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{kind} {name}: {error.message}")
    return errors


def assert_valid(objects: Iterable[dict[str, Any]], versions: Iterable[str] = KUBE_VERSIONS) -> None:
    errors = [e for obj in objects for e in validation_errors(obj, versions)]
    assert not errors, "invalid manifests:\n  " + "\n  ".join(errors)


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rules_by_resource(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    """RBAC rules flattened to {"group/resource": verbs} so that the layout of rules does not matter."""
    flat: dict[str, set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                flat.setdefault(f"{group}/{resource}", set()).update(rule["verbs"])
    return flat


METRIC_DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(denas_\w+)\"")


def exported_series() -> dict[str, str]:
    """Every series name the operator and the pods expose -> the file that defines it.

    prometheus_client appends `_total` to counters and exposes `_bucket/_sum/_count` for
    histograms, so those are the names a query must use.
    """
    series: dict[str, str] = {}
    for path in [*(ROOT / "denas").rglob("*.py"), *(ROOT / "operator").rglob("*.py")]:
        for kind, name in METRIC_DEFINITION.findall(path.read_text()):
            where = str(path.relative_to(ROOT))
            if kind == "Counter":
                series[name if name.endswith("_total") else f"{name}_total"] = where
            elif kind in ("Histogram", "Summary"):
                for suffix in ("_bucket", "_sum", "_count"):
                    series[name + suffix] = where
            else:
                series[name] = where
    return series
