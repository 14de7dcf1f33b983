"""The report of a local run: one self-contained HTML page and a terminal summary.

The page reads like a lab note, top to bottom: what failed (if anything), a summary of the job
(what was searched, on what hardware, time per stage, the winner), the full top-K table, the plots
with captions in words, then the details (structure, conditions). Everything is read from the run
folder (status.json, result.json, the run marker, plots/), so a report can be rebuilt at any time.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from denas.local.plots import CAPTIONS, make_plots, read_json, training_history

__all__ = ["human", "make_plots", "summary_rows", "summary_table", "write_html"]

HEADERS = ["rank", "hash", "de_score", "fitness", "params", "flops", "latency_ms", "trained"]
LABELS = {
    "rank": "rank",
    "hash": "structure",
    "de_score": "DE-Score",
    "fitness": "fitness",
    "params": "params",
    "flops": "FLOPs",
    "latency_ms": "latency (ms)",
    "trained": "trained",
}


def human(n: float | int | None, unit: str = "") -> str:
    """89.8k, 1.2M, 3.4G: counts the way people read them (three significant digits)."""
    if n is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            value = n / scale
            text = f"{value:.3g}" if value < 100 else f"{value:.0f}"
            return f"{text}{suffix}{unit}"
    return f"{n:g}{unit}"


def _fmt(key: str, v: Any) -> str:
    if v is None or v == "":
        return "-" if v is None else ""
    if key in ("params", "flops"):
        return human(v)
    if key == "latency_ms":
        return f"{v:.3g}" if v < 10 else f"{v:.1f}"
    if key in ("de_score", "fitness"):
        return f"{v:.4f}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 90:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def summary_rows(status: dict[str, Any], trained_rank: int = 0) -> list[dict[str, Any]]:
    """One row per best structure; `trained_rank` (spec.training.structureRank) carries the metric."""
    rows = []
    training = status.get("training", {})
    for s in status.get("bestStructures", []):
        row = {
            "rank": s.get("rank"),
            "hash": s.get("hash"),
            "de_score": s.get("deScore"),
            "fitness": s.get("fitness"),
            "params": s.get("params"),
            "flops": s.get("flops"),
            "latency_ms": s.get("latencyMs"),
            "trained": "",
        }
        if s.get("rank") == trained_rank and training.get("metric") is not None:
            row["trained"] = f"{training.get('metricName', 'metric')}={training['metric']:.4f}"
        rows.append(row)
    return rows


def summary_table(status: dict[str, Any], trained_rank: int = 0) -> str:
    rows = summary_rows(status, trained_rank)
    headers = [h for h in HEADERS if h != "fitness" or any(r["fitness"] is not None for r in rows)]
    cells = [[_fmt(h, r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _e(v: Any) -> str:
    return html.escape(str(v))


def _failure_html(status: dict[str, Any], out: Path) -> str:
    failed = next(
        (c for c in status.get("conditions", []) if c["type"] == "Failed" and c["status"] == "True"), None
    )
    if failed is None:
        return ""
    record = read_json(out / "logs" / "failure.json")
    tail = record.get("tail") or []
    where = ""
    if record.get("process"):
        rank = "" if record.get("rank") is None else f", rank {record['rank']}"
        where = (
            f"<p>Failing process: <code>{_e(record['process'])}</code>{_e(rank)}, exit code "
            f"{_e(record.get('exit_code'))}. Full log: <code>logs/{_e(record['process'])}.log</code></p>"
        )
    cause = record.get("cause") or failed.get("message", "")
    return (
        f'<section id="failure" class="failure"><h2>This run failed ({_e(failed.get("reason", ""))})</h2>'
        f'<p class="cause">{_e(cause)}</p>{where}'
        + (f"<pre>{_e(chr(10).join(tail))}</pre>" if tail else "")
        + "<p>Fix the cause and run the same command again: finished stages are kept.</p></section>"
    )


def _summary_html(status: dict[str, Any], out: Path, trained_rank: int) -> str:
    marker = read_json(out / ".denas-run.json")
    spec = marker.get("spec") or {}
    result = read_json(out / "result.json")
    search = spec.get("search") or {}
    constraints = spec.get("constraints") or {}
    space = (spec.get("searchSpace") or {}).get("preset")
    items: list[tuple[str, str]] = []
    what = f"{spec.get('domain', result.get('domain', '?'))} space" + (f" (preset {space})" if space else "")
    budget = (
        f"{search.get('strategy', result.get('strategy', '?'))}, population {search.get('population', '?')} "
        f"x {search.get('generations', result.get('generations', '?'))} generations"
    )
    scored = status.get("search", {}).get("evaluated", result.get("evaluated"))
    items.append(("Searched", f"{what}; {budget}" + (f"; {scored} candidates scored" if scored else "")))
    limits = [
        f"params &le; {human(constraints['maxParams'])}" if constraints.get("maxParams") else "",
        f"FLOPs &le; {human(constraints['maxFlops'])}" if constraints.get("maxFlops") else "",
        f"latency &le; {constraints['maxLatencyMs']:g} ms" if constraints.get("maxLatencyMs") else "",
    ]
    if any(limits):
        items.append(("Constraints", ", ".join(x for x in limits if x)))
    hw = result.get("hardware") or {}
    if hw:
        flags = ", ".join(hw.get("flags") or [])
        items.append(
            (
                "Hardware",
                _e(f"{hw.get('cpu_model', 'CPU')}, {hw.get('cores', '?')} cores")
                + (f" ({_e(flags)})" if flags else "")
                + _e(
                    f"; PyTorch {hw.get('torch', '?')}" + (f", IPEX {hw['ipex']}" if hw.get("ipex") else "")
                ),
            )
        )
    stages = status.get("stages") or {}
    if stages:
        parts = [
            f"{_e(name)} {_seconds(rec.get('seconds'))}"
            # validate and report run in one piece and record seconds only; a resumable stage
            # (search, training, export) with a start but no completion did not finish
            + (" (unfinished)" if rec.get("startTime") and not rec.get("completionTime") else "")
            for name, rec in stages.items()
        ]
        total = sum(rec.get("seconds") or 0 for rec in stages.values())
        items.append(("Time per stage", ", ".join(parts) + f"; {_seconds(total)} in all"))
    best = (status.get("bestStructures") or [None])[0]
    if best:
        winner = (
            f"<code>{_e(best.get('hash'))}</code>: DE-Score {_fmt('de_score', best.get('deScore'))}, "
            f"{human(best.get('params'))} params, {human(best.get('flops'))} FLOPs"
            + (f", {_fmt('latency_ms', best['latencyMs'])} ms" if best.get("latencyMs") is not None else "")
        )
        items.append(("Winner", winner))
    training = status.get("training") or {}
    if training.get("metric") is not None:
        records, _ = training_history(out)
        items.append(
            (
                "Trained",
                _e(
                    f"structure rank {trained_rank}: {training.get('metricName', 'metric')} "
                    f"{training['metric']:.4f} on the held-out split after {len(records) or training.get('epoch')} epochs"
                ),
            )
        )
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<section id="summary"><h2>Summary</h2><dl class="summary">{rows}</dl></section>'


def write_html(out: Path, job_name: str, plots: list[Path], trained_rank: int = 0) -> Path:
    """report.html: failure first, then the job summary, the top-K, the plots (inlined) and details."""
    status = read_json(out / "status.json")
    rows = summary_rows(status, trained_rank)
    headers = [h for h in HEADERS if h != "fitness" or any(r["fitness"] is not None for r in rows)]
    table = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if h not in ("hash", "trained") else ""}">{_e(_fmt(h, r[h]))}</td>'
            for h in headers
        )
        + "</tr>"
        for r in rows
    )
    conditions = "".join(
        f"<tr><td>{_e(c['type'])}</td><td>{_e(c['status'])}</td><td>{_e(c.get('reason', ''))}</td>"
        f"<td>{_e(c.get('message', ''))}</td></tr>"
        for c in status.get("conditions", [])
    )
    figures = "".join(
        f'<figure><img alt="{_e(p.stem.replace("_", " "))}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{_e(CAPTIONS.get(p.stem, p.stem.replace('_', ' ')))}</figcaption></figure>"
        for p in plots
    )
    best = status["bestStructures"][0].get("structure") if status.get("bestStructures") else None
    phase = status.get("phase", "")
    top_k = (
        f'<section id="top"><h2>Top {len(rows)} structures</h2>'
        '<p class="note">Ranked by the search\'s fitness (the DE-Score, minus any latency penalty); '
        "params and FLOPs are counted analytically, latency is measured on this machine.</p>"
        '<div class="scroll"><table id="best"><thead><tr>'
        + "".join(f"<th>{LABELS[h]}</th>" for h in headers)
        + f"</tr></thead><tbody>{table}</tbody></table></div></section>"
        if rows
        else ""
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DeNAS report: {_e(job_name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; padding: 1em; max-width: 1100px; color: #222;
  line-height: 1.45; }}
h1 {{ font-size: 1.6em; margin: 0.3em 0; overflow-wrap: anywhere; }}
h2 {{ font-size: 1.2em; margin: 1.2em 0 0.4em; }}
.phase {{ font-weight: bold; padding: 0.1em 0.5em; border-radius: 4px; background: #e8e8e8; }}
.phase.Succeeded {{ background: #d8f0d8; }} .phase.Failed {{ background: #f8d7d7; }}
.failure {{ border: 2px solid #c33; background: #fff4f4; padding: 0.5em 1em; border-radius: 6px; }}
.failure .cause {{ font-weight: bold; overflow-wrap: anywhere; }}
dl.summary {{ display: grid; grid-template-columns: max-content 1fr; gap: 0.3em 1em; margin: 0; }}
dl.summary dt {{ font-weight: bold; }} dl.summary dd {{ margin: 0; overflow-wrap: anywhere; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f3f3f3; }}
#plots {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; flex: 1 1 460px; max-width: 560px; }}
img {{ width: 100%; height: auto; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.9em; color: #444; }}
pre {{ background: #f7f7f7; padding: 0.8em; overflow-x: auto; max-width: 100%; font-size: 0.85em; }}
.note {{ color: #555; font-size: 0.9em; margin: 0; }}
code {{ overflow-wrap: anywhere; }}
@media (max-width: 600px) {{ dl.summary {{ grid-template-columns: 1fr; }} dl.summary dd {{ margin-bottom: 0.4em; }}
  td, th {{ padding: 3px 5px; font-size: 12px; }} }}
</style></head><body>
<h1>DeNAS report: {_e(job_name)}</h1>
<p>Phase <span class="phase {_e(phase)}" id="phase">{_e(phase)}</span>
&middot; started {_e(status.get("startTime", "-"))} &middot; finished {_e(status.get("completionTime", "-"))}</p>
{_failure_html(status, out)}
{_summary_html(status, out, trained_rank)}
{top_k}
<section><h2>Plots</h2><div id="plots">{figures or '<p class="note">No plots: no stage recorded data.</p>'}</div></section>
<section><h2>Winning structure</h2><details><summary>the structure as JSON (what `denas train` builds)</summary>
<pre>{_e(json.dumps(best, indent=2))}</pre></details></section>
<section><h2>Conditions</h2><div class="scroll"><table><thead><tr><th>type</th><th>status</th><th>reason</th>
<th>message</th></tr></thead><tbody>{conditions}</tbody></table></div></section>
<script>
// Lets a headless browser (and the test suite) confirm every plot decoded and nothing overflows.
window.addEventListener("load", () => {{
  const imgs = Array.from(document.images);
  document.body.dataset.imagesLoaded = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = imgs.length;
  const width = document.documentElement.clientWidth;
  const wide = Array.from(document.body.querySelectorAll("*")).filter((el) => {{
    if (el.closest(".scroll, pre")) return false;  // these scroll inside their own box
    return el.getBoundingClientRect().right > width + 1;
  }});
  document.body.dataset.overflowing = wide.length;
  document.body.dataset.overflowingTags = wide.slice(0, 5).map((el) => el.tagName + "." + el.className).join(" ");
}});
</script>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
