"""Prometheus metrics of DeNASCampaigns (prefix `denas_campaign_`; labels: denascampaign_namespace, denascampaign, phase)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

# Not `namespace`: Prometheus sets that on every target (ours would become `exported_namespace`).
LABELS = ["denascampaign_namespace", "denascampaign"]
CELLS = Gauge("denas_campaign_cells", "Cells of a campaign by phase of their DeNASJob.", [*LABELS, "phase"])
SCORES_COMPUTED = Gauge(
    "denas_campaign_scores_computed", "DE-Scores computed by the campaign's cells.", LABELS
)
SCORES_REUSED = Gauge(
    "denas_campaign_scores_reused", "DE-Scores a cell took from the campaign's score store.", LABELS
)
SELECTION_COMPUTED = Gauge(
    "denas_campaign_selection_runs_computed",
    "Selection-stage short-training runs trained by the campaign's cells.",
    LABELS,
)
SELECTION_REUSED = Gauge(
    "denas_campaign_selection_runs_reused",
    "Selection-stage runs a cell took from the campaign's store (trained by another cell).",
    LABELS,
)
#: status key -> the gauge that follows it
COUNT_GAUGES = {
    "scoresComputed": SCORES_COMPUTED,
    "scoresReused": SCORES_REUSED,
    "selectionRunsComputed": SELECTION_COMPUTED,
    "selectionRunsReused": SELECTION_REUSED,
}
ERRORS = Counter("denas_campaign_reconcile_errors_total", "Campaign reconciles that got an API error.")
CELL_PHASES = ("pending", "running", "succeeded", "failed")


def observe(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    progress = status.get("progress") or {}
    for phase in CELL_PHASES:
        CELLS.labels(namespace, name, phase).set(progress.get(phase, 0))
    for key, gauge in COUNT_GAUGES.items():
        gauge.labels(namespace, name).set(status.get(key, 0))


def forget(namespace: str, name: str) -> None:
    for phase in CELL_PHASES:
        try:
            CELLS.remove(namespace, name, phase)
        except KeyError:
            pass
    for gauge in COUNT_GAUGES.values():
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass
