"""`denas run JOB.yaml --out DIR`: the local executor's command line."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from denas.job import JobValidationError
from denas.local.authoring import load_checked_job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="path of a DeNASJob manifest (YAML), e.g. deploy/samples/digits.yaml")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<job name>)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard a previous run in --out instead of resuming it",
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

    def _selection_bar(self, sel: dict[str, Any]) -> None:
        """One bar per selection rung (short training of the search's top candidates)."""
        from tqdm import tqdm

        name = f"selection rung {sel['rung'] + 1}/{sel['rungs']}"
        if name not in self.current:
            self.current[name] = tqdm(total=sel["total"], desc=name, unit="run", file=sys.stderr, leave=True)
        self.current[name].n = int(sel["done"])
        self.current[name].refresh()

    def close(self) -> None:
        for bar in self.current.values():
            bar.close()


def run(args: argparse.Namespace) -> int:
    from denas.local.executor import LocalRun, StepFailed
    from denas.local.report import make_plots, summary_table, write_html

    try:
        job = load_checked_job(args.job)
    except (JobValidationError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2
    out: Path = args.out or Path("runs") / job.name
    trained_rank = job.spec["training"]["structureRank"]
    if args.fresh and out.exists():
        shutil.rmtree(out)
    resumed = (out / "status.json").exists()
    print(
        f"denas run: job '{job.name}' ({job.domain}) -> {out}" + (" (resuming)" if resumed else ""),
        file=sys.stderr,
    )
    bars = _Bars(args.progress)
    started = time.monotonic()
    local = LocalRun(job=job, job_file=Path(args.job), out=out, on_progress=bars)
    try:
        status = local.run()
    except StepFailed as exc:
        bars.close()
        print(f"denas run: FAILED ({exc.reason}): {exc}", file=sys.stderr)
        write_html(out, job.name, make_plots(out), trained_rank)
        print(f"status: {out / 'status.json'}   report: {out / 'report.html'}", file=sys.stderr)
        return 1
    bars.close()
    plots = make_plots(out)
    report = write_html(out, job.name, plots, trained_rank)
    print(summary_table(status, trained_rank))
    print(
        f"\n{status['phase']} in {time.monotonic() - started:.0f} s. "
        f"status: {out / 'status.json'}  result: {out / 'result.json'}  report: {report}",
        file=sys.stderr,
    )
    return 0
