"""Everything checkable about a DeNASJob before work starts, in one place.

The schema and CEL rules (`denas.job.validate_manifest`) are what the API server checks. This
module adds what only DeNAS knows, so a job that cannot work fails in milliseconds with the field
path and the fix instead of after minutes of search:

- ``spec.score.proxies`` / ``spec.score.weights``: every name is a registered proxy;
- ``spec.training.dataset``: a path (and tokenizer) where the data set needs one and, where the
  path resolves on this machine (``local``), that it exists, is readable and has the layout the
  loader expects (`denas.data.layouts`);
- ``spec.searchSpace`` keys (``engine``: needs the spaces, hence torch).

Used by `denas validate`, `denas run`, `denas search` and the operator's spec validation
(``local=False, engine=False``: the operator image has no torch and the data lives in the pods).
Torch-free unless ``engine``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from denas.data.layouts import dataset_problems
from denas.job import Job, JobValidationError, load_job

#: `denas.scores.registry.names()`, spelled out because the registry needs torch (the operator
#: has none); tests/test_preflight.py keeps the two equal
PROXY_NAMES: tuple[str, ...] = (
    "complexity",
    "diversity",
    "expressivity",
    "fisher",
    "flops",
    "grad_norm",
    "grasp",
    "jacob_cov",
    "layer_gain",
    "naswot",
    "params",
    "saliency",
    "snip",
    "synflow",
    "zico",
)
#: what `spec.score.weights` may name: every proxy plus the measured latency (`descore.TRANSFORMS`)
WEIGHTABLE: tuple[str, ...] = tuple(sorted((*PROXY_NAMES, "latency")))


def _supported(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def score_problems(score: Mapping[str, Any] | None) -> list[str]:
    """Unknown proxy names and weights in ``spec.score``."""
    score = score or {}
    problems = []
    for i, name in enumerate(score.get("proxies") or []):
        if name not in PROXY_NAMES:
            problems.append(
                f"spec.score.proxies[{i}]: Unsupported value: {json.dumps(name)}: supported values: "
                f"{_supported(PROXY_NAMES)}"
            )
    weights = score.get("weights") or {}
    for name, value in weights.items():
        if name not in WEIGHTABLE:
            problems.append(
                f"spec.score.weights.{name}: Unsupported value: {json.dumps(name)}: not a proxy; weights may "
                f"name: {_supported(WEIGHTABLE)}"
            )
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            problems.append(
                f"spec.score.weights.{name}: Invalid value: {json.dumps(value)}: must be a number"
            )
        elif abs(value) == float("inf"):
            problems.append(f"spec.score.weights.{name}: Invalid value: {value}: must be a finite number")
    return problems


def search_space_problems(spec: Mapping[str, Any]) -> list[str]:
    """The space's own checks of ``spec.searchSpace`` (unknown keys, bad choices). Imports torch."""
    from denas import spaces

    try:
        spaces.get(spec["domain"], spec.get("searchSpace") or {})
    except spaces.StructureError as exc:
        if exc.key == "domain":  # an unknown space, or a plug-in that failed to load
            return [f"spec.{exc}"]
        return [f"spec.{exc}" if str(exc).startswith("searchSpace") else f"spec.searchSpace: {exc}"]
    return []


def spec_problems(spec: Mapping[str, Any], *, local: bool, engine: bool = False) -> list[str]:
    """Every problem DeNAS can see in a schema-valid ``spec``, one line each (empty: none).

    ``local``: the job runs on this machine, so data set paths are checked on disk.
    ``engine``: also build the search space from ``spec.searchSpace`` (needs torch, which takes
    seconds to import: only done once everything else passed, so a mistake is reported at once)."""
    problems = score_problems(spec.get("score"))
    training = spec.get("training") or {}
    if training.get("enabled"):  # the data set is only read for training
        problems += dataset_problems(training.get("dataset"), local=local)
    if engine and not problems:
        problems += search_space_problems(spec)
    return problems


def in_pod() -> bool:
    """Running inside a Kubernetes pod (the search/training pods the operator creates)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def load_checked_job(path: str | Path, *, local: bool = True, engine: bool = True) -> Job:
    """`load_job`, then `spec_problems`; every problem in one JobValidationError."""
    job = load_job(path)
    problems = spec_problems(job.spec, local=local, engine=engine)
    if problems:
        raise JobValidationError(job.name, problems)
    return job


def out_dir_problem(path: str | Path, flag: str = "--out") -> str | None:
    """Why ``path`` cannot be (or become) an output directory, or None when it can."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{flag} {path}: is a file, not a directory; choose a directory (it is created if missing)"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{flag} {path}: lies under {parent}, which is a file; choose a directory elsewhere"
            target = path if path.exists() else parent
            if not os.access(target, os.W_OK | os.X_OK):
                return f"{flag} {path}: {target} is not writable by this user; choose a directory you own"
            return None
    return None
