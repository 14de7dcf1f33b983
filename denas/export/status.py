"""Export in the job status: the ``ExportFailed`` condition and ``status.modelRef`` (no torch here:
the operator uses it too).

An export failure never fails the job: the trained checkpoint is intact and the job stays
Succeeded; ``ExportFailed=True`` carries the message. A good export sets ``ExportFailed=False``
(reason ``Exported``), so a re-export clears an earlier failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from denas import status as st

EXPORT_FAILED = "ExportFailed"
#: the result ConfigMap key the training master pod writes its outcome to
MODEL_REF_KEY = "model-ref.json"


def emptydir_warning(path: str) -> str:
    return (
        f"artifacts are in the training master pod's emptyDir ({path}) and are lost with the pod: "
        "set spec.storage.claimName to keep them"
    )


def apply_outcome(
    status: dict[str, Any],
    outcome: Mapping[str, Any],
    generation: int | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """``status`` with ``modelRef`` and the ExportFailed condition set from an export outcome
    (``{"ok", "message", "modelRef"}``, as `denas.export.stage.export_run` returns it)."""
    out = dict(status)
    if outcome.get("modelRef"):
        out["modelRef"] = dict(outcome["modelRef"])
    if outcome.get("ok"):
        cond = (False, "Exported", outcome.get("message", ""))
    else:
        cond = (True, "ExportFailed", outcome.get("message") or "export failed")
    out["conditions"] = st.set_condition(
        out.get("conditions", []), EXPORT_FAILED, *cond, generation, timestamp
    )
    return out
