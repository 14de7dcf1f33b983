"""The PNG plots of a local run, drawn from what the run folder recorded.

Every plot has axis units, a legend and a caption in words (`CAPTIONS`), so the report can be
rebuilt from a finished (or failed) run folder at any time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CAPTIONS = {
    "search_curve": "How the search improved: the best score found so far against the number of "
    "candidate networks scored. A flat end means more generations would likely not help.",
    "pareto": "Every candidate the search scored, by its measured latency and its score. The "
    "numbered points are the top-K structures (1 = the winner); the line joins the candidates "
    "that no other candidate beats on both score and latency (the Pareto front). Candidates "
    "that broke a constraint are crossed out.",
    "training_curve": "Training the chosen structure: the training loss (left axis) and the task "
    "metric on the held-out split (right axis) after each epoch. A dashed line marks where an "
    "interrupted training resumed from its checkpoint.",
}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def training_history(out: Path) -> tuple[list[dict[str, Any]], int | None]:
    """Per-epoch records and the epoch a resumed training restarted from.

    metrics.json's history is the checkpointed, complete one (it survives restarts); before
    training finished, the progress events are all there is. Only `phase: training` events are
    epoch records: the `resumed` event also carries an epoch number, and letting it stand in for
    that epoch's record is what dropped the restart epoch from the curve.
    """
    metrics = read_json(out / "train" / "metrics.json")
    resumed_from = metrics.get("resumed_from_epoch")
    by_epoch: dict[int, dict[str, Any]] = {}
    for e in read_jsonl(out / "logs" / "training-events.jsonl"):
        if e.get("event") == "resumed" and e.get("epoch"):
            resumed_from = int(e["epoch"])
        if e.get("phase") == "training" and "epoch" in e:
            by_epoch[int(e["epoch"])] = e
    for record in metrics.get("history") or []:
        if "epoch" in record:
            by_epoch[int(record["epoch"])] = {"metric_name": metrics.get("metric_name"), **record}
    return [by_epoch[k] for k in sorted(by_epoch)], resumed_from


def make_plots(out: Path) -> list[Path]:
    """search_curve.png, pareto.png, training_curve.png under out/plots (those with data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    made: list[Path] = []
    result = read_json(out / "result.json")

    by_generation: dict[int, dict[str, Any]] = {}
    for e in read_jsonl(out / "logs" / "search-events.jsonl"):
        if (
            e.get("event", "generation") == "generation"
            and "generation" in e
            and e.get("best_score") is not None
        ):
            by_generation[int(e["generation"])] = e  # a resumed run repeats a generation: keep the last
    if by_generation:
        gens = sorted(by_generation)
        fig, ax = plt.subplots(figsize=(6.4, 4))
        ax.plot(
            [by_generation[g].get("evaluated", g) for g in gens],
            [by_generation[g]["best_score"] for g in gens],
            marker="o",
            label="best fitness so far",
        )
        for g in gens:
            ax.annotate(
                f"gen {g}",
                (by_generation[g].get("evaluated", g), by_generation[g]["best_score"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
                color="0.35",
            )
        ax.margins(x=0.08, y=0.15)
        ax.set_xlabel("candidates scored (count)")
        ax.set_ylabel("best fitness (DE-Score, unitless; higher is better)")
        ax.set_title("Search progress")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        made.append(_save(fig, plots / "search_curve.png"))

    candidates = [
        c
        for c in read_jsonl(out / "search" / "history.jsonl")
        if c.get("latency_ms") is not None and (c.get("scores") or {}).get("de_score") is not None
    ]
    best = [b for b in result.get("best", []) if b.get("latency_ms") is not None]
    if candidates or best:
        fig, ax = plt.subplots(figsize=(6.4, 5))
        feasible = [c for c in candidates if c.get("feasible", True)]
        infeasible = [c for c in candidates if not c.get("feasible", True)]
        if feasible:
            ax.scatter(
                [c["latency_ms"] for c in feasible],
                [c["scores"]["de_score"] for c in feasible],
                s=14,
                color="0.6",
                alpha=0.6,
                label=f"scored candidates ({len(feasible)})",
            )
        if infeasible:
            ax.scatter(
                [c["latency_ms"] for c in infeasible],
                [c["scores"]["de_score"] for c in infeasible],
                s=16,
                marker="x",
                color="C3",
                alpha=0.6,
                label=f"broke a constraint ({len(infeasible)})",
            )
        front = sorted(
            (p["latency_ms"], p["scores"]["de_score"])
            for p in result.get("pareto", [])
            if p.get("latency_ms") is not None and (p.get("scores") or {}).get("de_score") is not None
        )
        if front:
            ax.plot(*zip(*front, strict=True), color="C1", lw=1.5, label="Pareto front")
        if best:
            ax.scatter(
                [b["latency_ms"] for b in best],
                [b["scores"]["de_score"] for b in best],
                s=60,
                color="C0",
                edgecolor="white",
                zorder=3,
                label=f"top-{len(best)}",
            )
            for rank, b in enumerate(best, start=1):
                ax.annotate(
                    str(rank),
                    (b["latency_ms"], b["scores"]["de_score"]),
                    textcoords="offset points",
                    xytext=(5, 4),
                    fontsize=8,
                    color="C0",
                    weight="bold",
                )
            ax.scatter(
                [best[0]["latency_ms"]],
                [best[0]["scores"]["de_score"]],
                s=180,
                marker="*",
                color="C2",
                edgecolor="black",
                zorder=4,
                label="winner",
            )
        limit = (
            (read_json(out / ".denas-run.json").get("spec") or {}).get("constraints", {}).get("maxLatencyMs")
        )
        if limit:
            ax.axvline(limit, color="C3", ls="--", lw=1, label=f"latency limit ({limit:g} ms)")
        latencies = [c["latency_ms"] for c in candidates] + [b["latency_ms"] for b in best]
        if min(latencies) > 0 and max(latencies) / min(latencies) > 8:
            ax.set_xscale("log")  # a few slow outliers would squeeze every other point into one corner
            from matplotlib.ticker import FuncFormatter, LogLocator

            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel(
            "measured latency, batch of 1 (ms" + (", log scale)" if ax.get_xscale() == "log" else ")")
        )
        ax.set_ylabel("DE-Score (unitless; higher is better)")
        ax.set_title("Score against latency")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
        made.append(_save(fig, plots / "pareto.png"))

    records, resumed_from = training_history(out)
    if records:
        epochs = [int(r["epoch"]) for r in records]
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        handles = []
        if any(r.get("loss") is not None for r in records):
            handles += ax.plot(
                epochs, [r.get("loss") for r in records], marker="o", color="C0", label="training loss"
            )
        if any(r.get("test_loss") is not None for r in records):
            handles += ax.plot(
                epochs,
                [r.get("test_loss") for r in records],
                marker=".",
                ls=":",
                color="C0",
                label="held-out loss",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (unitless; lower is better)")
        metric_name = next((r.get("metric_name") for r in records if r.get("metric_name")), "metric")
        if any(r.get("metric") is not None for r in records):
            ax2 = ax.twinx()
            handles += ax2.plot(
                epochs,
                [r.get("metric") for r in records],
                marker="s",
                color="C1",
                label=f"held-out {metric_name}",
            )
            ax2.set_ylabel(f"{metric_name} (held-out split)")
        if resumed_from:
            handles.append(
                ax.axvline(
                    resumed_from + 0.5,
                    color="0.4",
                    ls="--",
                    lw=1,
                    label=f"resumed after epoch {resumed_from}",
                )
            )
        ax.set_xticks(epochs)
        ax.set_title("Training curve")
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2,
            fontsize=8,
            frameon=False,
        )
        ax.grid(alpha=0.3)
        made.append(_save(fig, plots / "training_curve.png"))
    return made


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
