"""On the cluster: the training master exports onto the job's storage and reports a modelRef,
which the operator copies into status.modelRef (ExportFailed when the export failed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from denas_operator.export_status import mirror_export
from denas_operator.reconcile import Observed, decide
from test_operator_reconcile import NOW, RESULT, _training_job, body, cms, cond, pod

from denas import kube_report
from denas.export.load import initialised


class FakeConfigMapApi:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def patch_namespaced_config_map(self, name, namespace, patch, _request_timeout=None):
        self.data.update(patch["data"])


def trained_state(tmp_path: Path) -> Path:
    """A state directory as a training pod leaves it: <state>/train/model.pt."""
    t = initialised("cnn", {"preset": "digits"})
    train = tmp_path / "state" / "train"
    train.mkdir(parents=True)
    saved = {
        "state_dict": t.model.state_dict(),
        "domain": "cnn",
        "structure": t.structure,
        "structure_hash": t.structure_hash,
        "space_config": t.space.config,
        "metrics": {"metric": 0.5, "metric_name": "accuracy", "epochs": 1, "dataset": {"name": "digits"}},
    }
    torch.save(saved, train / "model.pt")
    return train


@pytest.fixture
def pod_env(monkeypatch):
    api = FakeConfigMapApi()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(
        kube_report,
        "reporter_from_env",
        lambda role=None, rank=None: kube_report.Reporter("j-result", "ns", role="train", api=api),
    )
    return api


SPEC = {"domain": "cnn", "export": {"formats": ["torchscript"]}}


def test_master_pod_exports_beside_train_and_reports_an_emptydir_warning(tmp_path, pod_env):
    from denas.export.pod import export_in_pod

    train = trained_state(tmp_path)
    outcome = export_in_pod(SPEC, "j", train, None)
    assert outcome["ok"], outcome["message"]
    assert (train.parent / "model" / "model.torchscript.pt").is_file()
    reported = json.loads(pod_env.data["model-ref.json"])
    ref = reported["modelRef"]
    assert ref["path"] == str((train.parent / "model").resolve()) and set(ref["formats"]) - {"ipex-bf16"} == {
        "torchscript"
    }
    assert ref["storage"] == "emptyDir" and "lost with the pod" in ref["warning"]
    assert "WARNING" in reported["message"] and "emptyDir" in reported["message"]


def test_master_pod_on_a_claim_names_it(tmp_path, pod_env):
    from denas.export.pod import export_in_pod

    spec = {**SPEC, "storage": {"claimName": "models"}}
    export_in_pod(spec, "j", trained_state(tmp_path), None)
    ref = json.loads(pod_env.data["model-ref.json"])["modelRef"]
    assert ref["storage"] == "claim" and ref["claimName"] == "models" and "warning" not in ref


def test_other_ranks_and_disabled_export_do_nothing(tmp_path, pod_env, monkeypatch):
    from denas.export.pod import export_in_pod

    train = trained_state(tmp_path)
    assert export_in_pod({**SPEC, "export": {"enabled": False}}, "j", train, None) is None
    monkeypatch.setenv("RANK", "1")
    assert export_in_pod(SPEC, "j", train, None) is None
    assert "model-ref.json" not in pod_env.data and not (train.parent / "model").exists()


def test_a_broken_checkpoint_is_reported_as_export_failed(tmp_path, pod_env):
    from denas.export.pod import export_in_pod

    train = tmp_path / "state" / "train"
    train.mkdir(parents=True)
    (train / "model.pt").write_bytes(b"not a checkpoint")
    outcome = export_in_pod(SPEC, "j", train, None)
    assert not outcome["ok"] and (train / "model.pt").read_bytes() == b"not a checkpoint"
    assert not json.loads(pod_env.data["model-ref.json"])["ok"]


def _finished(spec_extra: dict, model_ref: dict | None):
    spec, status, search0, train = _training_job(**spec_extra)
    done = [pod(p, "Succeeded", 0) for p in train]
    configmaps = cms(RESULT, metrics={"metric": 0.9, "metric_name": "accuracy"})
    if model_ref is not None:
        configmaps["j-result"]["data"]["model-ref.json"] = json.dumps(model_ref)
    return decide(body(spec, status), Observed(pods=[search0, *done], configmaps=configmaps), NOW).status


def test_operator_copies_the_model_ref_into_the_status():
    ref = {"path": "/var/lib/denas/j/model", "formats": ["onnx"], "sizes": {"onnx": 10}, "storage": "claim"}
    status = _finished({}, {"ok": True, "message": "exported onnx", "modelRef": ref})
    assert status["phase"] == "Succeeded" and status["modelRef"] == ref
    assert cond(status, "ExportFailed")["status"] == "False"


def test_operator_marks_a_failed_export_but_keeps_the_job_succeeded():
    status = _finished({}, {"ok": False, "message": "onnx: check failed"})
    assert status["phase"] == "Succeeded" and cond(status, "Succeeded")["status"] == "True"
    failed = cond(status, "ExportFailed")
    assert failed["status"] == "True" and failed["message"] == "onnx: check failed"
    missing = _finished({}, None)
    assert (
        cond(missing, "ExportFailed")["status"] == "True"
        and "reported no export" in cond(missing, "ExportFailed")["message"]
    )


def test_operator_leaves_the_status_alone_when_export_is_disabled():
    status = mirror_export({"conditions": []}, {"export": {"enabled": False}}, None, 1, None)
    assert status == {"conditions": []}
