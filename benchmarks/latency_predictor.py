"""Per-pool latency predictor vs the measured Xeon latencies of every NAS-Bench-201 cell.

For each of the four Xeons of nb201.csv (HELP's measurements): draw 20 cells, "measure" them
(read their latency on that CPU: nothing else of that CPU is used), fit
`denas.scores.latency_model.PoolLatencyModel` on their op-count features, and rank the other
15,605 cells; Spearman against their measured latency, and FLOPs' Spearman on the same cells.
Median over 10 seeded draws (seeds 0-9).

The predictor may use a prior: the per-op costs of the *other* three CPUs, fitted on their whole
columns (HELP's idea: learn on source devices, adapt to a new one from a few samples); the
target CPU contributes only its 20 measured cells.

No tuning on the evaluation: the settings (ridge penalty, prior or not) are chosen on other draws
(seeds 1000-1029), and for each reported CPU only from the three *other* CPUs' results, then
reported on seeds 0-9. ``--tune`` prints that table and the defaults shipped in
`denas.scores.latency_model` (best worst-CPU median on the tuning draws of all four).

    python benchmarks/latency_predictor.py [--json PATH] [--tune]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from denas import spaces
from denas.data.nb201_table import load_nb201
from denas.scores.latency_model import PoolLatencyModel, latency_features, source_costs

MEASURED = 20  # cells measured on the target CPU
REPORT_DRAWS = range(10)
TUNE_DRAWS = range(1000, 1030)
#: (alpha, use the other CPUs' costs as a prior): the grid --tune and the report choose from
GRID = [(alpha, prior) for prior in (False, True) for alpha in (0.3, 1.0, 3.0, 10.0, 30.0)]


def load_table() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(features, FLOPs, {cpu column: measured ms}) of every cell in the NB201 table: the one the
    project ships, or a CSV of the same columns named by $DENAS_NB201_CSV."""
    other = os.environ.get("DENAS_NB201_CSV")
    if other:
        with open(other, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = load_nb201()
    space = spaces.get("nb201")
    structures = [{"ops": r["ops"].split()} for r in rows]
    features = np.array([latency_features(space, "nb201", s) for s in structures])
    flops = np.array([space.count_flops(s) for s in structures], dtype=float)
    cpus = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k.startswith("latency_ms_")}
    return features, flops, cpus


def priors(features: np.ndarray, cpus: dict[str, np.ndarray]) -> dict[str, list[list[float]]]:
    """For each target CPU: the per-feature costs of the *other* CPUs (whole columns: another
    CPU's data is fair game; the target's own cells beyond the measured 20 never are)."""
    costs = {c: source_costs(features, ms) for c, ms in cpus.items()}
    return {t: [costs[c] for c in cpus if c != t] for t in cpus}


def evaluate(
    features: np.ndarray,
    flops: np.ndarray,
    truth: np.ndarray,
    draws: range,
    alpha: float | None = None,
    prior: list[list[float]] | None = None,
    measured: int = MEASURED,
) -> tuple[list[float], list[float]]:
    """Per draw: (predictor Spearman, FLOPs Spearman) on the cells that were not measured."""
    pred_rho, flops_rho = [], []
    for draw in draws:
        idx = np.random.default_rng(draw).choice(len(truth), measured, replace=False)
        rest = np.setdiff1d(np.arange(len(truth)), idx)
        model = PoolLatencyModel(alpha, prior=prior).fit(features[idx], truth[idx])
        pred_rho.append(float(spearmanr(model.predict(features[rest]), truth[rest]).statistic))
        flops_rho.append(float(spearmanr(flops[rest], truth[rest]).statistic))
    return pred_rho, flops_rho


def tune_table(
    features: np.ndarray, flops: np.ndarray, cpus: dict[str, np.ndarray]
) -> dict[tuple[float, bool], dict[str, float]]:
    """Median Spearman of every grid point on every CPU over TUNE_DRAWS (never the report draws)."""
    prior = priors(features, cpus)
    table = {}
    for alpha, use_prior in GRID:
        table[(alpha, use_prior)] = {
            c: float(
                np.median(
                    evaluate(features, flops, ms, TUNE_DRAWS, alpha, prior[c] if use_prior else None)[0]
                )
            )
            for c, ms in cpus.items()
        }
    return table


def choose(table: dict[tuple[float, bool], dict[str, float]], on: list[str]) -> tuple[float, bool]:
    """The grid point whose worst median over the CPUs ``on`` is best."""
    return max(table, key=lambda g: (min(table[g][c] for c in on), g[1], -g[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write {cpu column: {predictor, flops}} here")
    parser.add_argument("--png", type=Path, help="draw predictor vs FLOPs Spearman per CPU here")
    parser.add_argument("--tune", action="store_true", help="print the tuning table and the shipped defaults")
    args = parser.parse_args(argv)
    try:
        features, flops, cpus = load_table()
    except FileNotFoundError as exc:
        print(f"error: NB201 table not found: {exc}", file=sys.stderr)
        return 2
    table = tune_table(features, flops, cpus)
    if args.tune:
        for (alpha, use_prior), row in table.items():
            print(f"alpha={alpha:<5} prior={use_prior!s:5s} " + " ".join(f"{v:.4f}" for v in row.values()))
        alpha, use_prior = choose(table, list(cpus))
        print(f"shipped default (all four CPUs, tuning draws): alpha={alpha} prior={use_prior}")
        return 0
    prior = priors(features, cpus)
    out = {}
    print(
        f"{MEASURED} measured cells, Spearman on the other cells, median [min] over {len(REPORT_DRAWS)} draws;"
    )
    print("settings per target chosen on the three other CPUs' tuning draws")
    print(f"{'cpu':30s}{'settings':>20s}{'predictor':>18s}{'FLOPs':>8s}")
    for cpu, truth in cpus.items():
        alpha, use_prior = choose(table, [c for c in cpus if c != cpu])
        pred_rho, flops_rho = evaluate(
            features, flops, truth, REPORT_DRAWS, alpha, prior[cpu] if use_prior else None
        )
        out[cpu] = {
            "predictor": round(float(np.median(pred_rho)), 4),
            "flops": round(float(np.median(flops_rho)), 4),
        }
        settings = f"a={alpha} prior={'y' if use_prior else 'n'}"
        print(
            f"{cpu:30s}{settings:>20s}{out[cpu]['predictor']:10.4f} [{min(pred_rho):.3f}]{out[cpu]['flops']:8.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.png:
        plot(out, args.png)
    return 0


def plot(out: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.removeprefix("latency_ms_").replace("_", " ") for c in out]
    x = np.arange(len(out))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, [r["flops"] for r in out.values()], 0.4, label="FLOPs (no measurement)", color="#bbbbbb")
    ax.bar(
        x + 0.2, [r["predictor"] for r in out.values()], 0.4, label=f"per-pool predictor ({MEASURED} cells)"
    )
    ax.axhline(0.95, color="k", lw=0.8, ls="--", label="goal 0.95")
    ax.set_xticks(x, names)
    ax.set_ylim(0.85, 1.0)
    ax.set_ylabel("Spearman vs measured latency")
    ax.set_title("NB201 latency ranking on four Xeons (median of 10 draws)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
