"""Deleting DeNASJobs (and so uninstalling) never waits on their children."""

from __future__ import annotations

import time

import pytest
from test_operator_lifecycle import spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_uninstall_job_deletion_does_not_hang_when_its_pods_cannot_be_deleted(cluster, operator, job_name):
    if cluster.emulator is None:
        pytest.skip("needs an API server that can be told to fail pod deletes")
    cluster.apply(cluster.job(job_name, spec(cluster, gens=40, gen_s=0.5)))
    cluster.wait(
        "running search pods",
        lambda: any(p.status.phase == "Running" for p in cluster.pods(job_name).values()),
    )
    key = ("pods", cluster.namespace)
    cluster.emulator.delete_rejections[key] = (500, "InternalError", "etcdserver: request timed out")
    try:
        started = time.monotonic()
        cluster.delete(job_name)
        # The finalizer is released although every pod delete fails (it was retried forever).
        cluster.wait("the job to go", lambda: cluster.get(job_name) is None, 25)
        assert time.monotonic() - started < 25
        assert operator.alive()
    finally:
        cluster.emulator.delete_rejections.pop(key, None)
    # The owner references take the children with the job.
    cluster.wait("every child to go", lambda: not cluster.children(job_name), 30)
