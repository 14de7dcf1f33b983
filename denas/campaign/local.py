"""`denas run campaign.yaml --out DIR`: a DeNASCampaign on this machine.

Every cell is a local DeNASJob run (`denas.local.executor.LocalRun`) in ``DIR/cells/<job>/``, at
most ``spec.maxParallel`` at once, all sharing ``DIR/score-store/``: a structure's DE-Score is
computed once for the whole campaign, and each cell measures only latency.  Locally every target
is this machine: targets differ only in their name and nodeSelector (which nothing reads here), so
their latencies are measured on the same CPU.  Running the command again resumes: finished cells
are kept, unfinished ones resume from their checkpoints.

Layout::

    DIR/status.json        the campaign status the operator would write into the CR
    DIR/report.json        fronts, winners, good-everywhere structures, score counts
    DIR/pareto.png, DIR/report.html
    DIR/score-store/       the shared scores (one JSON file per structure and settings)
    DIR/cells/<job>/       one `denas run` output folder per cell (job.yaml, status.json, result.json, ...)
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from denas.campaign import summary as CS
from denas.campaign.report import build_report, write_report
from denas.campaign.spec import Campaign, Cell, cell_manifest
from denas.job import load_job
from denas.local.executor import available_cpus

STORE = "score-store"
CELLS = "cells"
#: the campaign folder's marker: whose folder it is (written before anything else)
MARKER = ".denas-campaign.json"
#: everything a local campaign writes at the top of its folder
OWN_ENTRIES = (
    MARKER,
    MARKER + ".tmp",
    "status.json",
    "status.json.tmp",
    "report.json",
    "report.html",
    "pareto.png",
    CELLS,
    STORE,
)


class CampaignDirError(Exception):
    """The folder cannot hold this campaign; the message says why and what to do."""


def _earlier_campaign_run(out: Path) -> bool:
    """A folder a campaign wrote before it marked its folders: cells/ and a campaign status.json."""
    try:
        status = json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return (out / CELLS).is_dir() and isinstance(status, dict) and isinstance(status.get("cells"), list)


def prepare_campaign_dir(out: Path, name: str) -> None:
    """Make ``out`` this campaign's folder, or raise CampaignDirError. A folder holding anything a
    campaign does not write, or another campaign's marker, is refused: DeNAS never overwrites a
    user's file (a report.html of theirs, say). An unmarked folder is adopted only when it is a
    campaign run from before the marker: only a campaign's entries, with cells/ and a campaign
    status.json among them."""
    if out.exists() and not out.is_dir():
        raise CampaignDirError(
            f"--out {out} is a file, not a folder: give a folder path, e.g. --out runs/{name}"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            owner = json.loads(marker.read_text()).get("campaign")
        except (OSError, ValueError, AttributeError):
            owner = None
        if owner == name:
            return
        raise CampaignDirError(
            f"--out {out} holds the campaign '{owner}', and this is campaign '{name}': a folder belongs to "
            f"one campaign. Use another folder, e.g. --out runs/{name}"
        )
    entries = os.listdir(out)
    foreign = sorted(e for e in entries if e not in OWN_ENTRIES or (out / e).is_symlink())
    if entries and not foreign and not _earlier_campaign_run(out):
        foreign = sorted(entries)  # e.g. a report.html of the user's own: never written over
    if foreign:
        shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        raise CampaignDirError(
            f"--out {out} is not empty and is not a DeNAS campaign folder (no {MARKER}): it holds {shown}. "
            f"DeNAS never deletes or overwrites files it did not write, so it will not run there. Give a new "
            f"or empty folder, e.g. --out runs/{name}; to reuse this one, move its files away yourself."
        )
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(
        json.dumps({"kind": "DeNASCampaignRun", "campaign": name, "ownEntries": list(OWN_ENTRIES)}) + "\n"
    )
    os.replace(tmp, marker)


Progress = Callable[[str, str, dict[str, Any]], None]  # (cell, step, event)


class LocalCampaign:
    def __init__(
        self,
        campaign: Campaign,
        out: Path,
        *,
        search_args: list[str] | None = None,
        on_progress: Progress = lambda cell, step, event: None,
    ):
        self.campaign = campaign
        self.out = out
        self.search_args = list(search_args or [])
        self.on_progress = on_progress
        self.lock = threading.Lock()
        self.cell_status: dict[str, dict[str, Any] | None] = {}
        self.cpus_per_cell: int | None = None
        previous = out / "status.json"
        self.conditions = json.loads(previous.read_text()).get("conditions", []) if previous.exists() else []

    @property
    def targets(self) -> list[str]:
        return [t["name"] for t in self.campaign.spec["matrix"]["targets"]]

    def run(self) -> dict[str, Any]:
        (self.out / CELLS).mkdir(parents=True, exist_ok=True)
        cells = self.campaign.cells()
        for cell in cells:
            self.cell_status[cell.name] = self._read_cell_status(cell)
        self._save()
        parallel = max(1, min(int(self.campaign.spec["maxParallel"]), len(cells)))
        # the cells running at once share this machine's CPUs: each gets its part for its threads
        # (two cells with a thread per core each run many times slower than one after the other)
        self.cpus_per_cell = max(1, available_cpus() // parallel)
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(self._run_cell, cells))
        status = self._save()
        results = {}
        for cell in cells:
            path = self.out / CELLS / cell.name / "result.json"
            if path.exists():
                results[cell.name] = json.loads(path.read_text())
        write_report(self.out, self.campaign.name, build_report(status["cells"], results, status))
        return status

    def _read_cell_status(self, cell: Cell) -> dict[str, Any] | None:
        path = self.out / CELLS / cell.name / "status.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _run_cell(self, cell: Cell) -> None:
        from denas.local.executor import LocalRun, StepFailed

        existing = self.cell_status.get(cell.name) or {}
        if existing.get("phase") == "Succeeded":
            return
        cell_dir = self.out / CELLS / cell.name
        cell_dir.mkdir(parents=True, exist_ok=True)
        job_file = cell_dir / "job.yaml"
        job_file.write_text(yaml.safe_dump(cell_manifest(self.campaign, cell), sort_keys=False))
        job = load_job(job_file)

        def progress(step: str, event: dict[str, Any]) -> None:
            self.on_progress(cell.name, step, event)
            self.cell_status[cell.name] = self._read_cell_status(cell)
            self._save()

        store = ["--score-store", str((self.out / STORE).resolve())]
        local = LocalRun(
            job=job,
            job_file=job_file,
            out=cell_dir,
            on_progress=progress,
            search_args=store + self.search_args,
            cpus=self.cpus_per_cell,
        )
        self.cell_status[cell.name] = {"phase": "Pending"}
        self._save()
        try:
            local.run()
            self.on_progress(cell.name, "cell", {"phase": "Succeeded"})
        except StepFailed as exc:
            self.on_progress(cell.name, "cell", {"phase": "Failed", "reason": exc.reason})
        except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the others
            self.on_progress(cell.name, "cell", {"phase": "Failed", "reason": str(exc)})
        self.cell_status[cell.name] = self._read_cell_status(cell) or {
            "phase": "Failed",
            "conditions": [{"type": "Failed", "status": "True", "message": "the cell wrote no status"}],
        }
        self._save()

    def _save(self) -> dict[str, Any]:
        with self.lock:
            lines = [CS.cell_status(c, self.cell_status.get(c.name)) for c in self.campaign.cells()]
            generation = self.campaign.manifest["metadata"].get("generation", 1)
            status = {
                "observedGeneration": generation,
                **CS.summarize(lines, self.targets, self.conditions, generation),
            }
            self.conditions = status["conditions"]
            tmp = self.out / "status.json.tmp"
            tmp.write_text(json.dumps(status, indent=2) + "\n")
            os.replace(tmp, self.out / "status.json")
            return status
