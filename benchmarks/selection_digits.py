"""Selection on vs off with real training: `denas run deploy/samples/digits.yaml`, a few seeds.

For every seed the sample runs once per arm (`ARMS`: off, the engine's default selection, and the
defaults before issue #14's second round: plain top-8, no surrogate), identical except
`spec.search.selection` (and without
the sample's `maxLatencyMs`, which makes the archive depend on the machine's load): the train-free
search (same seed, so the same archive), then, with selection on, short training of the
top-K on digits, then the sample's full training of whichever structure leads `best`.  Recorded:
the trained winner's final test accuracy (`train/metrics.json`), and the wall time of each stage
(train-free search and selection from `search/result.json`, training from the process wall clock
minus the search's).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/selection_digits.py --seeds 0 1 2 3 4 \\
        --json benchmarks/figures/selection_digits.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: spec.search.selection per arm: off, the engine's defaults, the defaults before issue #14's 2nd round
ARMS = {
    "off": {"enabled": False},
    "on": {"enabled": True},
    "on-top8": {"enabled": True, "topK": 8, "diversity": "none", "surrogateExtra": 0},
}
SAMPLE = ROOT / "deploy" / "samples" / "digits.yaml"


def run_once(seed: int, arm: str, work: Path) -> dict:
    manifest = yaml.safe_load(SAMPLE.read_text())
    manifest["spec"]["search"]["seed"] = seed
    # no latency budget: which nets pass it depends on the machine's load at run time, so the two
    # arms would search different archives; without it both see the same train-free search
    manifest["spec"]["constraints"].pop("maxLatencyMs", None)
    manifest["spec"]["search"]["selection"] = ARMS[arm]
    tag = f"seed{seed}-{arm}"
    job, out = work / f"{tag}.yaml", work / tag
    job.write_text(yaml.safe_dump(manifest))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "denas", "run", str(job), "--out", str(out), "--progress", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{tag}: denas run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads((out / "search" / "result.json").read_text())
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    sel = result.get("selection") or {}
    search_s = result["elapsed_s"]
    return {
        "seed": seed,
        "selection": arm != "off",
        "arm": arm,
        "winner": result["best"][0]["hash"],
        "train_free_rank": result["best"][0].get("trainFreeRank", 0),
        "test_accuracy": metrics["metric"],
        "search_s": round(search_s, 1),
        "selection_s": round(sel.get("elapsed_s", 0.0), 1),
        "total_s": round(wall, 1),
        # the rest: process start-up, result hand-over and the full training
        "training_s": round(wall - search_s - sel.get("elapsed_s", 0.0), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", required=True, help="write every run here")
    parser.add_argument(
        "--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS), help="which settings to run per seed"
    )
    parser.add_argument("--summarize", action="store_true", help="only print the table of the runs in --json")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize(json.loads(Path(args.json).read_text()))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arm in args.arms:
                rows.append(run_once(seed, arm, Path(tmp)))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")  # partial results survive
    summarize(rows)
    return 0


def summarize(rows: list[dict]) -> None:
    """The table per arm over the seeds that ran every arm present."""
    for r in rows:  # files written before the arms existed
        r.setdefault("arm", "on" if r["selection"] else "off")
    arms = [a for a in ARMS if any(r["arm"] == a for r in rows)]
    seeds = set.intersection(*({r["seed"] for r in rows if r["arm"] == a} for a in arms))
    rows = [r for r in rows if r["seed"] in seeds]
    print(f"seeds: {sorted(seeds)}")
    print("| selection | median test acc | mean | per seed | search s | selection s | training s | total s |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in arms:
        rs = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"])
        accs = [r["test_accuracy"] for r in rs]
        print(
            f"| {arm} | {statistics.median(accs):.4f} | {statistics.fmean(accs):.4f} | "
            + ", ".join(f"{a:.4f}" for a in accs)
            + f" | {statistics.median(r['search_s'] for r in rs):.0f} | "
            f"{statistics.median(r['selection_s'] for r in rs):.0f} | {statistics.median(r['training_s'] for r in rs):.0f} | "
            f"{statistics.median(r['total_s'] for r in rs):.0f} |"
        )
    for r in rows:
        if r["selection"]:
            print(f"seed {r['seed']} {r['arm']}: selection winner had train-free rank {r['train_free_rank']}")


if __name__ == "__main__":
    sys.exit(main())
