"""The API server's refusals of the job's pods reach the status in its own words, told apart.

The emulator answers pod creates the way ResourceQuota, LimitRange, PodSecurity admission and RBAC
do (status and message as kube-apiserver writes them), and validates quantities as pod validation
does (422).
"""

from __future__ import annotations

import time

import pytest
from test_operator_lifecycle import spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

QUOTA_MSG = (
    'pods "{pod}" is forbidden: exceeded quota: compute-resources, requested: limits.cpu=2, '
    "used: limits.cpu=8, limited: limits.cpu=8"
)
PSS_MSG = (
    'pods "{pod}" is forbidden: violates PodSecurity "restricted:latest": runAsUser=0 '
    "(pod must not set runAsUser=0)"
)
LIMIT_MSG = 'pods "{pod}" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
RBAC_MSG = (
    'pods is forbidden: User "system:serviceaccount:denas-system:denas-operator" cannot create '
    'resource "pods" in API group "" in the namespace "{ns}"'
)


def _blocked(cluster, job_name, reason):
    return cluster.wait(
        f"Blocked={reason}",
        lambda: (c := cluster.condition(job_name, "Blocked")) and c["reason"] == reason and c,
        30,
    )


@pytest.mark.parametrize(
    ("template", "reason", "fix"),
    [
        (QUOTA_MSG, "QuotaExceeded", "kubectl describe resourcequota"),
        (PSS_MSG, "PodSecurityRejected", "pod-security.kubernetes.io"),
        (LIMIT_MSG, "LimitRangeRejected", "kubectl describe limitrange"),
        (RBAC_MSG, "Forbidden", "RBAC.md"),
    ],
    ids=["quota", "podsecurity", "limitrange", "rbac"],
)
def test_quota_forbidden_and_other_403s_are_told_apart_verbatim(
    cluster, operator, job_name, template, reason, fix
):
    if cluster.emulator is None:
        pytest.skip("needs an API server that can be told to refuse pod creates")
    message = template.format(pod=f"{job_name}-search-0", ns=cluster.namespace)
    key = ("pods", cluster.namespace)
    cluster.emulator.rejections[key] = (403, "Forbidden", message)
    try:
        cluster.apply(cluster.job(job_name, spec(cluster, training={"enabled": False})))
        blocked = _blocked(cluster, job_name, reason)
        assert message in blocked["message"], blocked["message"]  # the API server's words, verbatim
        assert fix in blocked["message"]
        assert not cluster.pods(job_name)
        assert operator.alive()
    finally:
        cluster.emulator.rejections.pop(key, None)
    cluster.wait_phase(job_name, "Succeeded", 60)  # the quota freed up: retried, not stuck
    assert cluster.condition(job_name, "Blocked")["status"] == "False"


def test_unprocessable_pod_fails_the_job_with_the_servers_message_without_retrying(
    cluster, operator, job_name
):
    if cluster.emulator is None:
        pytest.skip("the emulator's pod validation is what answers 422 here")
    bad = spec(cluster, training={"enabled": False})
    bad["search"]["resources"] = {"limits": {"cpu": "lots"}}  # passes the CRD's schema
    cluster.apply(cluster.job(job_name, bad))
    st = cluster.wait_phase(job_name, "Failed", 30)
    failed = cluster.condition(job_name, "Failed")
    assert failed["reason"] == "Invalid"
    assert 'resources.limits[cpu]: Invalid value: "lots"' in failed["message"]
    assert "spec.search.resources" in failed["message"]
    assert st["phase"] == "Failed"

    def pod_creates() -> int:
        return sum(
            v
            for (action, plural, _), v in cluster.emulator.request_counts.items()
            if plural == "pods" and "create" in action.lower()
        )

    before = pod_creates()
    time.sleep(6)  # more than one timer period: a retry loop would create again
    assert pod_creates() == before
    assert operator.alive()
    # Fixing the field re-evaluates the job.
    cluster.patch_spec(job_name, {"search": {"resources": {"limits": {"cpu": "1"}}}})
    cluster.wait("the edit to be seen", lambda: cluster.status(job_name).get("observedGeneration") == 2)
    cluster.wait_phase(job_name, "Succeeded", 60)
