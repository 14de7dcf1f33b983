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
    # Every series is unlabelled except the histogram's buckets: no pod names or structure hashes.
    labelled = [
        name for name in values if "{" in name and not name.startswith("denas_search_score_seconds_bucket")
    ]
    assert not labelled, labelled
