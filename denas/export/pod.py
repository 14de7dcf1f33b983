"""Export inside the training master pod (global rank 0), after training, onto the job's storage.

The artifacts go to ``<state>/model/`` beside ``<state>/train/`` (the claim when
``spec.storage.claimName`` is set, else the pod's emptyDir); the outcome and its ``modelRef`` go
to the result ConfigMap under ``model-ref.json`` for the operator to copy into ``status.modelRef``.
Never raises and never changes the training's exit code: a failed export is reported, not fatal.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from denas.export.status import MODEL_REF_KEY, emptydir_warning

log = logging.getLogger("denas.export")


def storage_ref(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """Where the artifacts physically are, with a warning when they die with the pod."""
    claim = (spec.get("storage") or {}).get("claimName")
    if claim:
        return {"storage": "claim", "claimName": claim}
    return {"storage": "emptyDir", "warning": emptydir_warning(path)}


def export_in_pod(
    spec: dict[str, Any], job_name: str, train_dir: Path, result_file: Path | None
) -> dict | None:
    """Run the export if this is the master of an operator-built training group; report it."""
    from denas import kube_report
    from denas.export.stage import export_run, export_settings

    if os.environ.get("RANK", "0") != "0" or not export_settings(spec)["enabled"]:
        return None
    reporter = kube_report.reporter_from_env(role="train", rank=0)
    if reporter is None:  # not in an operator pod: `denas run` exports as its own stage
        return None
    folder = train_dir.parent / "model"
    try:
        outcome = export_run(
            train_dir.parent,
            spec,
            job_name,
            model_file=train_dir / "model.pt",
            folder=folder,
            result_file=result_file,
        )
    except Exception as exc:  # the training succeeded; the export only reports
        log.exception("export failed")
        outcome = {"ok": False, "message": f"export failed: {type(exc).__name__}: {exc}"}
    if outcome.get("modelRef"):
        outcome["modelRef"].update(storage_ref(spec, outcome["modelRef"]["path"]))
        if outcome["modelRef"].get("warning"):  # also in the condition, where people look first
            outcome["message"] = f"{outcome['message']}; WARNING: {outcome['modelRef']['warning']}"
    reporter.write(MODEL_REF_KEY, json.dumps(outcome, sort_keys=True, default=str))
    return outcome
