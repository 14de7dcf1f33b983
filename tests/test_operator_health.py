"""Peering pause, readiness and the metrics a paused replica exports (pure parts, no Kubernetes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from denas_operator import metrics as M
from denas_operator.health import Readiness
from denas_operator.peering import is_paused
from prometheus_client import generate_latest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1, lifetime: int = 60) -> dict:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat(),
    }


def test_peering_pause_follows_kopfs_rule():
    assert not is_paused({"me": peer(10)}, "me", 10, NOW)
    assert not is_paused({"me": peer(10), "low": peer(5)}, "me", 10, NOW)
    assert is_paused({"me": peer(10), "high": peer(20)}, "me", 10, NOW)
    assert is_paused({"me": peer(10), "twin": peer(10)}, "me", 10, NOW)  # kopf pauses on a tie
    assert not is_paused({"me": peer(10), "dead": peer(20, seen_ago=120)}, "me", 10, NOW)


def _series() -> str:
    return generate_latest().decode()


def test_a_paused_replica_exports_no_stale_gauges_and_resumes_them():
    jm = M.JobMetrics()
    status = {"phase": "Searching", "search": {"generation": 3, "generations": 9}}
    jm.observe("team-a", "paused-job", status)
    assert 'denas_job_search_generation{denasjob="paused-job",denasjob_namespace="team-a"} 3.0' in _series()
    jm.pause()
    text = _series()
    assert 'denasjob="paused-job"' not in text
    assert not [line for line in text.splitlines() if line.startswith("denas_jobs{")]
    jm.observe("team-a", "paused-job", {**status, "search": {"generation": 4}})  # ignored while paused
    assert 'denasjob="paused-job"' not in _series()
    jm.resume({("team-a", "paused-job"): {**status, "search": {"generation": 5}}})
    text = _series()
    assert 'denas_job_search_generation{denasjob="paused-job",denasjob_namespace="team-a"} 5.0' in text
    assert 'denas_jobs{phase="Searching"}' in text
    jm.forget("team-a", "paused-job")


def test_readiness_means_started_and_caught_up_or_standby():
    r = Readiness()
    assert r.state()[0] is False
    r.started.set()
    assert r.state() == (False, "starting: the jobs are not listed yet")
    r.expect({("ns", "a"), ("ns", "b")})
    ok, why = r.state()
    assert not ok and "2 job(s)" in why
    r.reconciled(("ns", "a"))
    r.reconciled(("ns", "b"))
    assert r.state() == (True, "watching and caught up")
    r.expect({("ns", "c")})
    r.paused = True
    assert r.state()[0] is True and "standby" in r.state()[1]
