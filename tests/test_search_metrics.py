"""What the PodMonitor scrapes from a search pod: `denas search --metrics-port` exports the series
docs/metrics.md and the dashboard name (the operator starts every search pod with it)."""

from __future__ import annotations

import urllib.request

from search_support import FAKE, config, free_port

from denas.search import run_search
from denas.search.evaluator import load_scorer
from denas.search.metrics import SearchMetrics


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("denas_search"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_a_search_exports_its_four_series_without_pod_or_hash_labels(tmp_path):
    port = free_port()
    metrics = SearchMetrics(port)
    try:
        result = run_search(
            config(population=4, generations=2),
            tmp_path,
            scorer=load_scorer(FAKE),
            metrics=metrics,
            plots=False,
        )
        values = _scrape(port)
    finally:
        metrics.close()
    assert values["denas_search_candidates_scored_total"] == result["evaluated"] > 0
    assert values["denas_search_score_seconds_count"] == result["evaluated"]
    assert values["denas_search_best_score"] == result["best"][0]["fitness"]
    assert values["denas_search_generation"] == 2
    # Every series is unlabelled except histogram buckets and the selection runs' status: no pod
    # names or structure hashes.
    labelled = [
        name
        for name in values
        if "{" in name
        and "_bucket{" not in name
        and not name.startswith("denas_search_selection_runs_total{status=")
    ]
    assert not labelled, labelled


def test_selection_runs_are_counted_by_status_and_the_rung_is_published():
    from prometheus_client import generate_latest

    metrics = SearchMetrics()
    metrics.observe_selection({"status": "ok", "train_s": 0.5})
    metrics.observe_selection({"status": "failed", "train_s": 0.1})
    # taken from a campaign's store: counted apart and not timed (nothing was trained here)
    metrics.observe_selection({"status": "ok", "train_s": 0.0, "source": "store"})
    metrics.set_selection(rung=2, done=1, total=2)
    text = generate_latest(metrics.registry).decode()
    assert 'denas_search_selection_runs_total{status="ok"} 1.0' in text
    assert 'denas_search_selection_runs_total{status="failed"} 1.0' in text
    assert 'denas_search_selection_runs_total{status="reused"} 1.0' in text
    assert "denas_search_selection_train_seconds_count 2.0" in text
    assert "denas_search_selection_rung 2.0" in text and "denas_search_selection_rung_done 1.0" in text
