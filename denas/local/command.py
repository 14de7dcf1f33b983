"""`denas run JOB.yaml --out DIR`: the local executor's command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from denas import preflight
from denas import status as st
from denas.job import JobValidationError
from denas.local.authoring import load_checked_job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "job",
        help="path of a DeNASJob (e.g. deploy/samples/digits.yaml) or DeNASCampaign "
        "(deploy/samples/campaign-digits.yaml) manifest",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<job name>)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard the previous run in --out (only the files DeNAS wrote there) instead of resuming it",
    )
    parser.add_argument(
        "--scorer",
        help="score with 'package.module:callable' instead of denas.scores (tests and benchmarks)",
    )
    parser.add_argument(
        "--progress",
        choices=["auto", "bar", "json"],
        default="auto",
        help="progress bars (bar), JSON lines (json) or bars only on a terminal (auto)",
    )


class _Bars:
    """Progress bars for generations and epochs on a TTY, JSON lines otherwise."""

    def __init__(self, mode: str):
        self.bars = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.current: dict[str, Any] = {}

    def __call__(self, what: str, event: dict[str, Any]) -> None:
        if not self.bars:
            print(json.dumps({"step": what, **event}), flush=True)
            return
        from tqdm import tqdm

        if event.get("event") == "startup":  # what a process does before its first bar
            tqdm.write(f"{what}: {event.get('message', event.get('stage'))}", file=sys.stderr)
            return
        if event.get("event") == "scored":  # inside a generation: candidates scored, with an ETA
            self._scored(what, event)
            return
        if what == "search" and isinstance(event.get("selection"), dict):
            self._selection_bar(event["selection"])
            return
        key, total_key = ("generation", "generations") if what == "search" else ("epoch", "epochs")
        if key not in event:
            return
        bar = self.current.get(what)
        if bar is None:
            bar = tqdm(total=event.get(total_key), desc=what, unit=key, file=sys.stderr, leave=True)
            self.current[what] = bar
        bar.n = int(event[key])
        if what == "search":
            bar.set_postfix(
                best=f"{event.get('best_score', float('nan')):.4g}", evaluated=event.get("evaluated")
            )
        else:
            bar.set_postfix({k: f"{event[k]:.4g}" for k in ("loss", "metric") if event.get(k) is not None})
        bar.refresh()

    def _scored(self, what: str, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        key = f"{what}-generation"
        bar = self.current.get(key)
        if bar is None or bar.desc.strip() != f"generation {event['of_generation']}":
            if bar is not None:
                bar.close()
            bar = tqdm(
                total=event["total"],
                desc=f"  generation {event['of_generation']}",
                unit="cand",
                file=sys.stderr,
                leave=False,
            )
            self.current[key] = bar
        bar.n = int(event["done"])
        bar.refresh()

    def _selection_bar(self, sel: dict[str, Any]) -> None:
        """One bar per selection rung (short training of the search's top candidates)."""
        from tqdm import tqdm

        name = f"selection rung {sel['rung'] + 1}/{sel['rungs']}"
        if name not in self.current:
            self.current[name] = tqdm(total=sel["total"], desc=name, unit="run", file=sys.stderr, leave=True)
        bar = self.current[name]
        if bar.total != sel["total"]:  # rung 0 grows by the surrogate's (and steering's) picks
            bar.total = sel["total"]
        bar.n = int(sel["done"])
        bar.refresh()

    def close(self) -> None:
        for bar in self.current.values():
            bar.close()


def run(args: argparse.Namespace) -> int:
    # within a second of start, before torch is imported: what start-up is doing
    print(
        f"denas run: checking {args.job} (schema, data set, search space: imports torch, a few seconds)",
        file=sys.stderr,
        flush=True,
    )
    checked = time.monotonic()
    from denas.campaign.spec import KIND as CAMPAIGN
    from denas.campaign.spec import manifest_kind
    from denas.local.executor import LocalRun, StepFailed
    from denas.local.report import make_plots, summary_table, write_html
    from denas.local.rundir import RunDirError, prepare

    if manifest_kind(args.job) == CAMPAIGN:
        from denas.campaign.command import run as run_campaign

        return run_campaign(args)

    out_problem = preflight.out_dir_problem(args.out) if args.out else None
    try:
        if out_problem:
            raise JobValidationError("--out", [out_problem])
        job = load_checked_job(args.job)
    except (JobValidationError, FileNotFoundError) as exc:
        print(f"denas run: error: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out or Path("runs") / job.name
    trained_rank = job.spec["training"]["structureRank"]
    try:
        rundir = prepare(out, job, fresh=args.fresh)
    except RunDirError as exc:
        print(f"denas run: {exc}", file=sys.stderr)
        return 2
    resumed = (out / "status.json").exists() and "search" not in rundir.rerun
    if rundir.kept:
        print(
            f"denas run: --fresh removed DeNAS's files in {out} and left {len(rundir.kept)} "
            f"entries it did not write: {', '.join(rundir.kept[:6])}",
            file=sys.stderr,
        )
    if rundir.done:
        status = json.loads((out / "status.json").read_text())
        print(summary_table(status, trained_rank))
        print(
            f"\ndenas run: job '{job.name}' already finished in {out} at {status.get('completionTime')} "
            f"with this spec; nothing to do (add --fresh to run it again).\n"
            f"{status['phase']}. status: {out / 'status.json'}  report: {out / 'report.html'}",
            file=sys.stderr,
        )
        return 0
    if rundir.rerun:
        kept = "" if "search" in rundir.rerun else " (the search result is kept)"
        print(
            f"denas run: the spec changed since the run in {out}:\n  "
            + "\n  ".join(rundir.changes)
            + f"\nrunning {' and '.join(rundir.rerun)} again{kept}",
            file=sys.stderr,
        )
    print(
        f"denas run: job '{job.name}' ({job.domain}) -> {out}" + (" (resuming)" if resumed else ""),
        file=sys.stderr,
    )
    bars = _Bars(args.progress)
    started = time.monotonic()
    extra = ["--scorer", args.scorer] if args.scorer else []
    local = LocalRun(job=job, job_file=Path(args.job), out=out, on_progress=bars, search_args=extra)
    st.record_stage_time(local.status, "validate", time.monotonic() - checked)
    try:
        status = local.run()
    except StepFailed as exc:
        bars.close()
        print(f"denas run: FAILED ({exc.reason}): {exc}", file=sys.stderr)
        if exc.failure is not None and exc.failure.tail:
            print(f"last lines of logs/{exc.failure.process}.log:", file=sys.stderr)
            print("  " + "\n  ".join(exc.failure.tail), file=sys.stderr)
        write_html(out, job.name, make_plots(out), trained_rank)
        status = json.loads((out / "status.json").read_text())
    else:
        bars.close()
        reporting = time.monotonic()
        write_html(out, job.name, make_plots(out), trained_rank)
        st.record_stage_time(status, "report", time.monotonic() - reporting)
        local.save_status()
        print(summary_table(status, trained_rank))
    if line := st.stage_times_line(status):
        print(f"time per stage: {line}", file=sys.stderr)
    # The last line and the exit code come from status.json, so they can never disagree with it.
    phase = status["phase"]
    print(
        f"\n{phase} in {time.monotonic() - started:.0f} s. status: {out / 'status.json'}  "
        f"result: {out / 'result.json'}  report: {out / 'report.html'}",
        file=sys.stderr,
    )
    return 0 if phase == "Succeeded" else 1
