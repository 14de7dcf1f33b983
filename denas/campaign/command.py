"""`denas run` / `denas validate` for a DeNASCampaign manifest (the commands dispatch on `kind`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from denas.campaign.spec import CampaignValidationError, load_campaign


def run_validate(args: argparse.Namespace) -> int:
    try:
        campaign = load_campaign(args.job, engine=not args.schema_only)
    except (CampaignValidationError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2  # bad input, as for a DeNASJob
    if args.output == "yaml":
        import yaml

        print(yaml.safe_dump(campaign.manifest, sort_keys=False), end="")
    elif args.output == "json":
        print(json.dumps(campaign.manifest, indent=2))
    else:
        cells = campaign.cells()
        print(
            f"{args.job}: valid DeNASCampaign '{campaign.name}' ({len(cells)} cells: "
            f"{', '.join(c.key for c in cells)}; at most {campaign.spec['maxParallel']} at once)"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    from denas.campaign.local import CampaignDirError, LocalCampaign, prepare_campaign_dir

    try:
        campaign = load_campaign(args.job, engine=True)
    except (CampaignValidationError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2
    out: Path = args.out or Path("runs") / campaign.name
    if args.fresh and out.exists():
        print(
            "denas run: --fresh is not supported for a campaign (it would delete every cell); "
            "choose a new --out directory",
            file=sys.stderr,
        )
        return 2
    try:
        prepare_campaign_dir(out, campaign.name)
    except CampaignDirError as exc:
        print(f"denas run: {exc}", file=sys.stderr)
        return 2
    cells = campaign.cells()
    print(
        f"denas run: campaign '{campaign.name}' ({len(cells)} cells, at most "
        f"{campaign.spec['maxParallel']} at once) -> {out}",
        file=sys.stderr,
    )
    tty = args.progress == "bar" or (args.progress == "auto" and sys.stderr.isatty())

    def progress(cell: str, step: str, event: dict[str, Any]) -> None:
        if step == "cell" or not tty:
            line = {"cell": cell, "step": step, **{k: v for k, v in event.items() if k != "result"}}
            print(json.dumps(line, default=str), file=sys.stderr if tty else sys.stdout, flush=True)

    started = time.monotonic()
    extra = ["--scorer", args.scorer] if getattr(args, "scorer", None) else []
    status = LocalCampaign(campaign, out, search_args=extra, on_progress=progress).run()
    for c in status["cells"]:
        best = c.get("best") or {}
        print(
            f"{c['target']:>12} {c['constraints']:>12} {c['phase']:>10}  best {best.get('hash', '-')} "
            f"DE-Score {best.get('deScore', float('nan')):.4g}  latency {best.get('latencyMs', float('nan')):.3g} ms"
        )
    print(
        f"\n{status['phase']} in {time.monotonic() - started:.0f} s; DE-Scores computed {status['scoresComputed']}, "
        f"reused {status['scoresReused']}; selection runs trained {status['selectionRunsComputed']}, "
        f"reused {status['selectionRunsReused']}. status: {out / 'status.json'}  report: {out / 'report.html'}",
        file=sys.stderr,
    )
    return 0 if status["phase"] == "Succeeded" else 1
