"""Search curves on NAS-Bench-201: true CIFAR-10 accuracy found vs candidates scored.

Every strategy searches the whole 15,625-cell NB201 space by DE-Score (no accuracy is ever shown
to the search); afterwards each run is replayed against the official CIFAR-10 test accuracy
(`denas/data/nb201.csv.gz`, read by `denas.data.nb201_table.load_nb201`).  Two views per run, after n candidates scored:
  * returned: the accuracy of the cell with the best DE-Score so far (what the search would hand
    to training: the honest train-free curve, bounded by how well DE-Score ranks cells);
  * explored: the best accuracy among all cells scored so far (how good a pool the strategy
    visited: the classic NAS-Bench "best found" curve).

Cost: the real DE-Score of a cell at the benchmark's full size (C=16, N=5, 32x32) takes seconds on
2 cores, too slow for thousands of visits; cells are scored on a reduced skeleton (C=8, N=1,
16x16 inputs, batch 16, weights seeded 0 per cell; Spearman with CIFAR-10 accuracy ~0.57 on a
120-cell sample, vs ~0.56 at C=16/N=1 -- see README_search.md), on demand, and cached per cell in
benchmarks/data/nb201_search_scores.jsonl, so reruns only score cells never visited before.
Latency is the NB201 table's measured Xeon Gold 6240 latency (no timing noise in the curves).

    OMP_NUM_THREADS=1 python benchmarks/search_curve.py [--budget 150 --repeats 5]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from denas import spaces
from denas.data.nb201_table import load_nb201
from denas.scores import combine, resolve_weights, score_model
from denas.scores.descore import domain_key
from denas.search import SearchConfig, run_search
from denas.search.progress import Progress

HERE = Path(__file__).resolve().parent
CACHE = HERE / "data" / "nb201_search_scores.jsonl"
FIGURE = HERE / "figures" / "search_curve_nb201.png"
SPACE = {"channels": 8, "cells_per_stage": 1, "image_size": 16}
BATCH = 16
POPULATION = 10
DOMAIN = domain_key("nb201", SPACE)  # what a search of this space uses: the `tiny` preset's calibration


WEIGHTS = resolve_weights(None, DOMAIN)


class TableScorer:
    """DE-Score computed once per cell (cached on disk); latency and accuracy from the NB201 table."""

    def __init__(self) -> None:
        self.rows = {r["ops"]: r for r in load_nb201()}
        self.cache: dict[str, dict[str, float]] = {}
        if CACHE.exists():
            for line in CACHE.read_text().splitlines():
                entry = json.loads(line)
                self.cache[entry["ops"]] = entry["scores"]
        self.scored = 0

    def accuracy(self, structure: dict) -> float:
        return float(self.rows[" ".join(structure["ops"])]["cifar10_test_acc"])

    def __call__(self, space, structure, seed, config):
        key = " ".join(structure["ops"])
        if not set(WEIGHTS) <= set(self.cache.get(key, {})):
            torch.manual_seed(0)  # per cell, not per search: one cached score serves every run
            model = space.build(structure)
            inputs, targets = space.example_inputs(BATCH, seed=0)
            scores = score_model(model, inputs, targets, weights=WEIGHTS, domain=DOMAIN, seed=0)
            self.cache[key] = {k: float(v) for k, v in scores.items() if k != "de_score"}
            CACHE.parent.mkdir(exist_ok=True)
            with CACHE.open("a") as f:
                f.write(json.dumps({"ops": key, "scores": self.cache[key]}) + "\n")
            self.scored += 1
        # the DE-Score from the cached components with today's nb201 weights and calibration,
        # exactly what score_model returns for a search of this space (domain key "nb201")
        values = dict(self.cache[key])
        values["de_score"] = combine(values, WEIGHTS, DOMAIN)
        return values, float(self.rows[key]["latency_ms_xeon_gold_6240"])

    def rank_check(self, space, n: int) -> float:
        """Spearman of the DE-Score with CIFAR-10 accuracy over ``n`` seeded random cells."""
        keys = random.Random(0).sample(sorted(self.rows), n)
        de = [self(space, {"ops": k.split()}, 0, None)[0]["de_score"] for k in keys]
        return float(spearmanr(de, [float(self.rows[k]["cifar10_test_acc"]) for k in keys]).statistic)


def variants(budget: int) -> dict[str, dict]:
    """Search settings per curve, each sized to score about ``budget`` candidates."""
    children = POPULATION - POPULATION // 2  # ea: mutants + crossovers per generation
    warm = budget // 3
    return {
        "random": {"strategy": "random", "generations": math.ceil(budget / POPULATION)},
        "bo": {"strategy": "bo", "generations": math.ceil(budget / POPULATION)},
        "ea": {"strategy": "ea", "generations": 1 + math.ceil((budget - POPULATION) / children)},
        "ea+warmup": {
            "strategy": "ea",
            "warmup": warm,
            "generations": 1 + math.ceil((budget - warm) / children),
        },
        "ea+warmup(params)": {
            "strategy": "ea",
            "warmup": 1000,
            "warmupProxy": "params",
            "generations": 1 + math.ceil((budget - POPULATION) / children),
        },
        "ea+move": {
            "strategy": "ea",
            "moveProposals": 3,
            "generations": 1
            + math.ceil((budget - POPULATION) / (3 * (children - POPULATION // 4) + POPULATION // 4)),
        },
    }


def denas_space() -> spaces.SearchSpace:
    return spaces.get("nb201", SPACE)


def run_one(name: str, search: dict, seed: int, scorer: TableScorer, budget: int) -> dict[str, list[float]]:
    spec = {
        "domain": "nb201",
        "searchSpace": SPACE,
        "search": {"population": POPULATION, "seed": seed, **search},
    }
    config = SearchConfig.from_spec(spec)
    with tempfile.TemporaryDirectory() as out:
        quiet = Progress(config.generations, stream=io.StringIO(), bar=False)
        run_search(config, out, scorer=scorer, threads=1, progress=quiet, plots=False)
        lines = (Path(out) / "history.jsonl").read_text().splitlines()
    cands = [json.loads(x) for x in lines if '"candidate"' in x][:budget]
    returned, explored = [], []
    best_fit, best_fit_acc, best_acc = -math.inf, 0.0, 0.0
    for c in cands:
        acc = scorer.accuracy(c["structure"])
        if c["fitness"] is not None and c["fitness"] > best_fit:
            best_fit, best_fit_acc = c["fitness"], acc
        best_acc = max(best_acc, acc)
        returned.append(best_fit_acc)
        explored.append(best_acc)
    return {"returned": returned, "explored": explored}


def mean_curve(curves: list[list[float]], n: int) -> list[float]:
    # a run that scored fewer than n candidates (space exhausted) keeps its last value
    return [sum(c[min(i, len(c) - 1)] for c in curves) / len(curves) for i in range(n)]


def share(scorer: TableScorer, threshold: float) -> float:
    accs = [float(r["cifar10_test_acc"]) for r in scorer.rows.values()]
    return sum(a >= threshold for a in accs) / len(accs)


def first_reaching(curve: list[float], threshold: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= threshold), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=150, help="candidates scored per run")
    parser.add_argument("--repeats", type=int, default=5, help="seeds per strategy")
    parser.add_argument("--only", nargs="*", help="strategies to run (default: all)")
    parser.add_argument(
        "--rank-check",
        type=int,
        metavar="N",
        help="first print the DE-Score's Spearman on N random cells of this reduced skeleton",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scorer = TableScorer()
    print(f"DE-Score weights ({DOMAIN} defaults): {WEIGHTS}")
    if args.rank_check:
        rho = scorer.rank_check(denas_space(), args.rank_check)
        print(f"DE-Score Spearman with CIFAR-10 accuracy, {args.rank_check} random cells: {rho:.3f}")
    runs: dict[str, list[dict[str, list[float]]]] = {}
    start = time.monotonic()
    for name, search in variants(args.budget).items():
        if args.only and name not in args.only:
            continue
        for seed in range(args.repeats):
            runs.setdefault(name, []).append(run_one(name, search, seed, scorer, args.budget))
            print(
                f"{name:17s} seed {seed}: returned {runs[name][-1]['returned'][-1]:.2f}  "
                f"explored {runs[name][-1]['explored'][-1]:.2f}  ({scorer.scored} new cells scored, "
                f"{time.monotonic() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    n = args.budget
    marks = [m for m in (10, 25, 50, 100, 150, 200, 300) if m <= n]
    table = {
        name: {view: mean_curve([r[view] for r in rs], n) for view in ("returned", "explored")}
        for name, rs in runs.items()
    }
    optimum = max(float(r["cifar10_test_acc"]) for r in scorer.rows.values())
    print(
        f"\nNB201 CIFAR-10 test accuracy (%), mean of {args.repeats} seeds; optimum of the space {optimum:.2f}"
    )
    for view in ("returned", "explored"):
        print(
            f"\n{view}: "
            + (
                "accuracy of the best-DE-Score cell so far"
                if view == "returned"
                else "best accuracy among cells scored so far"
            )
        )
        print("| strategy | " + " | ".join(f"n={m}" for m in marks) + " |")
        print("|---|" + "---|" * len(marks))
        for name, views in table.items():
            print(f"| {name} | " + " | ".join(f"{views[view][m - 1]:.2f}" for m in marks) + " |")
    for view, threshold in (("explored", 94.0), ("returned", 93.5)):
        print(
            f"\n{view}: mean candidates scored until >= {threshold}% (top {share(scorer, threshold):.2%} of cells)"
        )
        for name, rs in runs.items():
            hits = [first_reaching(r[view], threshold) for r in rs]
            found = [h for h in hits if h is not None]
            mean = f"{sum(found) / len(found):.0f}" if found else "-"
            print(f"  {name:17s} {mean:>5s}  ({len(found)}/{len(hits)} runs reached it within {n})")
    plot(table, n, optimum, args.repeats)
    print(f"\nfigure: {FIGURE.relative_to(HERE.parent)}")
    return 0


def plot(table: dict, n: int, optimum: float, repeats: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    xs = list(range(1, n + 1))
    for ax, view, title in (
        (axes[0], "returned", "returned: accuracy of the best-DE-Score cell"),
        (axes[1], "explored", "explored: best accuracy among scored cells"),
    ):
        for name, views in table.items():
            ax.plot(xs, views[view], label=name)
        ax.axhline(optimum, color="grey", ls=":", lw=1, label="optimum of the space")
        ax.set_ylim(92.0, optimum + 0.2)  # the first few candidates sit far below; the race is up here
        ax.set_xlabel("candidates scored")
        ax.set_ylabel("CIFAR-10 test accuracy (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend()
    fig.suptitle(f"NAS-Bench-201 search by DE-Score (mean of {repeats} seeds)", fontsize=11)
    fig.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
