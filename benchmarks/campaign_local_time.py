"""Wall time of the local campaign sample when its parallel cells share the CPUs, against the same
campaign whose cells each take every CPU (what `denas run campaign.yaml` did before), in one run.

`deploy/samples/campaign-digits.yaml` runs 4 cells, 2 at once. Each arm runs the whole campaign
(`denas run`: search with selection, training, export, report) in a fresh folder, one arm after
the other, in this process; the only difference is the CPUs each cell's processes are told they
have (`LocalRun.cpus`: the machine's CPUs divided by the cells running at once, or all of them).

    python benchmarks/campaign_local_time.py --json benchmarks/figures/campaign_local_time.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"


def run_arm(arm: str, out: Path) -> dict:
    from denas.campaign import local as L
    from denas.campaign.spec import load_campaign
    from denas.local.executor import available_cpus

    campaign = load_campaign(SAMPLE, engine=True)
    parallel = int(campaign.spec["maxParallel"])
    real = L.available_cpus
    if arm == "every-cell-all-cpus":  # each cell believes it has the machine to itself
        L.available_cpus = lambda: available_cpus() * parallel
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = L.LocalCampaign(campaign, out).run()
    finally:
        L.available_cpus = real
    seconds = time.monotonic() - started
    cells = {}
    for c in status["cells"]:
        cell = json.loads((out / "cells" / c["name"] / "status.json").read_text())
        cells[c["name"]] = {
            k: v.get("seconds") for k, v in (cell.get("stages") or {}).items() if isinstance(v, dict)
        }
        cells[c["name"]]["winner"] = (c.get("best") or {}).get("hash")
    return {"arm": arm, "phase": status["phase"], "seconds": round(seconds, 1), "cells": cells}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write both arms and the ratio here")
    args = parser.parse_args(argv)
    from denas.local.executor import available_cpus

    rows = []
    for arm in ("every-cell-all-cpus", "cpus-shared"):
        with tempfile.TemporaryDirectory(prefix="denas-campaign-time-") as tmp:
            rows.append(run_arm(arm, Path(tmp) / "run"))
        print(json.dumps(rows[-1]), flush=True)
    ratio = rows[1]["seconds"] / rows[0]["seconds"]
    print(
        f"campaign sample on {available_cpus()} CPUs: every cell all CPUs {rows[0]['seconds']:.0f} s, "
        f"CPUs shared {rows[1]['seconds']:.0f} s: {ratio:.2f}x the time"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"cpus": available_cpus(), "rows": rows, "ratio": round(ratio, 3)}, indent=1) + "\n"
        )
    return 0 if all(r["phase"] == "Succeeded" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
