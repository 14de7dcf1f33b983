"""Validation of the specs that reach the operator (pure, cached): the CRD's own schema and CEL
rules, for specs that skipped the API server's (an older CRD, a restored backup)."""

from __future__ import annotations

import functools
import json
from typing import Any

from denas.job import API_VERSION as JOB_API_VERSION
from denas.job import KIND as JOB_KIND
from denas.job import validate_manifest, validate_name
from denas.preflight import spec_problems


def validate_body(body: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The defaulted spec, or the API server's error lines for a spec that skipped validation."""
    meta = body.get("metadata") or {}
    # Many jobs share a spec (a campaign, a benchmark burst): validate each spec once, under a
    # stand-in name, and each job's own name apart (the root rules that read only metadata).
    key = json.dumps(
        [body.get("apiVersion", JOB_API_VERSION), body.get("kind", JOB_KIND), body.get("spec")],
        sort_keys=True,
        default=str,
    )
    spec, errors = _validate_cached(key)
    name_errors = _validate_name_cached(meta.get("name") if isinstance(meta.get("name"), str) else None)
    if name_errors:
        return None, [*name_errors, *errors]
    return spec, list(errors)  # shared with the cache: the builders never mutate a spec


STAND_IN_NAME = "denasjob"


@functools.lru_cache(maxsize=2048)
def _validate_cached(key: str) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    # Validation (schema + CEL) costs milliseconds and the spec only changes with the generation:
    # the level-based timer re-validates nothing it has seen before.
    api_version, kind, spec = json.loads(key)
    manifest = {"apiVersion": api_version, "kind": kind, "metadata": {"name": STAND_IN_NAME}, "spec": spec}
    if spec is None:
        return None, ("spec: Required value",)
    try:
        # the schema, then what DeNAS checks everywhere (proxy names, a data set path where one is
        # needed); paths are not checked here: they resolve inside the pods
        errors = validate_manifest(manifest) or spec_problems(manifest["spec"], local=False)
    except Exception as exc:  # a validator crash must not take the operator down
        return None, (f"spec: Invalid value: {exc}",)
    return (None, tuple(errors)) if errors else (manifest["spec"], ())


@functools.lru_cache(maxsize=4096)
def _validate_name_cached(name: str | None) -> tuple[str, ...]:
    try:
        return tuple(validate_name(name))
    except Exception as exc:  # as above
        return (f"metadata.name: Invalid value: {exc}",)
