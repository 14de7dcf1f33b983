"""How many DE-Scores a 2-target x 2-budget campaign computes, against one job, per random-stream mode.

The cells of `deploy/samples/campaign-digits.yaml` (digits CNN, targets spr / icx, params budgets
200k / 100k, one seed for all) are searched with the real scorer on the job's digits data,
sharing one score store, exactly as `denas run` runs a campaign's cells, but one after the other
and without the selection stage and training (neither changes which structures the search scores).
Two arms per seed, identical except `spec.search.randomStreams`:

  * single   one random stream per search: a structure the 100k cell rejects and the 200k cell
             accepts makes the 100k cell draw again, which shifts every later draw of its search
  * perSlot  one stream per (generation, slot) and parents chosen by rendezvous hashing: a budget
             that rejects a draw changes that slot only (what a DeNASCampaign sets on its cells)

Reported: `scoresComputed` of the campaign, the distinct candidates of one job (the first cell,
which computes everything it meets), their ratio (issue #17's bar: <= 1.3), and each cell's winner.
With ``--slower-target F`` the icx cells run as another CPU (their own hardware fingerprint, so
they measure latency themselves) whose measurements are F times this machine's: the latency budget
then binds differently on the two targets, as on a real pair of pools.  Without it both targets are
this machine, as in the local sample.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/campaign_sharing.py --seeds 0 1 2 3 4 \\
        --json benchmarks/figures/campaign_sharing.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"
ARMS = ("single", "perSlot")


def cells(seed: int, streams: str | None = None, selection: bool = False) -> list[tuple[str, str, dict]]:
    """(job name, target, DeNASJob spec) of the sample's cells with ``seed``; ``streams``: the
    template's randomStreams (None: the campaign's choice); ``selection``: keep the stage on
    (benchmarks/campaign_selection.py) or turn it off (it does not change what the search scores)."""
    from denas.campaign.spec import campaign_cells, cell_spec, read_campaign

    manifest = read_campaign(SAMPLE)
    spec = copy.deepcopy(manifest["spec"])
    spec["template"]["search"]["seed"] = seed
    if streams is not None:
        spec["template"]["search"]["randomStreams"] = streams
    if not selection:
        spec["template"]["search"]["selection"] = {"enabled": False}
    name = manifest["metadata"]["name"]
    return [(c.name, c.target, cell_spec(name, spec, c)) for c in campaign_cells(name, spec)]


class SlowerCPU:
    """The real scorer on a CPU whose latency measurements are ``factor`` times this one's."""

    def __init__(self, factor: float):
        from denas.search.evaluator import DeNASScorer
        from denas.search.score_store import scorer_identity

        self.inner, self.factor = DeNASScorer(), factor
        # the scores are the real scorer's (only latency is scaled): the store may share them
        self.scorer_identity = scorer_identity(self.inner)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, space, structure, seed, config):
        from denas.search.evaluator import MeasuredLatency

        scores, latency = self.inner(space, structure, seed, config)
        if latency is not None:
            latency = MeasuredLatency(float(latency) * self.factor, latency.flag)
        return scores, latency

    def latency(self, space, structure, config, model=None):
        return self.inner.latency(space, structure, config, model=model) * self.factor

    def measure_latency(self, space, structure, config, model=None):
        m = self.inner.measure_latency(space, structure, config, model=model)
        return dataclasses.replace(m, median_ms=m.median_ms * self.factor)


def run_campaign(seed: int, streams: str, work: Path, slower: float | None) -> dict:
    from denas.search import SearchConfig, run_search, runner
    from denas.search.evaluator import DeNASScorer

    real = runner.hardware_fingerprint
    store = work / "score-store"
    out: dict = {"seed": seed, "arm": streams, "cells": {}}
    started = time.monotonic()
    for name, target, spec in cells(seed, streams):
        other_cpu = slower is not None and target == "icx"
        runner.hardware_fingerprint = (
            (lambda: {**real(), "cpu_model": f"{real().get('cpu_model')} x{slower}"}) if other_cpu else real
        )
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the search's JSON progress lines
                result = run_search(
                    SearchConfig.from_spec(spec),
                    work / name,
                    scorer=SlowerCPU(slower) if other_cpu else DeNASScorer(),
                    plots=False,
                    score_store=store,
                )
        finally:
            runner.hardware_fingerprint = real
        out["cells"][name] = {
            "evaluated": result["evaluated"],
            "scoresComputed": result["scoresComputed"],
            "scoresReused": result["scoresReused"],
            "winner": result["best"][0]["hash"] if result["best"] else None,
        }
    first = next(iter(out["cells"].values()))
    out["oneJob"] = first["scoresComputed"]
    out["scoresComputed"] = sum(c["scoresComputed"] for c in out["cells"].values())
    out["ratio"] = round(out["scoresComputed"] / max(out["oneJob"], 1), 3)
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def summarize(rows: list[dict]) -> None:
    print("| randomStreams | median ratio | per seed (computed / one job) |")
    print("|---|---|---|")
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        per = ", ".join(f"{r['scoresComputed']}/{r['oneJob']}" for r in mine)
        print(f"| {arm} | {statistics.median(r['ratio'] for r in mine):.2f} | {per} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--slower-target", type=float, default=None, metavar="F")
    parser.add_argument("--json", type=Path, help="write the rows here (appended per row as they finish)")
    parser.add_argument("--summarize", action="store_true", help="only print the table of --json")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize(json.loads(args.json.read_text())["rows"])
        return 0
    rows: list[dict] = []
    for seed in args.seeds:
        for arm in args.arms:
            with tempfile.TemporaryDirectory(prefix="denas-campaign-sharing-") as tmp:
                row = run_campaign(seed, arm, Path(tmp), args.slower_target)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                args.json.write_text(
                    json.dumps({"slowerTarget": args.slower_target, "rows": rows}, indent=1) + "\n"
                )
    summarize(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
