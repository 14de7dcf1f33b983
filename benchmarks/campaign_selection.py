"""What sharing the selection stage's short-training runs saves a campaign, against the same
campaign whose cells each train their own, in the same run.

The cells of `deploy/samples/campaign-digits.yaml` (digits CNN, targets spr / icx, params budgets
200k / 100k, one seed, selection on with its defaults) are searched one after the other with the
real scorer, exactly as `denas run` searches a campaign's cells, without the final training (it
does not depend on the store).  Two arms per seed:

  * own     every cell trains its own selection runs (DE-Scores and latencies are shared: the
            campaign before selection runs were shared)
  * shared  a cell takes a run another cell already trained from the store (what a campaign does)

The shared arm starts from a copy of the own arm's score store (DE-Scores and latencies, no
selection runs), so both arms search identically and differ only in the selection stage: the
comparison is the selection runs trained, the selection stage's seconds (summed over the cells),
and whether every cell picks the same winner with the same metrics (it must).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/campaign_selection.py --seeds 0 1 2 \\
        --json benchmarks/figures/campaign_selection.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from campaign_sharing import cells  # noqa: E402  (the sample's cells, one expansion for both benchmarks)

ARMS = ("own", "shared")


def run_arm(seed: int, arm: str, store: Path, work: Path) -> dict:
    from denas.search import SearchConfig, run_search
    from denas.search.evaluator import DeNASScorer
    from denas.search.runner import load_space
    from denas.search.select_stage import RunHandler

    out: dict = {"seed": seed, "arm": arm, "cells": {}}
    started = time.monotonic()
    for name, _, spec in cells(seed, selection=True):
        config = SearchConfig.from_spec(spec)
        # own: a trainer without the store (each cell trains every run); shared: the default
        select = RunHandler(load_space(config), config) if arm == "own" else None
        with contextlib.redirect_stdout(io.StringIO()):  # the search's JSON progress lines
            result = run_search(
                config, work / name, scorer=DeNASScorer(), plots=False, score_store=store, select=select
            )
        sel = result["selection"]
        out["cells"][name] = {
            "selectionRuns": len(sel["runs"]),
            "selectionRunsComputed": result["selectionRunsComputed"],
            "selectionRunsReused": result["selectionRunsReused"],
            "selectionSeconds": sel["elapsed_s"],
            "winner": sel["winner"],
            "metrics": {f"{r['hash']}@{r['epochs']}": r["metric"] for r in sel["runs"]},
        }
    cs = out["cells"].values()
    out["selectionRunsComputed"] = sum(c["selectionRunsComputed"] for c in cs)
    out["selectionSeconds"] = round(sum(c["selectionSeconds"] for c in cs), 1)
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def compare(own: dict, shared: dict) -> dict:
    same = all(
        own["cells"][n]["winner"] == shared["cells"][n]["winner"]
        and own["cells"][n]["metrics"] == shared["cells"][n]["metrics"]
        for n in own["cells"]
    )
    return {
        "seed": own["seed"],
        "runsOwn": own["selectionRunsComputed"],
        "runsShared": shared["selectionRunsComputed"],
        "runsRatio": round(shared["selectionRunsComputed"] / max(own["selectionRunsComputed"], 1), 3),
        "secondsOwn": own["selectionSeconds"],
        "secondsShared": shared["selectionSeconds"],
        "secondsRatio": round(shared["selectionSeconds"] / max(own["selectionSeconds"], 1e-9), 3),
        "sameWinnersAndMetrics": same,
        "winners": {n: c["winner"] for n, c in shared["cells"].items()},
    }


def summarize(pairs: list[dict]) -> None:
    print("| seed | runs trained own -> shared | selection s own -> shared | same winners and metrics |")
    print("|---|---|---|---|")
    for p in pairs:
        print(
            f"| {p['seed']} | {p['runsOwn']} -> {p['runsShared']} ({p['runsRatio']:.2f}) | "
            f"{p['secondsOwn']:.0f} -> {p['secondsShared']:.0f} ({p['secondsRatio']:.2f}) | "
            f"{'yes' if p['sameWinnersAndMetrics'] else 'NO'} |"
        )
    if pairs:
        print(
            f"| median | {statistics.median(p['runsRatio'] for p in pairs):.2f} | "
            f"{statistics.median(p['secondsRatio'] for p in pairs):.2f} | |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, help="write the rows here (rewritten after every seed)")
    parser.add_argument("--summarize", action="store_true", help="only print the table of --json")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize(json.loads(args.json.read_text())["pairs"])
        return 0
    rows: list[dict] = []
    pairs: list[dict] = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="denas-campaign-selection-") as tmp:
            tmp = Path(tmp)
            own = run_arm(seed, "own", tmp / "store-own", tmp / "own")
            # the shared arm searches with the own arm's DE-Scores and latencies: the same searches
            shutil.copytree(tmp / "store-own", tmp / "store-shared")
            shared = run_arm(seed, "shared", tmp / "store-shared", tmp / "shared")
        rows += [own, shared]
        pairs.append(compare(own, shared))
        print(json.dumps(pairs[-1]), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"pairs": pairs, "rows": rows}, indent=1) + "\n")
    summarize(pairs)
    return 0 if all(p["sameWinnersAndMetrics"] for p in pairs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
