"""The campaign comparison: per-target Pareto fronts on one plot, winners per target x budget, and
the structures that are good everywhere -> ``report.json``, ``pareto.png``, ``report.html``.

Built from the cells' result.json files (each cell's own Pareto front and best list), so it can be
redrawn at any time from a campaign folder (locally DIR/cells/, on a cluster the claim).
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from denas.search.checkpoint import atomic_write_json
from denas.status import SHARED_COUNTS

log = logging.getLogger(__name__)


def _front(points: list[dict], y: str = "de_score", higher_is_better: bool = True) -> list[dict]:
    """Non-dominated points: ``y`` (DE-Score, or a short-training metric) at its best, measured
    latency minimised."""
    sign = 1.0 if higher_is_better else -1.0
    ok = [p for p in points if p.get("latency_ms") is not None and p.get(y) is not None]
    front = [
        p
        for p in ok
        if not any(
            sign * q[y] >= sign * p[y]
            and q["latency_ms"] <= p["latency_ms"]
            and (q[y], q["latency_ms"]) != (p[y], p["latency_ms"])
            for q in ok
        )
    ]
    return sorted(front, key=lambda p: p["latency_ms"])


def _selection_points(cell: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[list[dict], dict]:
    """A cell's rung-0 selection runs (every trained candidate, the same epochs: comparable across
    the cells of a campaign) with their latency on the cell's pool; and what the metric is."""
    sel = result.get("selection") or {}
    runs = [r for r in sel.get("runs") or [] if r.get("rung") == 0 and r.get("status") == "ok"]
    if not runs:
        return [], {}
    measured = sel.get("candidates") or {}
    points = [
        {
            "hash": r["hash"],
            "metric": r["metric"],
            "latency_ms": (measured.get(r["hash"]) or {}).get("latency_ms"),
            "params": (measured.get(r["hash"]) or {}).get("params"),
            "cell": cell["name"],
        }
        for r in runs
    ]
    about = {
        "name": sel.get("metric_name"),
        "higherIsBetter": bool(sel.get("higher_is_better", True)),
        "epochs": runs[0].get("epochs"),
    }
    return points, about


def build_report(
    cells: Sequence[Mapping[str, Any]], results: Mapping[str, dict], status: Mapping[str, Any]
) -> dict:
    """``cells``: the campaign status' cell lines; ``results``: cell name -> its result.json."""
    points: dict[str, dict[str, dict]] = {}
    trained: dict[str, dict[str, dict]] = {}
    metric: dict = {}
    winners = []
    for c in cells:
        result = results.get(c["name"]) or {}
        cell_points, about = _selection_points(c, result)
        for p in cell_points:
            trained.setdefault(c["target"], {}).setdefault(p["hash"], p)
        metric = metric or about
        for r in [*result.get("pareto", []), *result.get("best", [])]:
            p = {
                "hash": r["hash"],
                "de_score": r["scores"].get("de_score"),
                "latency_ms": r.get("latency_ms"),
                "params": r.get("params"),
                "cell": c["name"],
            }
            points.setdefault(c["target"], {})[r["hash"]] = p
        best = (result.get("best") or [None])[0]
        row = {"target": c["target"], "constraints": c["constraints"], "cell": c["name"], "phase": c["phase"]}
        if c.get("domain"):
            row["domain"] = c["domain"]
        if best:
            row.update(
                hash=best["hash"],
                de_score=best["scores"].get("de_score"),
                latency_ms=best.get("latency_ms"),
                params=best.get("params"),
                flops=best.get("flops"),
            )
            if (best.get("selection") or {}).get("metric") is not None:  # the selection stage's pick
                row["selection_metric"] = best["selection"]["metric"]
                row["selection_epochs"] = best["selection"].get("epochs")
                row["train_free_rank"] = best.get("trainFreeRank")
        if "metric" in c:
            row["metric"] = c["metric"]
        winners.append(row)
    report = {
        "fronts": {t: _front(list(p.values())) for t, p in points.items()},
        "winners": winners,
        "goodEverywhere": list(status.get("goodEverywhere", [])),
        **{key: status.get(key, 0) for key in SHARED_COUNTS},
        "progress": status.get("progress", {}),
    }
    if trained:  # the cells ran the selection stage: the short-training metric vs latency, per target
        up = metric.get("higherIsBetter", True)
        report["selectionMetric"] = metric
        report["selectionFronts"] = {t: _front(list(p.values()), "metric", up) for t, p in trained.items()}
    return report


def plot_fronts(report: Mapping[str, Any], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency of the engine
        return False
    panels = [("fronts", "de_score", "DE-Score (train-free)")]
    if report.get("selectionFronts"):
        m = report.get("selectionMetric") or {}
        label = f"{m.get('name') or 'metric'} after {m.get('epochs')} epoch(s) of short training"
        panels.append(("selectionFronts", "metric", label))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    good = set(report.get("goodEverywhere", []))
    for ax, (key, y, label) in zip(axes[0], panels):
        for target, front in report[key].items():
            xs = [p["latency_ms"] for p in front]
            ys = [p[y] for p in front]
            ax.plot(xs, ys, marker="o", label=target, drawstyle="steps-post")
            for p in front:
                if p["hash"] in good:
                    ax.scatter([p["latency_ms"]], [p[y]], s=120, facecolors="none", edgecolors="black")
        ax.set_xlabel("measured latency (ms, on the target's pool)")
        ax.set_ylabel(label)
        ax.legend(title="target")
        ax.grid(alpha=0.3)
    fig.suptitle(title + " (circled: good on every target)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_report(out: Path, name: str, report: Mapping[str, Any]) -> Path:
    """report.json + pareto.png + a self-contained report.html in ``out``."""
    atomic_write_json(out / "report.json", report)
    png = out / "pareto.png"
    image = ""
    try:
        if plot_fronts(report, png, f"campaign {name}"):
            image = f'<img alt="Pareto fronts" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'
    except Exception as e:  # noqa: BLE001 - a figure must never lose a finished campaign
        log.warning("could not draw the campaign plot: %s", e)
    columns = [
        "target",
        "constraints",
        "domain",
        "phase",
        "hash",
        "de_score",
        "latency_ms",
        "params",
        "selection_metric",
        "selection_epochs",
        "train_free_rank",
        "metric",
    ]
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(w.get(k)))}</td>" for k in columns) + "</tr>"
        for w in report["winners"]
    )
    right = ""
    if report.get("selectionFronts"):
        m = report.get("selectionMetric") or {}
        right = (
            f" Right: the {html.escape(str(m.get('name') or 'metric'))} every selection candidate reached after "
            f"{html.escape(str(m.get('epochs')))} epoch(s) of short training (its first rung), against the same latency."
        )
    good = (
        ", ".join(report.get("goodEverywhere") or [])
        or "none (no structure is among the best on every target)"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>DeNAS campaign {html.escape(name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style></head>
<body><h1>Campaign {html.escape(name)}</h1>
<p>Cells {html.escape(report["progress"].get("summary", ""))} succeeded. DE-Scores computed
{report["scoresComputed"]}, reused from the score store {report["scoresReused"]}; selection runs
trained {report["selectionRunsComputed"]}, reused {report["selectionRunsReused"]}.</p>
<h2>Pareto fronts per target</h2>
<p>Left: the train-free DE-Score against the latency measured on each target's pool.{right}
Columns <code>selection_metric</code> (at <code>selection_epochs</code>) and <code>train_free_rank</code>:
how the selection stage's winner trained and where the DE-Score ranked it; <code>metric</code>:
its full training.</p>{image}
<h2>Winners per target x budget</h2><table><tr>{"".join(f"<th>{c}</th>" for c in columns)}</tr>{rows}</table>
<h2>Good everywhere</h2><p>{html.escape(good)}</p>
<pre>{html.escape(json.dumps(report["fronts"], indent=1)[:20000])}</pre></body></html>
"""
    (out / "report.html").write_text(page)
    return out / "report.html"
