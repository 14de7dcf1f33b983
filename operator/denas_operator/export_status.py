"""Mirror the training master's export outcome (ConfigMap key ``model-ref.json``) into the status.

The master pod exports after training (denas.export.pod) and reports ``{"ok", "message",
"modelRef"}``; the operator copies ``modelRef`` to ``status.modelRef`` and sets ``ExportFailed``.
An export failure never fails the job: it stays Succeeded, ExportFailed=True says why.
"""

from __future__ import annotations

import json
from typing import Any

from denas.export.status import EXPORT_FAILED, MODEL_REF_KEY, apply_outcome


def export_enabled(spec: dict[str, Any]) -> bool:
    training = spec.get("training") or {}
    return bool(training.get("enabled", True)) and bool((spec.get("export") or {}).get("enabled", True))


def mirror_export(
    status: dict[str, Any],
    spec: dict[str, Any],
    result_cm: dict[str, Any] | None,
    generation: int | None,
    timestamp: str | None,
) -> dict[str, Any]:
    """``status`` with modelRef/ExportFailed from the result ConfigMap (unchanged if export is off)."""
    if not export_enabled(spec):
        return status
    text = ((result_cm or {}).get("data") or {}).get(MODEL_REF_KEY)
    try:
        outcome = json.loads(text) if text else None
    except json.JSONDecodeError:
        outcome = None
    if not isinstance(outcome, dict):
        outcome = {
            "ok": False,
            "message": f"the training master reported no export (no valid {MODEL_REF_KEY} in the result "
            "ConfigMap): see the log of the <job>-train-master-0 pod",
        }
    return apply_outcome(status, outcome, generation, timestamp)


__all__ = ["EXPORT_FAILED", "export_enabled", "mirror_export"]
