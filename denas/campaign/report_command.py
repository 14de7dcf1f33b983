"""`denas report DIR`: redraw a campaign's comparison from its folder (status.json + cells/*/result.json)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from denas.campaign.local import CELLS
from denas.campaign.report import build_report, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", type=Path, help="a campaign's output folder (`denas run campaign.yaml --out DIR`)"
    )


def run(args: argparse.Namespace) -> int:
    status_file = args.dir / "status.json"
    try:
        status = json.loads(status_file.read_text())
    except FileNotFoundError:
        print(
            f"denas report: {status_file}: no such file; pass the --out folder of a campaign run",
            file=sys.stderr,
        )
        return 2
    if "cells" not in status:
        print(f"denas report: {status_file} is not a campaign's status (no cells)", file=sys.stderr)
        return 2
    results = {}
    for cell in status["cells"]:
        path = args.dir / CELLS / cell["name"] / "result.json"
        if path.exists():
            results[cell["name"]] = json.loads(path.read_text())
    name = args.dir.name
    report = write_report(args.dir, name, build_report(status["cells"], results, status))
    print(f"report: {report} ({len(results)}/{len(status['cells'])} cells with a result)")
    return 0
