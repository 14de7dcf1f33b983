"""The in-pod reporter: distinct keys per role/rank, throttling, bounded results, never fatal."""

from __future__ import annotations

import json
import time

from denas.kube_report import Reporter, bound_result, reporter_from_env


class FakeCoreApi:
    def __init__(self, fail: bool = False):
        self.patches: list[dict] = []
        self.fail = fail

    def patch_namespaced_config_map(self, name, namespace, body, **_):
        if self.fail:
            raise RuntimeError("403 Forbidden")
        self.patches.append(body["data"])


def test_reporter_is_inactive_outside_operator_pods(monkeypatch):
    monkeypatch.delenv("DENAS_RESULT_CONFIGMAP", raising=False)
    assert reporter_from_env() is None
    monkeypatch.setenv("DENAS_RESULT_CONFIGMAP", "j-result")
    monkeypatch.setenv("DENAS_NAMESPACE", "ns")
    monkeypatch.setenv("DENAS_ROLE", "train")
    monkeypatch.setenv("RANK", "3")
    r = reporter_from_env()
    assert (r.configmap, r.namespace, r.progress_key, r.result_key) == (
        "j-result",
        "ns",
        "train-progress-3",
        "metrics-3.json",
    )


def test_roles_and_ranks_write_distinct_keys():
    keys = {
        Reporter("c", "n", "search", 0).progress_key,
        Reporter("c", "n", "search", 1).progress_key,
        Reporter("c", "n", "train", 0).progress_key,
        Reporter("c", "n", "train", 1).progress_key,
    }
    assert keys == {"search-progress", "search-progress-1", "train-progress-0", "train-progress-1"}
    assert Reporter("c", "n", "search", 0).result_key == "result.json"
    assert Reporter("c", "n", "train", 0).result_key == "metrics.json"


def test_progress_is_throttled_but_the_last_event_always_arrives():
    api = FakeCoreApi()
    r = Reporter("c", "n", api=api, interval_s=0.3)
    for gen in range(1, 6):
        r.progress({"generation": gen})
    assert len(api.patches) == 1  # the first goes out, the rest wait for the interval
    time.sleep(0.5)
    assert json.loads(api.patches[-1]["search-progress"])["generation"] == 5
    assert len(api.patches) == 2


def test_result_flushes_progress_first():
    api = FakeCoreApi()
    r = Reporter("c", "n", api=api, interval_s=60)
    r.progress({"generation": 1})
    r.progress({"generation": 2})
    r.result({"best": [{"hash": "a"}]})
    assert json.loads(api.patches[-2]["search-progress"])["generation"] == 2
    assert json.loads(api.patches[-1]["result.json"]) == {"best": [{"hash": "a"}]}


def test_errors_are_logged_never_raised(caplog):
    r = Reporter("c", "n", api=FakeCoreApi(fail=True), interval_s=0)
    r.progress({"generation": 1})
    r.result({"best": []})
    assert "could not report" in caplog.text and "patch" in caplog.text


def test_results_are_bounded_to_fit_a_configmap():
    big = {
        "best": [{"hash": str(i), "structure": {"w": "x" * 5000}} for i in range(400)],
        "history": ["y" * 1000] * 2000,
    }
    text = bound_result(big, max_best=50, max_bytes=100_000)
    out = json.loads(text)
    assert len(text.encode()) <= 100_000 and out["truncated"] is True and "history" not in out
    assert [b["hash"] for b in out["best"]] == [
        str(i) for i in range(len(out["best"]))
    ]  # best first, kept in order
    small = json.loads(bound_result({"best": [{"hash": str(i)} for i in range(80)]}, max_best=5))
    assert len(small["best"]) == 5
