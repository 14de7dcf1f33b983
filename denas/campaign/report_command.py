"""`denas report`: redraw a campaign's comparison (report.json, pareto.png, report.html).

Two sources of the cells' results:

- ``denas report DIR``: a local campaign folder (`denas run campaign.yaml --out DIR`):
  DIR/status.json and DIR/cells/<cell>/result.json; the report is written into DIR.
- ``denas report --claim ROOT --campaign NAME --status FILE``: a campaign on a cluster, its
  claim mounted (or copied) at ROOT. FILE is the campaign's status (`.status` of the DeNASCampaign,
  or the whole object as JSON); each cell's result is ``ROOT/<cells[].resultPath>`` when the line
  has one (the operator's report pod gets such a file), else the newest
  ``ROOT/<cell>/search-*/result.json`` (a null resultPath: the cell has no result). The report goes to ``--out`` (default
  ``ROOT/<NAME>-report/``), a folder DeNAS marks as its own (``.denas-report.json``) and in which
  it writes only report.json, pareto.png and report.html: it refuses a folder that holds anything
  else it did not write, and never writes through a symbolic link.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from denas.campaign.local import CELLS
from denas.campaign.report import build_report, write_report
from denas.search.checkpoint import atomic_write_json

MARKER = ".denas-report.json"
OWN_FILES = ("report.json", "pareto.png", "report.html")

EPILOG = """\
examples:
  denas report runs/digits-campaign
      a local campaign's folder (denas run campaign.yaml --out runs/digits-campaign)
  denas report --claim /mnt/claim --campaign digits-campaign --status status.json
      a cluster campaign: the claim mounted at /mnt/claim, status.json from
      kubectl get dnc digits-campaign -o json; writes /mnt/claim/digits-campaign-report/
"""


class ReportInputError(Exception):
    """Bad input: the message names the file or flag and the fix (exit code 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "dir",
        type=Path,
        nargs="?",
        help="a local campaign's output folder (`denas run campaign.yaml --out DIR`); "
        "the report is written there",
    )
    claim = parser.add_argument_group(
        "a campaign on a cluster (its claim): instead of DIR, all of --claim, --campaign and --status"
    )
    claim.add_argument(
        "--claim",
        type=Path,
        metavar="ROOT",
        help="where the campaign's PersistentVolumeClaim (spec.template.storage.claimName) is "
        "mounted; the cells' results are read from ROOT/<cell>/search-<fingerprint>/result.json",
    )
    claim.add_argument(
        "--campaign",
        metavar="NAME",
        help="the DeNASCampaign's name (default: metadata.name when --status is the whole object)",
    )
    claim.add_argument(
        "--status",
        type=Path,
        metavar="FILE",
        help="the campaign's status as JSON: `.status` of the DeNASCampaign or the whole object "
        "(kubectl get dnc NAME -o json)",
    )
    claim.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where to write report.json, pareto.png, report.html (default ROOT/<NAME>-report); "
        "a new or empty folder, or one an earlier `denas report --claim` of this campaign wrote",
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.claim is None and args.campaign is None and args.status is None and args.out is None:
            if args.dir is None:
                raise ReportInputError(
                    "give a campaign folder (denas report DIR) or a claim "
                    "(denas report --claim ROOT --campaign NAME --status FILE)"
                )
            return _local(args.dir)
        if args.dir is not None:
            raise ReportInputError(
                f"DIR ({args.dir}) and --claim/--campaign/--status/--out are two ways to run the "
                "report: give one of them"
            )
        return _claim(args)
    except ReportInputError as exc:
        print(f"denas report: {exc}", file=sys.stderr)
        return 2


def _read_status(path: Path, missing: str) -> tuple[dict[str, Any], str | None]:
    """(the campaign status, the campaign's name when the file is the whole object)."""
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportInputError(f"{path}: no such file; {missing}") from None
    except IsADirectoryError:
        raise ReportInputError(f"{path} is a folder; {missing}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportInputError(f"{path}: not a JSON campaign status ({exc})") from None
    name = None
    if isinstance(status, dict) and isinstance(status.get("status"), dict) and "kind" in status:
        name = (status.get("metadata") or {}).get("name")
        status = status["status"]  # the whole DeNASCampaign object
    if not isinstance(status, dict) or not isinstance(status.get("cells"), list):
        raise ReportInputError(f"{path} is not a campaign's status (no cells)")
    for i, cell in enumerate(status["cells"]):
        if not isinstance(cell, dict) or not all(isinstance(cell.get(k), str) for k in ("name", "target")):
            raise ReportInputError(f"{path}: cells[{i}] has no name or target: not a campaign's status")
        cell.setdefault("constraints", "")
        cell.setdefault("phase", "Unknown")
    return status, name if isinstance(name, str) else None


def _read_result(path: Path) -> dict[str, Any] | None:
    """A cell's result.json; a broken file is named on stderr and the cell drawn without a winner."""
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(
            f"denas report: warning: {path}: unreadable result ({exc}); cell shown without a result",
            file=sys.stderr,
        )
        return None
    if not isinstance(result, dict):
        print(
            f"denas report: warning: {path}: not a search result; cell shown without a result",
            file=sys.stderr,
        )
        return None
    return result


def _local(folder: Path) -> int:
    status, _ = _read_status(folder / "status.json", "pass the --out folder of a campaign run")
    results = {}
    for cell in status["cells"]:
        path = folder / CELLS / cell["name"] / "result.json"
        if path.exists() and (result := _read_result(path)) is not None:
            results[cell["name"]] = result
    report = write_report(folder, folder.name, build_report(status["cells"], results, status))
    print(f"report: {report} ({len(results)}/{len(status['cells'])} cells with a result)")
    return 0


def cell_result_path(root: Path, cell: dict[str, Any]) -> Path | None:
    """Where the cell's result.json is on the claim (None: nowhere)."""
    if "resultPath" in cell:  # the operator's file: null means the cell has no result
        rel = cell["resultPath"]
        if not rel:
            return None
        if not isinstance(rel, str):
            raise ReportInputError(f"cells[{cell['name']}].resultPath must be a string path, not {rel!r}")
        path = Path(rel)
        if path.is_absolute() or ".." in path.parts:
            raise ReportInputError(
                f"cells[{cell['name']}].resultPath {rel!r} must be a path relative to the claim, without '..'"
            )
        return root / path if (root / path).is_file() else None
    found = [p for p in (root / cell["name"]).glob("search-*/result.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _claim(args: argparse.Namespace) -> int:
    missing = [f for f, v in (("--claim", args.claim), ("--status", args.status)) if v is None]
    if missing:
        raise ReportInputError(
            f"{' and '.join(missing)} missing: a claim's report needs --claim ROOT and --status FILE"
        )
    if not args.claim.is_dir():
        raise ReportInputError(
            f"--claim {args.claim}: no such folder; give where the campaign's claim is mounted"
        )
    status, own_name = _read_status(
        args.status, "pass the campaign's status as JSON (kubectl get dnc NAME -o json > FILE)"
    )
    name = args.campaign or own_name
    if name is None:
        raise ReportInputError(
            "--campaign NAME missing: the DeNASCampaign's name (it names the report and its folder)"
        )
    out = args.out if args.out is not None else args.claim / f"{name}-report"
    paths = {c["name"]: cell_result_path(args.claim, c) for c in status["cells"]}  # checked before writing
    prepare_report_dir(out, name)
    results = {}
    for cell, path in paths.items():
        if path is not None and (result := _read_result(path)) is not None:
            results[cell] = result
    cells = [{k: v for k, v in c.items() if k != "resultPath"} for c in status["cells"]]
    report = write_report(out, name, build_report(cells, results, status))
    print(f"report: {report} ({len(results)}/{len(cells)} cells with a result)")
    return 0


def prepare_report_dir(out: Path, campaign: str) -> None:
    """Make ``out`` this campaign's report folder, or raise ReportInputError saying why not.

    DeNAS writes only its own entries (OWN_FILES) in a folder it marked (MARKER), never through a
    symbolic link, and never into a folder it did not mark unless that folder is empty."""
    if out.is_symlink():
        raise ReportInputError(
            f"--out {out} is a symbolic link: DeNAS does not write through links; give a folder"
        )
    if out.exists() and not out.is_dir():
        raise ReportInputError(f"--out {out} is a file, not a folder: give a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportInputError(f"--out {out}: cannot create the folder ({exc})") from None
    marker_path = out / MARKER
    marker = None
    if marker_path.is_file() and not marker_path.is_symlink():
        try:
            marker = json.loads(marker_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            marker = None
    if not (isinstance(marker, dict) and marker.get("kind") == "DeNASReport"):
        entries = sorted(os.listdir(out))
        if entries:
            shown = ", ".join(entries[:6]) + (f" and {len(entries) - 6} more" if len(entries) > 6 else "")
            raise ReportInputError(
                f"--out {out} is not empty and is not a DeNAS report folder (no {MARKER}): it holds "
                f"{shown}. DeNAS never overwrites files it did not write: give a new or empty folder "
                "with --out, or move those files away yourself."
            )
        atomic_write_json(
            marker_path,
            {
                "kind": "DeNASReport",
                "note": "written by `denas report --claim`: DeNAS writes only ownEntries here",
                "campaign": campaign,
                "ownEntries": list(OWN_FILES),
            },
        )
    elif marker.get("campaign") != campaign:
        raise ReportInputError(
            f"--out {out} holds the report of campaign '{marker.get('campaign')}', and this is "
            f"'{campaign}': give another folder with --out"
        )
    for entry in OWN_FILES:
        path = out / entry
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ReportInputError(
                f"{path} is a link or a folder, not a file DeNAS wrote: move it away, the report writes {entry} there"
            )
