"""PNG figures of a finished search (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(curve: list[dict[str, Any]], path: Path, title: str) -> None:
    """Best fitness found so far per generation (x: candidates scored)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [c["evaluated"] for c in curve if c["best_score"] is not None]
    ys = [c["best_score"] for c in curve if c["best_score"] is not None]
    ax.plot(xs, ys, marker="o", ms=3, drawstyle="steps-post")
    for c in curve[:: max(1, len(curve) // 10)]:  # a few generation labels, not a crowd
        if c["best_score"] is not None:
            ax.annotate(
                f"g{c['generation']}",
                (c["evaluated"], c["best_score"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(2, 4),
            )
    ax.set_xlabel("candidates scored (gN: after generation N)")
    ax.set_ylabel("best fitness (DE-Score)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pareto(records: list[dict[str, Any]], front: list[dict[str, Any]], path: Path, title: str) -> None:
    """Every feasible candidate's fitness against its latency (FLOPs if unmeasured); the front on top."""
    plt = _pyplot()
    measured = all(r.get("latency_ms") is not None for r in records)
    xkey, xlabel = ("latency_ms", "latency (ms)") if measured else ("flops", "FLOPs (MACs)")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r[xkey] for r in records], [r["fitness"] for r in records], s=8, alpha=0.4, label="scored")
    pts = sorted((r[xkey], r["fitness"]) for r in front)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "r-o", ms=4, label="non-dominated")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fitness (DE-Score)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
