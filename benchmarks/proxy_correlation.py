"""Proxy quality on NAS-Bench-201: Spearman / Kendall of every proxy and the DE-Score vs accuracy.

Cells are scored with the real benchmark skeleton (C=16, N=5, 32x32 inputs) at PyTorch default
initialisation (seed 0 per cell), on one synthetic Gaussian batch of 16 images with random labels
(`space.example_inputs(16, seed=0)`), NOT on CIFAR batches (no data may be downloaded): figures
are comparable in spirit, not digit for digit, with the published ones.

Two disjoint seeded samples of nb201.csv rows: a TUNING sample on which the calibration and the
DE-Score weights are chosen (rule: `tune_weights`), and a REPORT sample on which the figures are
printed (see `samples` for how a larger tuning sample leaves the report cells unchanged). Proxy values are cached per cell in
benchmarks/data/nb201_proxies.jsonl, so a rerun only scores what is missing.

    OMP_NUM_THREADS=1 python benchmarks/proxy_correlation.py [--tune 300 --report 500] [--shard K/N]
    OMP_NUM_THREADS=1 python benchmarks/proxy_correlation.py --fresh 300 [--fresh-seed 14]   # a fresh report split
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, rankdata, spearmanr

import denas.scores as scores
from denas import spaces
from denas.data.nb201_table import load_nb201

HERE = Path(__file__).resolve().parent
CACHE = HERE / "data" / "nb201_proxies.jsonl"
TRUTHS = ("cifar10_test_acc", "cifar100_test_acc", "imagenet16_120_test_acc", "analog_cifar10")
BATCH = 16
# analog-nasbench keys a cell by a 6-tuple of op ids in ANOTHER edge order and with its own op
# ids: 0 skip_connect, 1 none, 2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3 (read off the five
# single-op cells: all-`none` is the only 10% cell). The edge order is found by testing all 720
# edge permutations against nb201.csv's CIFAR-10 column and printed with its Spearman (verify_analog).
ANALOG_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
ANALOG_ORDER: tuple[int, ...] | None = None  # filled by verify_analog()


def load_rows() -> list[dict[str, str]]:
    return load_nb201()


FIRST_TUNE = 100  # the original tuning sample: the report cells follow it in the shuffled order


def samples(n_rows: int, tune: int, report: int) -> tuple[list[int], list[int]]:
    """One seeded shuffle of nb201.csv's rows: the first ``min(tune, 100)`` rows tune, the next
    ``report`` rows report, and tuning cells beyond 100 come after the report rows, so that
    enlarging the tuning sample never moves a cell into or out of the report sample."""
    order = list(range(n_rows))
    random.Random(201).shuffle(order)
    first = min(tune, FIRST_TUNE)
    report_idx = order[first : first + report]
    extra = order[first + report : first + report + max(tune - FIRST_TUNE, 0)]
    return order[:first] + extra, report_idx


def load_cache() -> dict[int, dict[str, float]]:
    if not CACHE.exists():
        return {}
    out = {}
    for line in CACHE.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interrupted run
            continue
        out[int(rec["index"])] = rec["proxies"]
    return out


def score_cells(
    rows: list[dict[str, str]], indices: list[int], cache: dict[int, dict[str, float]], shard: tuple[int, int]
) -> None:
    space = spaces.get("nb201")
    x, y = space.example_inputs(BATCH, seed=0)
    # a cell scored before a proxy was added only gets the missing proxies (values do not depend
    # on which proxies run together)
    todo = [
        i
        for k, i in enumerate(indices)
        if k % shard[1] == shard[0] and not set(scores.names()) <= set(cache.get(i, {}))
    ]
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with CACHE.open("a") as f:
        for k, i in enumerate(todo, 1):
            structure = {"ops": rows[i]["ops"].split()}
            torch.manual_seed(0)
            model = space.build(structure)
            missing = [p for p in scores.names() if p not in cache.get(i, {})]
            values = scores.score_model(
                model, x, y, proxies=missing, weights={c: 0.0 for c in scores.COMPONENTS}, seed=0
            )
            values.pop("de_score")
            cache[i] = {**cache.get(i, {}), **values}
            f.write(json.dumps({"index": i, "ops": rows[i]["ops"], "proxies": cache[i]}) + "\n")
            f.flush()
            rate = (time.time() - start) / k
            print(
                f"scored {k}/{len(todo)} cells ({rate:.1f} s/cell, ~{rate * (len(todo) - k) / 60:.0f} min left)",
                file=sys.stderr,
                flush=True,
            )


def verify_analog(rows: list[dict[str, str]]) -> dict[int, float] | None:
    """analog-nasbench baseline accuracy per nb201.csv index, with the edge order verified."""
    global ANALOG_ORDER
    try:
        from analognasbench import AnalogNASBench
    except Exception as exc:  # noqa: BLE001 - optional ground truth
        print(f"analog-nasbench unavailable ({exc}); skipping it", file=sys.stderr)
        return None
    bench = AnalogNASBench()
    analog = {tuple(k): v.baseline_accuracy for k, v in bench.data.items()}
    ops_of = [[ANALOG_OPS.index(op) for op in r["ops"].split()] for r in rows]
    c10 = [float(r["cifar10_test_acc"]) for r in rows]
    probe = random.Random(0).sample(range(len(rows)), 400)
    best = (-2.0, None)
    for perm in itertools.permutations(range(6)):
        acc = [analog.get(tuple(ops_of[i][p] for p in perm)) for i in probe]
        pairs = [(a, c10[i]) for a, i in zip(acc, probe) if a is not None]
        if len(pairs) < 300:
            continue
        rho = spearmanr(*zip(*pairs)).statistic
        if rho > best[0]:
            best = (rho, perm)
    ANALOG_ORDER = best[1]
    out = {}
    for i in range(len(rows)):
        a = analog.get(tuple(ops_of[i][p] for p in ANALOG_ORDER))
        if a is not None:
            out[i] = float(a)
    full = spearmanr([out[i] for i in out], [c10[i] for i in out]).statistic
    print(
        f"analog-nasbench edge order {ANALOG_ORDER}: {len(out)} cells matched, Spearman vs nb201.csv "
        f"cifar10 = {full:.3f}"
    )
    return out


def truth_table(rows: list[dict[str, str]], analog: dict[int, float] | None) -> dict[str, dict[int, float]]:
    table = {t: {i: float(r[t]) for i, r in enumerate(rows)} for t in TRUTHS[:3]}
    if analog:
        table["analog_cifar10"] = analog
    return table


ENSEMBLE = (*scores.COMPONENTS, "zico", "naswot", "jacob_cov")
CALIBRATED = (*ENSEMBLE, "synflow", "params", "flops")  # descore.CALIBRATION["nb201"]'s entries
GRID = (0.0, 0.5, 1.0, 2.0)


def calibrate(cells: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """(median, IQR/1.349) of each transformed proxy on the tuning cells."""
    out = {}
    for c in CALIBRATED:
        v = np.array([scores.transform(c, x[c]) for x in cells])
        q75, q25 = np.percentile(v, [75, 25])
        out[c] = (float(np.median(v)), float((q75 - q25) / 1.349))
    return out


def _percentiles(cells: list[dict[str, float]], names: tuple[str, ...], cal: dict) -> np.ndarray:
    """`descore.combine`'s per-component terms with an explicit calibration: [len(names), cells]."""
    t = np.array([[scores.transform(k, x[k]) for x in cells] for k in names])
    center = np.array([cal[k][0] for k in names])[:, None]
    spread = np.array([cal[k][1] for k in names])[:, None]
    return 0.5 + np.arctan((t - center) / spread) / np.pi


def _mean_spearman(values: np.ndarray, truth_ranks: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean over the ground truths of Spearman (Pearson of average ranks, as scipy's spearmanr)."""
    return float(np.mean([np.corrcoef(rankdata(values[idx]), r)[0, 1] for idx, r in truth_ranks]))


def tune_weights(
    cells: list[dict[str, float]],
    truths: list[dict[int, float]],
    cell_ids: list[int],
    names: tuple[str, ...] = scores.COMPONENTS,
) -> tuple[dict[str, float], dict, float]:
    """The documented rule, on the tuning sample only: calibrate there, then take the weights of
    ``names`` on GRID (at most 4 non-zero) with the best MEAN Spearman over the ground truths;
    a tie (within 1e-9) keeps the first combination in grid order, i.e. the smaller weights."""
    cal = calibrate(cells)
    terms = _percentiles(cells, names, cal)
    truth_ranks = []
    for table in truths:
        idx = np.array([k for k, i in enumerate(cell_ids) if i in table])
        truth_ranks.append((idx, rankdata([table[cell_ids[k]] for k in idx])))
    best = (-2.0, {})
    for combo in itertools.product(GRID, repeat=len(names)):
        w = {k: v for k, v in zip(names, combo) if v}
        if 0 < len(w) <= 4:
            rho = _mean_spearman(np.asarray(combo) @ terms, truth_ranks)
            if rho > best[0] + 1e-9:
                best = (rho, w)
    return best[1], cal, best[0]


def tuning_figures(
    cells: list[dict[str, float]], truths: dict[str, dict[int, float]], cell_ids: list[int], weights, cal
) -> str:
    de = np.asarray([float(v) for v in weights.values()]) @ _percentiles(cells, tuple(weights), cal)
    parts = []
    for name, table in truths.items():
        idx = [k for k, i in enumerate(cell_ids) if i in table]
        parts.append(f"{name} {spearmanr(de[idx], [table[cell_ids[k]] for k in idx]).statistic:.3f}")
    return ", ".join(parts)


def correlations(values: list[float], truth: list[float]) -> tuple[float, float]:
    return spearmanr(values, truth).statistic, kendalltau(values, truth).statistic


def report(rows, tune_idx, report_idx, cache, analog) -> None:
    truths = truth_table(rows, analog)
    tune_ids = [i for i in tune_idx if i in cache]
    tune_cells = [cache[i] for i in tune_ids]
    tuned, cal, tune_rho = tune_weights(tune_cells, list(truths.values()), tune_ids)
    shipped = scores.resolve_weights("nb201")
    ensemble, _, ens_rho = tune_weights(tune_cells, list(truths.values()), tune_ids, ENSEMBLE)
    print(f"opt-in ensemble (any of {ENSEMBLE}) best on the tuning sample ({ens_rho:.3f}): {ensemble}")
    print(
        f"\nTUNING sample: {len(tune_cells)} cells; calibration (median, spread) "
        f"{ {k: (round(m, 3), round(s, 3)) for k, (m, s) in cal.items()} }"
    )
    print(f"best weights on it (mean Spearman over the {len(truths)} ground truths {tune_rho:.3f}): {tuned}")
    print(f"  per ground truth: {tuning_figures(tune_cells, truths, tune_ids, tuned, cal)}")
    print(f"weights shipped as the nb201 default: {shipped}")
    print(f"  per ground truth: {tuning_figures(tune_cells, truths, tune_ids, shipped, cal)}")
    idx = [i for i in report_idx if i in cache]
    cells = [cache[i] for i in idx]
    columns = {
        name: [
            scores.transform(name, c[name]) if name in scores.descore.TRANSFORMS else c[name] for c in cells
        ]
        for name in scores.names()
    }
    columns["DE-Score (nb201 defaults)"] = [scores.combine(c, shipped, "nb201") for c in cells]
    columns["DE-Score ranked (nb201 defaults)"] = scores.combine_ranked(cells, shipped)
    columns["ensemble (tuned, opt-in weights)"] = [scores.combine(c, ensemble, "nb201") for c in cells]
    columns["DE-Score, all 4 components w=1"] = [
        scores.combine(c, dict.fromkeys(scores.COMPONENTS, 1.0), "nb201") for c in cells
    ]
    columns["raw DE-NAS-style E - C + S (no calibration)"] = [
        c["expressivity"] - c["complexity"] + c["saliency"] for c in cells
    ]
    print(
        f"\nREPORT sample: {len(idx)} cells (disjoint from tuning), batch {BATCH} synthetic; "
        "Spearman / Kendall"
    )
    print(f"{'proxy':44s}" + "".join(f"{t[:18]:>22s}" for t in truths))
    for name, vals in columns.items():
        line = f"{name:44s}"
        for table in truths.values():
            pairs = [(v, table[i]) for v, i in zip(vals, idx) if i in table]
            rho, tau = correlations(*zip(*pairs))
            line += f"{rho:>14.3f} / {tau:5.3f}"
        print(line)


# ----- fresh report splits: drawn once per shipped default, never used for tuning ---------------
FRESH_CACHE = HERE / "data" / "nb201_fresh_proxies.jsonl"
# what the report needs: the nb201 default's components, and the baselines it is compared with
FRESH_PROXIES = ("expressivity", "complexity", "saliency", "params", "flops", "zico", "naswot")


def fresh_sample(n_rows: int, n: int, seed: int, used: set[int]) -> list[int]:
    """``n`` cells drawn by ``seed`` among those no earlier tuning or report sample holds."""
    pool = [i for i in range(n_rows) if i not in used]
    return sorted(random.Random(seed).sample(pool, n))


def fresh_report(rows, n: int, seed: int, shard: tuple[int, int], score: bool) -> None:
    """Score a fresh split (own cache) and print the shipped default against the baselines on it."""
    used = set(samples(len(rows), 300, 500)[0]) | set(samples(len(rows), 300, 500)[1]) | set(load_cache())
    idx = fresh_sample(len(rows), n, seed, used)
    cache: dict[int, dict[str, float]] = {}
    if FRESH_CACHE.exists():
        for line in FRESH_CACHE.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            cache[int(rec["index"])] = rec["proxies"]
    if score:
        space = spaces.get("nb201")
        x, y = space.example_inputs(BATCH, seed=0)
        todo = [i for k, i in enumerate(idx) if k % shard[1] == shard[0] and i not in cache]
        start = time.time()
        with FRESH_CACHE.open("a") as f:
            for k, i in enumerate(todo, 1):
                torch.manual_seed(0)
                model = space.build({"ops": rows[i]["ops"].split()})
                values = scores.score_model(
                    model,
                    x,
                    y,
                    proxies=list(FRESH_PROXIES),
                    weights={c: 0.0 for c in scores.COMPONENTS},
                    seed=0,
                )
                values.pop("de_score")
                cache[i] = values
                f.write(json.dumps({"index": i, "ops": rows[i]["ops"], "proxies": values}) + "\n")
                f.flush()
                print(
                    f"fresh: {k}/{len(todo)} ({(time.time() - start) / k:.1f} s/cell)",
                    file=sys.stderr,
                    flush=True,
                )
        if shard[1] > 1:
            return
    missing = [i for i in idx if i not in cache]
    if missing:
        print(
            f"fresh split: {len(missing)} of {n} cells not scored yet; run without --no-score",
            file=sys.stderr,
        )
        return
    truths = truth_table(rows, None)
    cells = [cache[i] for i in idx]
    shipped = scores.resolve_weights("nb201")
    columns = {name: [scores.transform(name, c[name]) for c in cells] for name in FRESH_PROXIES}
    columns["synflow (= saliency)"] = columns.pop("saliency")
    columns["DE-Score (nb201 defaults)"] = [scores.combine(c, shipped, "nb201") for c in cells]
    columns["DE-Score ranked (nb201 defaults)"] = scores.combine_ranked(cells, shipped)
    print(
        f"FRESH REPORT split (seed {seed}): {n} cells outside every earlier tuning/report sample, "
        f"scored once for the shipped default {shipped}; Spearman / Kendall"
    )
    print(f"{'proxy':44s}" + "".join(f"{t[:18]:>22s}" for t in truths))
    for name, vals in columns.items():
        line = f"{name:44s}"
        for table in truths.values():
            rho, tau = correlations(vals, [table[i] for i in idx])
            line += f"{rho:>14.3f} / {tau:5.3f}"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tune", type=int, default=300, help="cells in the tuning sample")
    parser.add_argument("--report", type=int, default=500, help="cells in the report sample")
    parser.add_argument("--no-score", action="store_true", help="only report the cells already cached")
    parser.add_argument(
        "--shard", default="0/1", help="K/N: score only every N-th missing cell, from K (parallel runs)"
    )
    parser.add_argument(
        "--fresh",
        type=int,
        metavar="N",
        help="score and report a FRESH split of N cells outside every earlier sample (once per shipped default)",
    )
    parser.add_argument("--fresh-seed", type=int, default=14, help="seed of the fresh split")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = load_rows()
    if args.fresh:
        shard = tuple(int(v) for v in args.shard.split("/"))
        fresh_report(rows, args.fresh, args.fresh_seed, shard, not args.no_score)
        return 0
    tune_idx, report_idx = samples(len(rows), args.tune, args.report)
    cache = load_cache()
    if not args.no_score:
        k, n = (int(v) for v in args.shard.split("/"))
        score_cells(rows, tune_idx + report_idx, cache, (k, n))
        if n > 1:
            return 0
    analog = verify_analog(rows)
    report(rows, tune_idx, report_idx, cache, analog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
