"""The report folder of a local run: PNG plots, one self-contained HTML page, a terminal summary.

Plots are drawn from what the run recorded (progress events, result.json, status.json), so a
report can be rebuilt from a finished output directory at any time.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def make_plots(out: Path) -> list[Path]:
    """search_curve.png, pareto.png, training_curve.png under out/plots (those with data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    made: list[Path] = []

    by_generation: dict[int, dict[str, Any]] = {}
    for e in _events(out / "logs" / "search-events.jsonl"):
        if "generation" in e and e.get("best_score") is not None:
            by_generation[int(e["generation"])] = e  # a resumed run repeats a generation: keep the last
    if by_generation:
        gens = sorted(by_generation)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(
            [by_generation[g].get("evaluated", g) for g in gens],
            [by_generation[g]["best_score"] for g in gens],
            marker="o",
        )
        ax.set_xlabel("candidates scored")
        ax.set_ylabel("best DE-Score")
        ax.set_title("Search curve")
        ax.grid(alpha=0.3)
        made.append(_save(fig, plots / "search_curve.png"))

    result_file = out / "result.json"
    if result_file.exists():
        result = json.loads(result_file.read_text())
        points = result.get("archive") or result.get("pareto") or []
        points = [*points, *result.get("best", [])]
        pts = [
            (p["latency_ms"], p["scores"]["de_score"])
            for p in points
            if p.get("latency_ms") is not None and p.get("scores", {}).get("de_score") is not None
        ]
        if pts:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.scatter(*zip(*pts, strict=True), s=14, alpha=0.5, label="candidates")
            front = [
                (p["latency_ms"], p["scores"]["de_score"])
                for p in result.get("pareto", [])
                if p.get("latency_ms") is not None
            ]
            if front:
                front.sort()
                ax.plot(*zip(*front, strict=True), color="C3", marker="o", label="Pareto front")
            best = result.get("best", [])
            if best and best[0].get("latency_ms") is not None:
                ax.scatter(
                    [best[0]["latency_ms"]],
                    [best[0]["scores"]["de_score"]],
                    color="C2",
                    s=80,
                    marker="*",
                    label="best",
                    zorder=3,
                )
            ax.set_xlabel("measured latency (ms)")
            ax.set_ylabel("DE-Score")
            ax.set_title("Score vs latency")
            ax.legend()
            ax.grid(alpha=0.3)
            made.append(_save(fig, plots / "pareto.png"))

    by_epoch: dict[int, dict[str, Any]] = {}
    for e in _events(out / "logs" / "training-events.jsonl"):
        if "epoch" in e:
            by_epoch[int(e["epoch"])] = e
    if by_epoch:
        epochs = sorted(by_epoch)
        fig, ax = plt.subplots(figsize=(6, 4))
        if any(by_epoch[e].get("loss") is not None for e in epochs):
            ax.plot(epochs, [by_epoch[e].get("loss") for e in epochs], marker="o", label="loss", color="C0")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        metric_name = next(
            (by_epoch[e].get("metric_name") for e in epochs if by_epoch[e].get("metric_name")), "metric"
        )
        if any(by_epoch[e].get("metric") is not None for e in epochs):
            ax2 = ax.twinx()
            ax2.plot(
                epochs, [by_epoch[e].get("metric") for e in epochs], marker="s", color="C1", label=metric_name
            )
            ax2.set_ylabel(metric_name)
        ax.set_title("Training curve")
        ax.grid(alpha=0.3)
        made.append(_save(fig, plots / "training_curve.png"))
    return made


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def summary_rows(status: dict[str, Any], trained_rank: int = 0) -> list[dict[str, Any]]:
    """One row per best structure; `trained_rank` (spec.training.structureRank) carries the metric."""
    rows = []
    for s in status.get("bestStructures", []):
        row = {
            "rank": s.get("rank"),
            "hash": s.get("hash"),
            "de_score": s.get("deScore"),
            "params": s.get("params"),
            "flops": s.get("flops"),
            "latency_ms": s.get("latencyMs"),
            "trained": "",
        }
        training = status.get("training", {})
        if s.get("rank") == trained_rank and "metric" in training:
            row["trained"] = f"{training.get('metricName', 'metric')}={training['metric']:.4f}"
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v / 1e6:.3f}M" if abs(v) >= 1_000_000 else f"{v / 1e3:.1f}k"
    return str(v)


def summary_table(status: dict[str, Any], trained_rank: int = 0) -> str:
    rows = summary_rows(status, trained_rank)
    headers = ["rank", "hash", "de_score", "params", "flops", "latency_ms", "trained"]
    cells = [[_fmt(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def write_html(out: Path, job_name: str, plots: list[Path], trained_rank: int = 0) -> Path:
    """report.html: the summary, the conditions and every plot inlined (no external files)."""
    status = json.loads((out / "status.json").read_text())
    rows = summary_rows(status, trained_rank)
    headers = ["rank", "hash", "de_score", "params", "flops", "latency_ms", "trained"]
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r[h]))}</td>" for h in headers) + "</tr>" for r in rows
    )
    conditions = "".join(
        f"<tr><td>{html.escape(c['type'])}</td><td>{c['status']}</td><td>{html.escape(c.get('reason', ''))}</td>"
        f"<td>{html.escape(c.get('message', ''))}</td></tr>"
        for c in status.get("conditions", [])
    )
    images = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{p.stem.replace('_', ' ')}</figcaption></figure>"
        for p in plots
    )
    best = status.get("bestStructures", [{}])[0].get("structure") if status.get("bestStructures") else None
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DeNAS report: {html.escape(job_name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; }}
th {{ background: #f3f3f3; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }}
img {{ max-width: 560px; border: 1px solid #ddd; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; }}
.phase {{ font-weight: bold; }}
</style></head><body>
<h1>DeNAS report: {html.escape(job_name)}</h1>
<p>Phase: <span class="phase" id="phase">{html.escape(status.get("phase", ""))}</span>
&middot; started {html.escape(status.get("startTime", ""))} &middot; finished {html.escape(status.get("completionTime", "-"))}</p>
<h2>Best structures</h2>
<table id="best"><tr>{"".join(f"<th>{h}</th>" for h in headers)}</tr>{table}</table>
<h2>Plots</h2>
<div id="plots">{images}</div>
<h2>Best structure</h2>
<pre>{html.escape(json.dumps(best, indent=2))}</pre>
<h2>Conditions</h2>
<table><tr><th>type</th><th>status</th><th>reason</th><th>message</th></tr>{conditions}</table>
<script>
// Lets a headless browser (and the test suite) confirm every plot decoded.
window.addEventListener("load", () => {{
  const imgs = Array.from(document.images);
  document.body.dataset.imagesLoaded = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = imgs.length;
}});
</script>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
