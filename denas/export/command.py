"""`denas export RUN_DIR`: (re-)export the trained model of a finished `denas run` folder.

Writes RUN_DIR/model/ (TorchScript, ONNX, for bert a Hugging Face folder, card.md + card.json) and
updates RUN_DIR/status.json (``modelRef`` and the ``ExportFailed`` condition).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a `denas run --out` folder holding train/model.pt")
    parser.add_argument(
        "--job",
        help="the DeNASJob manifest (default: the spec recorded in RUN_DIR/model/card.json by the last export, else the one `denas run` recorded in RUN_DIR)",
    )
    parser.add_argument(
        "--formats",
        help="comma-separated subset of torchscript,onnx,huggingface (default: spec.export.formats)",
    )


def _spec(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if args.job:
        from denas.local.authoring import load_checked_job

        job = load_checked_job(args.job)
        return job.spec, job.name
    card = args.run_dir / "model" / "card.json"
    if card.is_file():
        recorded = json.loads(card.read_text())
        return recorded["spec"], recorded.get("job", "")
    from denas.local.rundir import read_marker

    marker = read_marker(args.run_dir)  # `denas run` records the job it ran in the run folder
    if marker and isinstance(marker.get("spec"), dict):
        return marker["spec"], str(marker.get("job", ""))
    raise ValueError(
        f"{args.run_dir}: neither an earlier export ({card}) nor the run folder's marker records the "
        "job's spec; pass --job JOB.yaml"
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from denas.job import JobValidationError

    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    run_dir: Path = args.run_dir
    if not (run_dir / "train" / "model.pt").is_file():
        print(
            f"denas export: error: {run_dir / 'train' / 'model.pt'}: no trained model; run `denas run` first",
            file=sys.stderr,
        )
        return 2
    try:
        spec, job_name = _spec(args)
    except (JobValidationError, FileNotFoundError, ValueError) as exc:
        print(f"denas export: error: {exc}", file=sys.stderr)
        return 2
    if args.formats:
        from denas.export.formats import FORMATS

        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            print(
                f"denas export: error: --formats: unknown format {unknown[0]!r}; choose from {sorted(FORMATS)}",
                file=sys.stderr,
            )
            return 2
        spec = {**spec, "export": {**(spec.get("export") or {}), "formats": formats}}
    from denas.export.stage import export_run
    from denas.export.status import apply_outcome

    outcome = export_run(run_dir, spec, job_name)
    status_file = run_dir / "status.json"
    if status_file.is_file():
        status = json.loads(status_file.read_text())
        status = apply_outcome(status, outcome, status.get("observedGeneration"))
        tmp = status_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        tmp.replace(status_file)
    print(
        ("denas export: " if outcome["ok"] else "denas export: FAILED: ") + outcome["message"],
        file=sys.stderr,
    )
    return 0 if outcome["ok"] else 1
