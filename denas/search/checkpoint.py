"""Atomic files in the output directory: the checkpoint, the score cache, JSON documents.

Every write goes to a temporary file in the same directory and is moved into place with
``os.replace``, so a kill at any moment leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pkl"
CACHE = "score_cache.jsonl"
HISTORY = "history.jsonl"
RESULT = "result.json"
CHECKPOINT_VERSION = 1

log = logging.getLogger(__name__)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(out_dir / CHECKPOINT, pickle.dumps({"version": CHECKPOINT_VERSION, **state}))


def load_checkpoint(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / CHECKPOINT
    if not path.exists():
        return None
    with open(path, "rb") as f:
        state = pickle.load(f)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')} is not {CHECKPOINT_VERSION}")
    return state


class ScoreCache:
    """Scored records keyed by structure hash + score settings + hardware fingerprint + who
    scored them (scorer identity and scoring-code version, `denas.search.score_store`).

    Appended as each candidate is scored, so a resumed search never scores a structure again,
    not even one of the generation that was in flight when the process was killed.  Records of
    another scorer or other scoring code are ignored with a warning: a real search must never
    return what a test scorer (or last month's code) computed.
    """

    def __init__(self, path: Path, context_key: str, provenance: Any):
        self.path = path
        self.context_key = context_key
        self.provenance = {"scorer": provenance.scorer, "code": provenance.code}
        self.records: dict[str, dict[str, Any]] = {}
        foreign: dict[str, int] = {}
        if path.exists():
            with open(path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a torn last line from a kill mid-write
                    if entry.get("key") != context_key:
                        continue  # other score settings or hardware: a different question
                    if entry.get("provenance") != self.provenance:
                        who = entry.get("provenance") or {"scorer": "unknown (an older DeNAS)", "code": "?"}
                        label = f"{who.get('scorer')} (code {who.get('code')})"
                        foreign[label] = foreign.get(label, 0) + 1
                        continue
                    self.records[entry["record"]["hash"]] = entry["record"]
        for label, n in foreign.items():
            log.warning(
                "score cache %s: ignoring %d record(s) written by %s; this search scores with %s (code %s)",
                path,
                n,
                label,
                self.provenance["scorer"],
                self.provenance["code"],
            )

    def get(self, structure_hash: str) -> dict[str, Any] | None:
        return self.records.get(structure_hash)

    def put(self, record: dict[str, Any]) -> None:
        if record["hash"] in self.records:
            return
        self.records[record["hash"]] = record
        with open(self.path, "a") as f:
            entry = {"key": self.context_key, "provenance": self.provenance, "record": record}
            f.write(json.dumps(entry) + "\n")
