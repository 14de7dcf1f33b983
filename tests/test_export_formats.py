"""Every domain's exported artifacts load in a fresh Python process without DeNAS and match the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from denas.export.load import Trained, initialised
from denas.export.stage import export_model
from tests.export_support import load_in_fresh_process

SPEC = {"domain": "cnn", "export": {"formats": ["torchscript", "onnx", "huggingface"]}}


def _perturbed(trained: Trained) -> Trained:
    """Move every weight off its initialisation, as training would (BN statistics included)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in [*trained.model.named_parameters(), *trained.model.named_buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=g))
                if name.endswith("running_var"):
                    tensor.abs_()
    return trained


def _qa_bert() -> Trained:
    from denas.train.tasks import SpanQA

    t = initialised("bert", {"preset": "tiny"})
    model = SpanQA(t.model, t.structure["hidden_size"]).eval()
    return Trained(model, t.space, "bert", t.structure, t.structure_hash, "qa")


def _load_in_fresh_process(folder: Path, trained: Trained, tmp_path: Path) -> dict:
    report = load_in_fresh_process(folder, trained, tmp_path)
    assert set(report["listed"]) <= set(report["diffs"]), report  # every artifact the card lists
    return report["diffs"]


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["cnn", "vit", "bert", "asr", "nb201", "bert-qa"])
def test_exported_artifacts_run_without_denas_and_match_the_model(domain: str, tmp_path: Path):
    trained = _qa_bert() if domain == "bert-qa" else initialised(domain.split("-")[0], {"preset": "tiny"})
    _perturbed(trained)
    card = export_model(trained, tmp_path / "model", spec=SPEC, job_name="t", with_ipex=False)
    assert card["ok"], card["problems"]
    assert card["artifacts"]["onnx"]["opset"] >= 17
    diffs = _load_in_fresh_process(tmp_path / "model", trained, tmp_path)
    expected_formats = {"torchscript", "onnx"} | (
        {"huggingface", "huggingface_automodel"} if trained.domain == "bert" else set()
    )
    assert set(diffs) == expected_formats
    assert all(d <= 1e-4 for d in diffs.values()), diffs
    if trained.domain != "bert":
        assert "skipped" in card["artifacts"]["huggingface"]  # said, not faked


def test_ipex_variant_is_measured_and_reported_and_loads_with_ipex_only(tmp_path: Path):
    pytest.importorskip("intel_extension_for_pytorch", reason="the IPEX variant needs IPEX (the xeon extra)")
    trained = _perturbed(initialised("cnn", {"preset": "digits"}))
    card = export_model(trained, tmp_path / "model", spec=SPEC, job_name="t", with_ipex=True)
    ipex = card["ipex_bf16"]
    assert set(ipex["latency_ms"]) == {"eager", "torchscript", "ipex_bf16"}
    assert ipex["kept"] == (ipex["speedup_vs_best_fp32"] >= ipex["min_speedup"])
    assert (tmp_path / "model" / "model.ipex-bf16.torchscript.pt").is_file() == ipex["kept"]
    assert "IPEX bf16 TorchScript" in (tmp_path / "model" / "card.md").read_text()
    diffs = _load_in_fresh_process(tmp_path / "model", trained, tmp_path)
    if ipex["kept"]:
        assert diffs["ipex-bf16"] < 0.05  # bf16: close, not fp32-exact


def test_card_has_every_section_the_issue_asks_for(tmp_path: Path, monkeypatch):
    trained = initialised("cnn", {"preset": "digits"})
    result = {
        "best": [
            {
                "hash": trained.structure_hash,
                "scores": {"de_score": 1.5, "zen": 3.0},
                "latency_ms": 0.7,
                "fitness": 1.4,
            }
        ]
    }
    monkeypatch.setenv("NODE_NAME", "xeon-pool-node-7")  # a pod's spec.nodeName (downward API)
    spec = {**SPEC, "hardware": {"nodeSelector": {"denas.io/pool": "spr"}}}
    card = export_model(trained, tmp_path / "m", spec=spec, job_name="j", result=result, with_ipex=False)
    assert card["scores"] == {"de_score": 1.5, "zen": 3.0}
    assert card["latency"]["hardware"]["node"] == "xeon-pool-node-7"
    assert card["params"] == card["params_analytic"] > 0 and card["flops"] > 0
    assert card["latency"]["hardware"]["cpu"] and card["latency"]["hardware"]["threads"] >= 1
    assert card["latency"]["hardware"]["load_average_1m"] is not None
    assert card["latency"]["batch_size"] == 1 and set(card["latency"]["ms"]) == {
        "eager",
        "torchscript",
        "onnxruntime",
    }
    assert card["spec"] == spec and len(card["spec_hash"]) == 64 and card["denas_version"]
    md = (tmp_path / "m" / "card.md").read_text()
    assert "Node xeon-pool-node-7 in the pool selected by denas.io/pool=spr" in md
    for needle in ("zen", "FLOPs", "Latency on this node", "Training", "sha256", "model.onnx"):
        assert needle in md


def test_a_failed_check_is_reported_not_hidden(tmp_path: Path, monkeypatch):
    import denas.export.formats as formats

    monkeypatch.setattr(formats, "TOLERANCE", -1.0)  # nothing can pass: the card must say so
    card = export_model(
        initialised("cnn", {"preset": "digits"}), tmp_path / "m", spec=SPEC, job_name="j", with_ipex=False
    )
    assert not card["ok"]
    assert any("onnx: check failed" in p for p in card["problems"])
    assert "Export problems" in (tmp_path / "m" / "card.md").read_text()
