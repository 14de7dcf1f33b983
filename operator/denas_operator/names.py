"""Deterministic names, labels and in-pod paths of a DeNASJob's children (one place, no logic).

Names are derived from the job's name only, so a restarted operator finds what its predecessor
created and a second create of the same child answers 409, which the operator treats as success.
"""

from __future__ import annotations

GROUP = "denas.io"
VERSION = "v1alpha1"
PLURAL = "denasjobs"
KIND = "DeNASJob"
API_VERSION = f"{GROUP}/{VERSION}"
CAMPAIGN_PLURAL = "denascampaigns"  # a DeNASCampaign owns one DeNASJob per matrix cell
CAMPAIGN_KIND = "DeNASCampaign"

# Labels on every child; selectors and the operator's indexes use them.
LABEL_JOB = "denas.io/job-name"
LABEL_ROLE = "denas.io/role"  # search | train-master | train-worker | spec | result | worker-rbac
LABEL_RANK = "denas.io/rank"
# Pods whose spec-derived template changed are replaced. A hash of the job's spec, never of the
# builders' output: operator upgrades and env (default image, uid) must not restart running jobs.
# (The key is new: pods of operators before 0.2 carry "denas.io/template-hash" and are left be.)
ANNOTATION_TEMPLATE_HASH = "denas.io/spec-template-hash"
ANNOTATION_SPEC_HASH = "denas.io/spec-hash"  # the job.yaml a spec ConfigMap holds

ROLE_SEARCH = "search"
ROLE_TRAIN_MASTER = "train-master"
ROLE_TRAIN_WORKER = "train-worker"
ROLE_SPEC = "spec"
ROLE_RESULT = "result"
ROLE_WORKER_RBAC = "worker-rbac"

# In-pod layout. The job manifest (defaults applied) arrives as a mounted ConfigMap; state lives
# under /var/lib/denas/<subPath or job name>; the whole PVC (or an emptyDir) is mounted at /var/lib/denas.
SPEC_DIR = "/etc/denas/job"
SPEC_KEY = "job.yaml"
RESULT_DIR = "/etc/denas/result"
RESULT_KEY = "result.json"
METRICS_KEY = "metrics.json"
SEARCH_PROGRESS_KEY = "search-progress"
STATE_ROOT = "/var/lib/denas"
TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"

SEARCH_PORT = 29500
TRAIN_PORT = 23456
METRICS_PORT = 9400  # container port "metrics" of search and training pods (PodMonitor)
METRICS_PORT_NAME = "metrics"


def search_pod(job: str, index: int) -> str:
    return f"{job}-search-{index}"


def search_service(job: str) -> str:
    return f"{job}-search"


def train_pod(job: str, node_rank: int) -> str:
    return f"{job}-train-master-0" if node_rank == 0 else f"{job}-train-worker-{node_rank - 1}"


def train_service(job: str) -> str:
    return f"{job}-train"


def spec_configmap(job: str) -> str:
    return f"{job}-spec"


def result_configmap(job: str) -> str:
    return f"{job}-result"


def worker_account(job: str) -> str:
    """ServiceAccount, Role and RoleBinding of the job's pods when spec.serviceAccountName is unset."""
    return f"{job}-worker"


def pytorchjob(job: str) -> str:
    return f"{job}-train"


def state_subpath(job: str, spec: dict) -> str:
    return (spec.get("storage") or {}).get("subPath") or job


def state_dir(job: str, spec: dict) -> str:
    return f"{STATE_ROOT}/{state_subpath(job, spec)}"


# A DeNASCampaign's report (campaign_report.py): one Pod and one ConfigMap, both `<campaign>-report`;
# the report lands in `<claim>/<campaign>-report/`.
ROLE_CAMPAIGN_REPORT = "campaign-report"
ANNOTATION_REPORT_KEY = "denas.io/report-key"  # the finished cells' results the report draws
CAMPAIGN_DIR = "/etc/denas/campaign"  # the report pod's mounted status.json
CAMPAIGN_STATUS_KEY = "status.json"


def campaign_report(campaign: str) -> str:
    """The report Pod, its ConfigMap, and the report's folder on the claim."""
    return f"{campaign}-report"
