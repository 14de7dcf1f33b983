"""Scoring throughput over torch.distributed ranks (gloo on 127.0.0.1), measured on this machine.

Each configuration runs `denas search` as R processes (RANK/WORLD_SIZE as in a PyTorchJob, one
torch thread each) on nb201 (C=8, N=1, 16x16) with strategy `random`, and reads the search's own
elapsed time from result.json (it starts once every rank has joined, so process start-up and
imports are excluded).  Throughput = candidates scored / elapsed.

1. real: the real DE-Score + latency measurement (what a search pod does), 1 vs 2 ranks;
2. busy: a pure-CPU fake scorer (fixed work per candidate), 1 vs 2 ranks;
The machine may be shared: "CPU share per rank" (CPU seconds spent scoring per wall second per
rank) shows how much of a core each rank actually got, and "estimate on idle cores" is the
speed-up the ranks' dynamic hand-out (most FLOPs first, each rank takes the next candidate when
it is free) allows given each candidate's measured CPU time (total / per-generation makespan),
coordination excluded (part 3 measures that).  ``--repeats N`` runs the pairs N times and adds
a median row.

On a machine where other sessions run background jobs, the kernel's autogroup scheduling shares
the CPUs between sessions whatever their nice level; to time on (nearly) dedicated cores, run
this in its own session with a raised autogroup priority (see benchmarks/README_search.md).

3. simulated many ranks: a sleep-based fake scorer (it does not use the CPU), 1..16 ranks on the
   2 cores, at two scoring costs, to show where coordination (broadcast / gather of pickled
   structures and records, the strategy on rank 0) starts to matter.

    python benchmarks/search_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIGURE = HERE / "figures" / "search_scaling.png"
SPACE = {"channels": 8, "cells_per_stage": 1, "image_size": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(ranks: int, population: int, generations: int, scorer: str | None, cost_s: float = 0.0) -> dict:
    spec = {
        "domain": "nb201",
        "searchSpace": SPACE,
        "search": {"strategy": "random", "population": population, "generations": generations, "seed": 0},
        "score": {"batchSize": 16, "latency": {"warmup": 1, "repeats": 5}},
        "hardware": {"ipex": "off", "bf16": "off"},
    }
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "scaling"},
        "spec": spec,
    }
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.yaml"
        job.write_text(yaml.safe_dump(manifest))
        port = free_port()
        procs = []
        for rank in range(ranks):
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(ranks),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": "1",
                "DENAS_FAKE_SCORE_S": str(cost_s),
            }
            cmd = [sys.executable, "-m", "denas", "search", str(job), "--out", f"{tmp}/out", "--threads", "1"]
            cmd += ["--no-plots", "--dist-timeout", "600"] + (["--scorer", scorer] if scorer else [])
            procs.append(
                subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )
        errors = [p.communicate(timeout=1800)[1].decode() for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"{ranks} ranks failed: {errors[0][-2000:]}")
        result = json.loads((Path(tmp) / "out" / "result.json").read_text())
        lines = (Path(tmp) / "out" / "history.jsonl").read_text().splitlines()
    cands = [json.loads(x) for x in lines if '"candidate"' in x]
    return {
        "ranks": ranks,
        "evaluated": result["evaluated"],
        "elapsed_s": result["elapsed_s"],
        "per_s": result["evaluated"] / result["elapsed_s"],
        "cpu": [(c["generation"], c["flops"], c["score_cpu_s"]) for c in cands],
        # CPU seconds spent scoring per wall second per rank: 1.0 = each rank had a whole core
        "cpu_share": sum(c["score_cpu_s"] for c in cands) / (result["elapsed_s"] * ranks),
    }


def dedicated_core_estimate(cpu: list[tuple[int, int, float]], ranks: int) -> float:
    """Speed-up N ranks would reach on N idle cores, from each candidate's CPU time (measured in
    the 1-rank run) and the pool's schedule: within a generation, candidates in descending FLOPs
    order, each to the first rank that is free.  Coordination is left out (the sleep simulation
    measures it)."""
    total, makespans = 0.0, 0.0
    for g in sorted({g for g, _, _ in cpu}):
        costs = [(flops, c) for gg, flops, c in cpu if gg == g]
        order = sorted(range(len(costs)), key=lambda i: (-costs[i][0], i))
        free = [0.0] * ranks
        for i in order:
            r = free.index(min(free))
            free[r] += costs[i][1]
        total += sum(c for _, c in costs)
        makespans += max(free)
    return total / makespans


def pair(label: str, population: int, generations: int, scorer: str | None, cost_s: float = 0.0) -> dict:
    one = run(1, population, generations, scorer, cost_s)
    two = run(2, population, generations, scorer, cost_s)
    ratio = two["per_s"] / one["per_s"]
    estimate = dedicated_core_estimate(one["cpu"], 2)
    print(
        f"| {label} | {one['evaluated']} | {one['per_s']:.2f} | {two['per_s']:.2f} | {ratio:.2f}x | "
        f"{estimate:.2f}x | {one['cpu_share']:.2f} / {two['cpu_share']:.2f} | {os.getloadavg()[0]:.1f} |",
        flush=True,
    )
    return {"label": label, "one": one, "two": two, "ratio": ratio, "estimate": estimate}


def median_row(pairs: list[dict], label: str) -> dict:
    """The median of the repeats of one scorer (by speed-up), printed as a row of its own."""
    rows = sorted((p for p in pairs if p["label"] == label), key=lambda p: p["ratio"])
    mid = rows[len(rows) // 2]
    one = statistics.median(p["one"]["per_s"] for p in rows)
    two = statistics.median(p["two"]["per_s"] for p in rows)
    ratios = ", ".join(f"{p['ratio']:.2f}" for p in rows)
    print(
        f"| **{label}: median of {len(rows)}** | {mid['one']['evaluated']} | {one:.2f} | {two:.2f} | "
        f"**{mid['ratio']:.2f}x** (all: {ratios}) | {mid['estimate']:.2f}x | "
        f"{mid['one']['cpu_share']:.2f} / {mid['two']['cpu_share']:.2f} | {os.getloadavg()[0]:.1f} |",
        flush=True,
    )
    return mid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller budgets (a smoke run)")
    parser.add_argument("--pairs-only", action="store_true", help="skip the many-rank simulation")
    parser.add_argument("--repeats", type=int, default=1, help="run the 1-vs-2-rank pairs N times")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: Invalid value: {args.repeats}: must be >= 1")
    pop, gens = (8, 2) if args.quick else (24, 3)
    print(f"machine: {len(os.sched_getaffinity(0))} CPUs; load average at start {os.getloadavg()[0]:.2f}\n")
    print(
        "| scorer | candidates | 1 rank (cand/s) | 2 ranks (cand/s) | measured speed-up | "
        "estimate on idle cores | CPU share per rank (1 / 2 ranks) | load average after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    pairs = []
    for _ in range(args.repeats):
        pairs.append(pair("real DE-Score + latency", pop, gens, None))
        pairs.append(pair("busy fake, 0.1 s CPU each", pop, gens, "denas.search.fakes:busy_scorer", 0.1))
    if args.repeats > 1:
        pairs = [median_row(pairs, label) for label in dict.fromkeys(p["label"] for p in pairs)]
    if args.pairs_only:
        return 0
    print("\nsimulated ranks (sleep-based scorer: waits, uses no CPU) on this machine's cores")
    print("| scoring cost | ranks | candidates | elapsed (s) | cand/s | speed-up vs 1 rank | efficiency |")
    print("|---|---|---|---|---|---|---|")
    sims: dict[float, list[dict]] = {}
    rank_counts = [1, 2, 4, 8] if args.quick else [1, 2, 4, 8, 16]
    for cost in (0.2, 0.02):
        base = None
        for ranks in rank_counts:
            r = run(
                ranks,
                32 if not args.quick else 16,
                3 if not args.quick else 2,
                "denas.search.fakes:sleep_scorer",
                cost,
            )
            base = base or r["per_s"]
            r["speedup"] = r["per_s"] / base
            sims.setdefault(cost, []).append(r)
            print(
                f"| {cost * 1000:.0f} ms | {ranks} | {r['evaluated']} | {r['elapsed_s']:.2f} | {r['per_s']:.1f} | "
                f"{r['speedup']:.2f}x | {r['speedup'] / ranks:.0%} |",
                flush=True,
            )
    plot(pairs, sims)
    print(f"\nfigure: {FIGURE.relative_to(ROOT)}")
    return 0


def plot(pairs: list[dict], sims: dict[float, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [p["label"].split(",")[0] for p in pairs]
    x = range(len(pairs))
    axes[0].bar(
        [i - 0.2 for i in x], [p["ratio"] for p in pairs], width=0.4, label="measured (shared machine)"
    )
    axes[0].bar([i + 0.2 for i in x], [p["estimate"] for p in pairs], width=0.4, label="estimate, idle cores")
    axes[0].set_xticks(list(x), labels)
    axes[0].axhline(2.0, color="grey", ls=":", label="ideal (2 cores)")
    axes[0].axhline(1.7, color="tab:red", ls="--", lw=1, label="target 1.7x")
    axes[0].set_ylabel("2-rank / 1-rank throughput")
    axes[0].set_title("2 ranks on 2 cores, 1 thread each", fontsize=10)
    axes[0].legend(fontsize=8)
    for cost, rows in sims.items():
        xs = [r["ranks"] for r in rows]
        axes[1].plot(xs, [r["speedup"] for r in rows], "o-", label=f"{cost * 1000:.0f} ms per candidate")
    top = max(r["ranks"] for rows in sims.values() for r in rows)
    axes[1].plot([1, top], [1, top], color="grey", ls=":", label="ideal")
    axes[1].set_xscale("log", base=2)
    axes[1].set_yscale("log", base=2)
    axes[1].set_xlabel("ranks")
    axes[1].set_ylabel("speed-up vs 1 rank")
    axes[1].set_title("simulated ranks (sleep scorer) on 2 cores", fontsize=10)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    t = time.monotonic()
    code = main()
    print(f"({time.monotonic() - t:.0f} s)")
    sys.exit(code)
