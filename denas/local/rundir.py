"""The run folder of `denas run`: whose it is, what DeNAS wrote there, and what a rerun must redo.

A run folder carries a marker, `.denas-run.json`, written before anything else: the job's name,
its spec and the same stage fingerprints the operator uses for spec edits
(`denas.fingerprints`). DeNAS only ever deletes its own entries (`OWN_FILES`, `OWN_DIRS`) in a
marked folder, never follows a symlink and never touches a folder it did not mark: a user's files
survive `--fresh`, `--out .` and every rerun. The export's `model/` folder counts as DeNAS's only
while it holds the card.json DeNAS writes there (`denas.export.card.written_by_denas`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from denas import status as st
from denas.export.card import written_by_denas
from denas.export.status import EXPORT_FAILED
from denas.fingerprints import changed_fields, fingerprints, search_fields, training_fields
from denas.job import Job

MARKER = ".denas-run.json"
# Everything DeNAS writes at the top of a run folder; nothing else there is ever deleted.
OWN_FILES = ("status.json", "status.json.tmp", "result.json", "report.html")
OWN_DIRS = ("search", "train", "logs", "plots")
# The export's folder is DeNAS's only when it holds DeNAS's card.json (`written_by_denas`): a user
# may keep a `model/` folder of their own in a run folder, and that one is never deleted.
EXPORT_DIR = "model"
# What each stage writes, cleared when the stage must run again.
STAGE_OUTPUTS = {
    "search": ("search", "result.json", "logs/search-events.jsonl"),
    "training": ("train", "logs/training-events.jsonl"),
}


class RunDirError(Exception):
    """The folder cannot be used as this job's run folder; the message says why and what to do."""


@dataclass
class RunDir:
    """What `prepare` found: `done` when the unchanged job already succeeded there."""

    out: Path
    done: bool = False
    rerun: list[str] = field(default_factory=list)  # stages whose inputs changed
    changes: list[str] = field(default_factory=list)  # the changed spec fields, for the user
    removed: int = 0  # entries --fresh deleted
    kept: list[str] = field(default_factory=list)  # entries --fresh left alone (not DeNAS's)


def read_marker(out: Path) -> dict[str, Any] | None:
    path = out / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("kind") == "DeNASRun" else None


def write_marker(out: Path, job: Job) -> None:
    marker = {
        "kind": "DeNASRun",
        "note": "written by `denas run`: this folder holds one DeNASJob's run; --fresh deletes only "
        f"the entries listed in ownEntries ({EXPORT_DIR}/ only while it holds DeNAS's export card.json)",
        "job": job.name,
        "fingerprints": fingerprints(job.spec),
        "spec": job.spec,
        "ownEntries": [*OWN_FILES, *(f"{d}/" for d in (*OWN_DIRS, EXPORT_DIR))],
    }
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, out / MARKER)


def prepare(out: Path, job: Job, fresh: bool = False) -> RunDir:
    """Make `out` this job's run folder, or raise RunDirError saying what is there and what to do."""
    if out.exists() and not out.is_dir():
        raise RunDirError(
            f"--out {out} is a file, not a folder: give a folder path, e.g. --out runs/{job.name}"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise RunDirError(
            f"--out {out} lies under a file: give a folder path, e.g. --out runs/{job.name}"
        ) from None
    entries = sorted(os.listdir(out))
    marker = read_marker(out)
    if marker is None:
        if entries:
            raise RunDirError(_not_ours_message(out, entries, job.name))
        write_marker(out, job)
        return RunDir(out)
    if fresh:
        removed, kept = remove_own_entries(out)
        write_marker(out, job)
        return RunDir(out, removed=removed, kept=kept)
    if marker.get("job") != job.name:
        raise RunDirError(
            f"--out {out} holds the run of job '{marker.get('job')}', and this is job '{job.name}': "
            f"a run folder belongs to one job. Use another folder (e.g. --out runs/{job.name}), or "
            f"add --fresh to discard the run of '{marker.get('job')}' there."
        )
    rerun, changes = _changed_stages(marker, job)
    if rerun:
        for stage in rerun:
            _clear_stage(out, stage)
        _reset_status(out, rerun)
        write_marker(out, job)
        return RunDir(out, rerun=rerun, changes=changes)
    status = _read_status(out)
    return RunDir(out, done=status.get("phase") == "Succeeded")


def _not_ours_message(out: Path, entries: list[str], name: str) -> str:
    shown = ", ".join(
        e + ("/" if (out / e).is_dir() and not (out / e).is_symlink() else "") for e in entries[:6]
    )
    more = f" and {len(entries) - 6} more" if len(entries) > 6 else ""
    older = " (an older DeNAS's run folder has status.json but no marker)" if "status.json" in entries else ""
    return (
        f"--out {out} is not empty and is not a DeNAS run folder (no {MARKER}){older}: it holds "
        f"{shown}{more}. DeNAS never deletes or overwrites files it did not write, so it will not "
        f"run there (with or without --fresh). Give a new or empty folder, e.g. --out runs/{name}; "
        f"to reuse this one, move its files away yourself."
    )


def _changed_stages(marker: dict[str, Any], job: Job) -> tuple[list[str], list[str]]:
    """The stages to redo for an edited spec (a search change redoes training too), and why."""
    old_fp, new_fp = marker.get("fingerprints") or {}, fingerprints(job.spec)
    old_spec = marker.get("spec") or {}
    if old_fp.get("search") != new_fp["search"]:
        return ["search", "training"], changed_fields(search_fields(old_spec), search_fields(job.spec))
    if old_fp.get("training") != new_fp["training"]:
        return ["training"], changed_fields(training_fields(old_spec), training_fields(job.spec))
    return [], []


def _clear_stage(out: Path, stage: str) -> None:
    for rel in STAGE_OUTPUTS[stage]:
        path = out / rel
        if path.is_symlink():
            continue
        if path.is_dir():
            _remove_tree(path, [])
        elif path.is_file():
            path.unlink()


def _reset_status(out: Path, stages: list[str]) -> None:
    """Forget what the rerun stages reported, and the job's outcome, so nothing stale is shown."""
    status = _read_status(out)
    if not status:
        return
    drop = {st.SUCCEEDED, st.FAILED}
    if "search" in stages:
        drop |= {st.SEARCH_RUNNING, st.SEARCH_SUCCEEDED}
        for key in ("bestStructures", "search"):
            status.pop(key, None)
    if "training" in stages:
        # a new model needs a new export: without this, the export stage would see the last
        # export's success and keep model/ from the old training
        drop |= {st.TRAINING_RUNNING, st.TRAINING_SUCCEEDED, EXPORT_FAILED}
        status.pop("training", None)
        status.pop("modelRef", None)
        stages = [*stages, "export"]
    status["conditions"] = [c for c in status.get("conditions", []) if c.get("type") not in drop]
    status.pop("completionTime", None)
    for stage in stages:
        status.get("stages", {}).pop(stage, None)
    status["phase"] = st.phase(status["conditions"])
    (out / "status.json").write_text(json.dumps(status, indent=2) + "\n")


def _read_status(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def remove_own_entries(out: Path) -> tuple[int, list[str]]:
    """Delete what DeNAS wrote in a marked folder; returns (#removed, entries left alone).

    Symlinks are never followed (a link's target is outside DeNAS's reach) and never removed:
    DeNAS does not create links, so a link is the user's.
    """
    removed, kept = 0, []
    for name in OWN_FILES:
        path = out / name
        if path.is_symlink():
            kept.append(name)
        elif path.is_file():
            path.unlink()
            removed += 1
    for name in OWN_DIRS:
        path = out / name
        if path.is_symlink():
            kept.append(name)
        elif path.is_dir():
            removed += _remove_tree(path, kept, prefix=f"{name}/")
    own = {*OWN_FILES, *OWN_DIRS, MARKER}
    export = out / EXPORT_DIR
    if written_by_denas(export):  # else it is the user's folder: listed as kept below
        removed += _remove_tree(export, kept, prefix=f"{EXPORT_DIR}/")
        own.add(EXPORT_DIR)
    kept += [e for e in sorted(os.listdir(out)) if e not in own]
    return removed, kept


def _remove_tree(path: Path, kept: list[str], prefix: str = "") -> int:
    removed = 0
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_symlink():
            kept.append(prefix + entry.name)
        elif entry.is_dir(follow_symlinks=False):
            removed += _remove_tree(Path(entry.path), kept, prefix + entry.name + "/")
        else:
            os.unlink(entry.path)
            removed += 1
    try:
        path.rmdir()
        removed += 1
    except OSError:  # holds a link we kept
        pass
    return removed
