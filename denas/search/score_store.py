"""Who computed a score, with which code, and the campaign-wide store of hardware-free scores.

Two caches key their records by the same *provenance* (`ScoreProvenance`): the scorer's identity
(``module:qualname``, or a scorer's own ``scorer_identity``) and a version of the scoring code (a
hash of the package's scoring and space-building sources, plus the scorer's own module when it
lives outside the package).  A record written by another scorer (e.g. the analytic test scorer) or
by other scoring code is never reused: it is ignored with a warning.

`ScoreStore` holds the DE-Score and its components (they do not depend on the CPU); latency is
measured by each job on its own node pool, and shared (a second store in ``latency/``, keyed by
the hardware fingerprint, see `denas.search.evaluator.Evaluator`) only between jobs on identical
hardware.  The selection stage's short-training metrics are shared the same way (a third store in
``selection/``, keyed by structure, epochs, data, recipe, compute path and training code, see
`denas.search.select_stage.RunHandler`): a structure trained in one cell is not trained again in
another.  It is a directory of one JSON file per key
(structure hash, score settings, candidate seed, scorer identity, code version), which several
processes share safely on one machine and on a ReadWriteMany claim:

- a result file is written to a temporary name and renamed into place (atomic on POSIX and NFS);
- before computing, a process *claims* the key by creating ``<key>.claim`` with O_CREAT|O_EXCL
  (atomic on local filesystems and NFSv3+); the others wait for the result instead of computing
  the same score twice.  While it computes, the owner touches its claims every ``beat_s`` (a
  heartbeat thread); a claim untouched for ``stale_s`` (its owner died, on any node) is taken
  over, and so is one written on this host by a process that no longer runs (a restarted
  container: at once).  A live owner's claim is waited for, up to ``wait_s``.

Why files on the claim rather than a ConfigMap: a campaign scores hundreds to thousands of
structures; a ConfigMap caps at 1 MiB and every write would be an etcd write plus a
read-modify-write conflict loop between jobs, and the pods would need RBAC on an object they do
not own.  The claim already holds the jobs' checkpoints, and a file per key never conflicts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from denas.search.checkpoint import atomic_write_json

log = logging.getLogger(__name__)

#: this process's identity in its claims (pids repeat across container restarts)
_PROCESS = uuid.uuid4().hex
#: packages whose source decides a DE-Score: the proxies, how a structure becomes a model, and how
#: the job's data become the scoring batch
SCORING_PACKAGES = ("denas.scores", "denas.spaces", "denas.data")
#: single modules that decide it too: the scoring batch and the training loss scored with, the
#: scorer that puts them together
SCORING_MODULES = (
    ("denas.search", "score_inputs.py"),
    ("denas.search", "evaluator.py"),
    ("denas.train", "tasks.py"),
    ("denas.train", "taskdata.py"),
)


@functools.cache
def _package_digest(package: str) -> str:
    digest = hashlib.sha256()
    root = resources.files(package)
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".py"):
            digest.update(entry.name.encode())
            digest.update(entry.read_bytes())
    return digest.hexdigest()


@functools.cache
def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def scorer_identity(scorer: Any) -> str:
    """``module:qualname`` of the scorer's function or class (a scorer may set ``scorer_identity``)."""
    own = getattr(scorer, "scorer_identity", None)
    if isinstance(own, str):
        return own
    target = scorer if callable(scorer) and hasattr(scorer, "__qualname__") else type(scorer)
    return f"{target.__module__}:{target.__qualname__}"


def _code_parts(packages: tuple[str, ...], modules: tuple[tuple[str, str], ...]) -> list[str]:
    """The package version and digests of ``packages`` and single ``modules`` (package, file)."""
    from denas import __version__

    parts = [__version__, *(_package_digest(p) for p in packages)]
    return parts + [_file_digest(str(resources.files(pkg) / name)) for pkg, name in modules]


def scoring_code_version(scorer: Any = None) -> str:
    """A digest of the scoring code: denas.scores and denas.spaces, and the scorer's own module
    when it lives elsewhere (a plug-in scorer's edits must invalidate its records too)."""
    parts = _code_parts(SCORING_PACKAGES, SCORING_MODULES)
    module = scorer_identity(scorer).partition(":")[0] if scorer is not None else "denas.scores"
    if not module.startswith("denas.scores"):
        import sys

        file = getattr(sys.modules.get(module), "__file__", None)
        if file:
            parts.append(_file_digest(file))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


#: the subfolder of a score store that holds the selection stage's short-training metrics
SELECTION_DIR = "selection"
#: what decides a selection run's metric (short training, `denas.search.select_stage`): how a
#: structure becomes a model, the data, and the training loop, optimizer and compute path
TRAINING_PACKAGES = ("denas.train", "denas.data", "denas.spaces")
TRAINING_MODULES = (("denas.search", "select_stage.py"), ("denas.search", "selection.py"))


def training_code_version() -> str:
    """A digest of the code a selection run's metric depends on (edits there invalidate records)."""
    parts = _code_parts(TRAINING_PACKAGES, TRAINING_MODULES)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScoreProvenance:
    scorer: str
    code: str

    @classmethod
    def of(cls, scorer: Any) -> ScoreProvenance:
        return cls(scorer_identity(scorer), scoring_code_version(scorer))


class ScoreStore:
    """Hardware-free scores (``de_score`` and components) shared by the jobs of a campaign."""

    def __init__(
        self,
        root: str | Path,
        *,
        wait_s: float = 1800.0,
        stale_s: float = 120.0,
        beat_s: float = 15.0,
        poll_s: float = 0.05,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.wait_s, self.stale_s, self.beat_s, self.poll_s = wait_s, stale_s, beat_s, poll_s
        self._held: set[str] = set()  # the claims this process holds (the heartbeat touches them)
        self._lock = threading.Lock()
        self._beater: threading.Thread | None = None

    def sub(self, name: str) -> ScoreStore:
        """A store in the subfolder ``name`` (latency, selection runs) with this one's timings."""
        return ScoreStore(
            self.root / name, wait_s=self.wait_s, stale_s=self.stale_s, beat_s=self.beat_s, poll_s=self.poll_s
        )

    @staticmethod
    def key(structure_hash: str, score_key: str, seed: int, provenance: ScoreProvenance) -> str:
        text = json.dumps([structure_hash, score_key, seed, provenance.scorer, provenance.code])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _result(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def _claim(self, key: str) -> Path:
        return self.root / f"{key}.claim"

    def read(self, key: str) -> dict[str, float] | None:
        try:
            entry = json.loads(self._result(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return entry.get("scores")

    def get_or_claim(self, key: str) -> dict[str, float] | None:
        """The stored scores, or None once this process holds the claim and must compute them
        (then call `put` or `release`).  Waits while another process holds a fresh claim."""
        deadline = time.monotonic() + self.wait_s
        while True:
            scores = self.read(key)
            if scores is not None:
                return scores
            try:
                fd = os.open(self._claim(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._claim_is_stale(key) or time.monotonic() > deadline:
                    # its owner died (or is far too slow): take over rather than wait forever
                    self._claim(key).unlink(missing_ok=True)
                    continue
                time.sleep(self.poll_s)
                continue
            self._hold(key)
            with os.fdopen(fd, "w") as f:
                owner = {
                    "pid": os.getpid(),
                    "process": _PROCESS,
                    "host": os.uname().nodename,
                    "at": time.time(),
                }
                f.write(json.dumps(owner))
            scores = self.read(key)  # written between our read and our claim
            if scores is not None:
                self.release(key)
                return scores
            return None

    def _hold(self, key: str) -> None:
        with self._lock:
            self._held.add(key)
            if self._beater is None:
                self._beater = threading.Thread(target=self._beat, name="denas-claim-heartbeat", daemon=True)
                self._beater.start()

    def _beat(self) -> None:
        """Touch this process's claims every ``beat_s`` until it holds none (then the thread ends)."""
        while True:
            time.sleep(self.beat_s)
            with self._lock:
                keys = list(self._held)
                if not keys:
                    self._beater = None
                    return
            for key in keys:
                try:
                    os.utime(self._claim(key))
                except OSError:  # released meanwhile, or the claim's volume is gone for a moment
                    pass

    def _claim_is_stale(self, key: str) -> bool:
        """A claim whose owner is gone: untouched for ``stale_s``, or written on this host by a
        process that no longer runs (a restarted container reuses pids: the process token tells)."""
        path = self._claim(key)
        try:
            if time.time() - path.stat().st_mtime > self.stale_s:
                return True
            owner = json.loads(path.read_text() or "{}")
        except (FileNotFoundError, json.JSONDecodeError):
            return False  # gone (read the result next), or being written right now
        if owner.get("host") != os.uname().nodename:
            return False
        pid = owner.get("pid")
        if pid == os.getpid():  # this pid, another process: a restarted pod's earlier life
            return owner.get("process") != _PROCESS
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, TypeError, ValueError):
            return False
        return False

    def put(self, key: str, scores: dict[str, float], about: dict[str, Any]) -> None:
        atomic_write_json(self._result(key), {**about, "scores": scores})
        self.release(key)

    def release(self, key: str) -> None:
        with self._lock:
            self._held.discard(key)
        self._claim(key).unlink(missing_ok=True)

    def count(self) -> int:
        return sum(1 for _ in self.root.glob("*.json"))
