"""What a job computes, as short hashes: the operator and `denas run` decide restarts with these.

A stage's fingerprint covers exactly the spec fields that change what the stage produces; fields
that only change where or how fast it runs (replicas, resources, scheduling) are left out. The
operator keys the search directory by `search_fingerprint`; the local executor records both
fingerprints in its run folder and reruns the stages whose fingerprint changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Fields of spec.training that do not change the trained model: the retry policy, the backend
# that launches the processes, and their resources.
_TRAINING_RUN_ONLY = ("backoffLimit", "activeDeadlineSeconds", "backend", "resources")


def stable_hash(obj: Any, length: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def search_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields the search result depends on (search replicas/resources/backoffLimit left out)."""
    search = {
        k: v
        for k, v in (spec.get("search") or {}).items()
        if k not in ("replicas", "resources", "backoffLimit")
    }
    return {
        "domain": spec.get("domain"),
        "searchSpace": spec.get("searchSpace"),
        "score": spec.get("score"),
        "search": search,
        "constraints": spec.get("constraints"),
    }


def search_fingerprint(spec: Mapping[str, Any]) -> str:
    """Hash of what the search computes; a change starts the search from scratch."""
    return stable_hash(search_fields(spec), 8)


def training_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec.training fields the trained model depends on (given the search's result)."""
    training = spec.get("training") or {}
    return {"training": {k: v for k, v in training.items() if k not in _TRAINING_RUN_ONLY}}


def training_fingerprint(spec: Mapping[str, Any]) -> str:
    return stable_hash(training_fields(spec), 8)


def fingerprints(spec: Mapping[str, Any]) -> dict[str, str]:
    return {"search": search_fingerprint(spec), "training": training_fingerprint(spec)}


def changed_fields(old: Any, new: Any, prefix: str = "spec") -> list[str]:
    """Dotted paths where two specs differ, with both values: `spec.constraints.maxParams: 200000 -> 100000`."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += changed_fields(old.get(key), new.get(key), f"{prefix}.{key}")
        return out
    if old == new:
        return []
    return [f"{prefix}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = "(unset)" if value is None else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
