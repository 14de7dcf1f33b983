"""The export stage: trained checkpoint -> ``model/`` with every requested format and a card.

Safety: the stage writes into a fresh sibling folder and swaps it in only at the end, so an
export that dies half way leaves the previous export (and always the checkpoint) as it was; and
it never replaces a ``model/`` folder it did not write (no DeNAS card in it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any

import torch

from denas import status as st
from denas.export.card import build_card, write_card, written_by_denas
from denas.export.formats import FORMATS, ExportError, onnx_session
from denas.export.load import Trained, load_trained
from denas.export.timing import hardware, measure_interleaved

log = logging.getLogger("denas.export")

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "formats": ["torchscript", "onnx", "huggingface"],
    "batchSize": 1,
}
LATENCY_ROUNDS = 20


def export_settings(spec: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **(spec.get("export") or {})}


def ipex_wanted(spec: dict[str, Any]) -> bool:
    """Whether to try the IPEX bf16 variant: not when the job turned IPEX off (`hardware.ipex: off`),
    which also spares importing it."""
    return str((spec.get("hardware") or {}).get("ipex", "auto")) != "off"


def _run_format(
    name: str, trained: Trained, out: Path, inputs: tuple, expected: torch.Tensor
) -> dict[str, Any]:
    try:
        return FORMATS[name](trained, out, inputs, expected)
    except Exception as exc:  # one broken format must not hide the others; the card names it
        log.warning("export %s failed:\n%s", name, traceback.format_exc())
        return {"error": f"{type(exc).__name__}: {exc}"}


def _latency(
    trained: Trained, out: Path, artifacts: dict[str, dict], ipex: dict | None, batch_size: int
) -> dict:
    batch = trained.sample_inputs(batch_size=batch_size, seed=2)
    fns = {"eager": (lambda m=trained.wrapped(): m(*batch))}
    if artifacts.get("torchscript", {}).get("files"):
        ts = torch.jit.load(str(out / artifacts["torchscript"]["files"][0]))
        fns["torchscript"] = lambda: ts(*batch)
    if artifacts.get("onnx", {}).get("files"):
        session = onnx_session(out / artifacts["onnx"]["files"][0])
        feed = {n: t.numpy() for n, t in zip(trained.input_names, batch)}
        fns["onnxruntime"] = lambda: session.run(None, feed)
    ms = measure_interleaved(fns, rounds=LATENCY_ROUNDS)
    if ipex and ipex.get("latency_ms"):
        ms["ipex_bf16"] = ipex["latency_ms"]["ipex_bf16"]  # measured beside eager in its own run
    return {"hardware": hardware(), "batch_size": batch_size, "rounds": LATENCY_ROUNDS, "ms": ms}


def export_model(
    trained: Trained,
    folder: Path,
    *,
    spec: dict[str, Any],
    job_name: str,
    result: dict[str, Any] | None = None,
    with_ipex: bool = True,
) -> dict[str, Any]:
    """Write every requested format and the card into ``folder`` (created); returns the card.

    ``with_ipex=False`` skips trying the IPEX variant (importing IPEX alone takes seconds)."""
    settings = export_settings(spec)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = trained.sample_inputs(batch_size=3, seed=1)  # a batch size the traces never saw
    with torch.no_grad():
        expected = trained.wrapped()(*inputs)
    artifacts = {name: _run_format(name, trained, folder, inputs, expected) for name in settings["formats"]}
    ipex = None
    if with_ipex and "torchscript" in settings["formats"]:
        from denas.export.ipex import export_ipex_variant

        try:
            ipex = export_ipex_variant(
                trained, folder, inputs, expected, trained.sample_inputs(settings["batchSize"], seed=2)
            )
        except Exception as exc:  # an optional speed-up: report, never fail the export for it
            ipex = {"kept": False, "reason": f"{type(exc).__name__}: {exc}"}
    latency = _latency(trained, folder, artifacts, ipex, settings["batchSize"])
    card = build_card(
        job_name=job_name,
        spec=spec,
        trained=trained,
        result=result,
        artifacts=artifacts,
        latency=latency,
        ipex=ipex,
        created=st.now(),
    )
    write_card(folder, card)
    return card


def model_ref(folder: Path, card: dict[str, Any]) -> dict[str, Any]:
    written = {n: a for n, a in card["artifacts"].items() if a.get("files") and not a.get("error")}
    if (card.get("ipex_bf16") or {}).get("kept"):
        written["ipex-bf16"] = card["ipex_bf16"]
    return {
        "path": str(folder),
        "card": "card.md",
        "formats": sorted(written),
        "sizes": {n: int(a["bytes"]) for n, a in sorted(written.items())},
    }


def export_run(
    run_dir: Path,
    spec: dict[str, Any],
    job_name: str,
    *,
    model_file: Path | None = None,
    folder: Path | None = None,
    result_file: Path | None = None,
) -> dict[str, Any]:
    """Export a finished run (``run_dir/train/model.pt``) into ``run_dir/model/``.

    Returns ``{"ok", "message", "modelRef"}``; never raises for a failed export (the caller marks
    the job ExportFailed and keeps it Succeeded) except for ExportError on an unsafe destination.
    """
    model_file = model_file or run_dir / "train" / "model.pt"
    folder = (folder or run_dir / "model").resolve()
    if folder.exists() and not written_by_denas(folder) and any(folder.iterdir()):
        return {
            "ok": False,
            "message": f"{folder} exists and was not written by DeNAS (no DeNAS card.json in it): move it away and run `denas export {run_dir}`",
        }
    result = None
    for candidate in (result_file, run_dir / "result.json", run_dir / "search" / "result.json"):
        if candidate is None:
            continue
        if candidate.is_file():
            result = json.loads(candidate.read_text())
            break
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=folder.parent))
    try:
        trained = load_trained(model_file)
        card = export_model(
            trained, staging, spec=spec, job_name=job_name, result=result, with_ipex=ipex_wanted(spec)
        )
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        log.warning("export failed:\n%s", traceback.format_exc())
        return {"ok": False, "message": f"export of {model_file} failed: {type(exc).__name__}: {exc}"}
    # swap in: old export out of the way first, so there is always one complete folder
    if folder.exists():
        old = folder.with_name(f".{folder.name}-old-{os.getpid()}")
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(folder)
    folder.chmod(0o755)  # mkdtemp made it private; the export is meant to be shared
    ref = model_ref(folder, card)
    if card["ok"]:
        message = f"exported {', '.join(ref['formats'])} to {folder} (card: {folder / 'card.md'})"
    else:
        message = (
            f"export to {folder} had problems: {'; '.join(card['problems'])} (card: {folder / 'card.md'})"
        )
    return {"ok": card["ok"], "message": message, "modelRef": ref}


__all__ = [
    "DEFAULTS",
    "ExportError",
    "export_due",
    "export_model",
    "export_run",
    "export_settings",
    "ipex_wanted",
    "local_export",
    "model_ref",
]


def export_due(out: Path, spec: dict[str, Any], status: dict[str, Any]) -> bool:
    """Whether the `denas run` export stage has work: enabled, and not already exported (a resumed
    run whose export succeeded keeps it)."""
    from denas.export.status import EXPORT_FAILED

    if not export_settings(spec)["enabled"]:
        return False
    done = any(
        c.get("type") == EXPORT_FAILED and c.get("status") == "False" for c in status.get("conditions", [])
    )
    return not (done and written_by_denas(out / "model"))


def local_export(out: Path, spec: dict[str, Any], job_name: str, status: dict[str, Any]) -> dict[str, Any]:
    """The `denas run` stage: export ``out/train/model.pt`` to ``out/model/``; returns the new status.

    Skipped when disabled, and on a resumed run whose export already succeeded.
    """
    from denas.export.status import apply_outcome

    if not export_due(out, spec, status):
        return status
    try:
        outcome = export_run(out, spec, job_name)
    except Exception as exc:  # never let the export fail a job whose training succeeded
        outcome = {"ok": False, "message": f"export failed: {type(exc).__name__}: {exc}"}
    return apply_outcome(status, outcome, status.get("observedGeneration"))
