"""Refusals of the API server, classified (pure): reason, the server's words verbatim, the fix."""

from __future__ import annotations

import json

import pytest
from denas_operator.rejections import classify


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        (
            403,
            'pods "j-search-0" is forbidden: exceeded quota: q, requested: cpu=2, used: cpu=8, limited: cpu=8',
            "QuotaExceeded",
        ),
        (
            403,
            'pods "j-search-0" is forbidden: failed quota: q: must specify limits.cpu for: denas',
            "QuotaExceeded",
        ),
        (
            403,
            'pods "j-search-0" is forbidden: minimum memory usage per Container is 1Gi, but request is 512Mi',
            "LimitRangeRejected",
        ),
        (
            403,
            'pods "j-search-0" is forbidden: violates PodSecurity "restricted:latest": seccompProfile',
            "PodSecurityRejected",
        ),
        (403, 'admission webhook "policy.example.com" denied the request: no', "AdmissionRejected"),
        (
            403,
            'pods is forbidden: User "system:serviceaccount:a:b" cannot create resource "pods" in API group ""',
            "Forbidden",
        ),
        (
            422,
            'Pod "j-search-0" is invalid: spec.containers[0].resources.limits[cpu]: Invalid value: "lots"',
            "Invalid",
        ),
        (400, "quantities must match the regular expression", "Invalid"),
    ],
)
def test_quota_forbidden_admission_rbac_and_invalid_are_told_apart(status, message, reason):
    body = json.dumps({"kind": "Status", "message": message, "code": status})
    r = classify(status, body, "Pod", "team-a", "spec.search.resources")
    assert r is not None and r.reason == reason
    assert message in r.message  # verbatim
    assert r.invalid == (reason == "Invalid")


def test_conflicts_and_server_errors_are_not_refusals():
    assert classify(409, "{}", "Pod", "ns") is None
    assert classify(500, "{}", "Pod", "ns") is None
