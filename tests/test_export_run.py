"""The export stage in `denas run` and `denas export`: artifacts + card in <out>/model/, status, failures."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from denas.export.card import written_by_denas
from denas.export.load import load_trained
from tests.export_support import assert_all_match, load_in_fresh_process

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "deploy" / "samples" / "digits.yaml"


def tiny_digits(tmp_path: Path, **export) -> Path:
    manifest = yaml.safe_load(SAMPLE.read_text())
    spec = manifest["spec"]
    spec["search"].update(population=4, generations=1, warmup=2, replicas=1, selection={"enabled": False})
    spec["training"].update(epochs=1, replicas=1)
    spec["constraints"].pop("maxLatencyMs", None)  # a latency bound is flaky on a loaded machine
    if export:
        spec["export"] = export
    job = tmp_path / "digits.yaml"
    job.write_text(yaml.safe_dump(manifest))
    return job


def denas(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "denas", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def conditions(out: Path) -> dict[str, dict]:
    return {c["type"]: c for c in json.loads((out / "status.json").read_text())["conditions"]}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export-run")
    out = tmp / "out"
    proc = denas("run", str(tiny_digits(tmp)), "--out", str(out), "--progress", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_denas_run_exports_the_trained_model_with_a_card(finished_run: Path):
    model = finished_run / "model"
    card = json.loads((model / "card.json").read_text())
    assert card["ok"] and card["job"] == "digits" and card["domain"] == "cnn"
    assert (model / "card.md").is_file() and (model / "model.torchscript.pt").is_file()
    assert (model / "model.onnx").is_file()
    metrics = json.loads((finished_run / "train" / "metrics.json").read_text())
    assert card["training"]["metric"] == metrics["metric"] and card["training"]["epochs"] == 1
    assert card["structure_hash"] == json.loads((finished_run / "result.json").read_text())["best"][0]["hash"]
    status = json.loads((finished_run / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    assert conditions(finished_run)["ExportFailed"]["status"] == "False"
    ref = status["modelRef"]
    assert Path(ref["path"]) == model.resolve() and {"torchscript", "onnx"} <= set(ref["formats"])
    assert ref["sizes"]["onnx"] == (model / "model.onnx").stat().st_size
    assert written_by_denas(model)  # so `denas run --fresh` may delete it (tests/test_local_rundir.py)


@pytest.mark.slow
def test_the_export_stage_is_timed_like_the_others(finished_run: Path):
    status = json.loads((finished_run / "status.json").read_text())
    stages = status["stages"]
    assert list(stages) == ["validate", "search", "training", "export", "report"]
    export = stages["export"]
    assert export["seconds"] > 0 and export["startTime"] and export["completionTime"]
    assert stages["training"]["completionTime"] <= export["startTime"] <= export["completionTime"]
    exported = next(c for c in status["conditions"] if c["type"] == "ExportFailed")["lastTransitionTime"]
    assert export["startTime"] <= exported <= export["completionTime"]


@pytest.mark.slow
def test_the_cnn_artifacts_run_without_denas_and_match_the_trained_model(finished_run: Path, tmp_path: Path):
    """The cnn domain's part of issue 18's proof (the others: tests/test_export_domains.py): every
    artifact the card lists, the IPEX bf16 variant too when the export kept it, loads in a fresh
    process where denas cannot be imported and matches the model rebuilt from the run's checkpoint."""
    card = json.loads((finished_run / "model" / "card.json").read_text())
    trained = load_trained(finished_run / "train" / "model.pt")
    assert trained.domain == "cnn" and trained.structure_hash == card["structure_hash"]
    report = load_in_fresh_process(finished_run / "model", trained, tmp_path)
    assert_all_match(report)
    assert {"torchscript", "onnx"} <= set(report["listed"])
    assert ("ipex-bf16" in report["diffs"]) == bool((card["ipex_bf16"] or {}).get("kept"))


@pytest.mark.slow
def test_hardware_ipex_off_skips_the_ipex_variant(finished_run: Path, tmp_path: Path, monkeypatch):
    import denas.export.ipex as ipex
    from denas.export.stage import export_run

    def tried(*args, **kwargs):
        raise AssertionError("the IPEX variant was tried although hardware.ipex is off")

    monkeypatch.setattr(ipex, "export_ipex_variant", tried)
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    spec = {"domain": "cnn", "searchSpace": {"preset": "digits"}, "hardware": {"ipex": "off"}}
    outcome = export_run(run, spec, "digits")
    assert outcome["ok"], outcome["message"]
    card = json.loads((run / "model" / "card.json").read_text())
    assert card["ipex_bf16"] is None and "ipex-bf16" not in outcome["modelRef"]["formats"]
    assert not (run / "model" / ipex.FILE).exists()


@pytest.mark.slow
def test_denas_export_re_exports_a_finished_run(finished_run: Path, tmp_path: Path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    before = json.loads((run / "model" / "card.json").read_text())
    proc = denas("export", str(run), "--formats", "onnx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((run / "model" / "card.json").read_text())
    assert set(card["artifacts"]) == {"onnx"} and card["spec_hash"] != before["spec_hash"]
    assert not (run / "model" / "model.torchscript.pt").exists()  # the folder is the new export, whole
    assert json.loads((run / "status.json").read_text())["modelRef"]["formats"] == ["onnx"]


@pytest.mark.slow
def test_a_failed_export_keeps_the_checkpoint_and_the_job_succeeded(finished_run: Path, tmp_path: Path):
    """`denas export` on a finished run whose <out>/model/ is someone else's folder: the export
    refuses to replace it, the job stays Succeeded with ExportFailed, and nothing is lost.
    (`denas run` of the unchanged finished job does nothing at all: the run folder says it is done.)"""
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "model")
    (run / "model").mkdir()
    (run / "model" / "mine.txt").write_text("a user's file")
    status = json.loads((run / "status.json").read_text())
    status["conditions"] = [c for c in status["conditions"] if c["type"] != "ExportFailed"]
    (run / "status.json").write_text(json.dumps(status))
    checkpoint = digest(run / "train" / "model.pt")
    proc = denas("export", str(run))
    assert proc.returncode == 1 and "not written by DeNAS" in proc.stderr, proc.stderr[-3000:]
    conds = conditions(run)
    assert conds["Succeeded"]["status"] == "True"
    assert (
        conds["ExportFailed"]["status"] == "True"
        and "not written by DeNAS" in conds["ExportFailed"]["message"]
    )
    assert json.loads((run / "status.json").read_text())["phase"] == "Succeeded"
    assert digest(run / "train" / "model.pt") == checkpoint
    assert (run / "model" / "mine.txt").read_text() == "a user's file"


@pytest.mark.slow
def test_an_exporter_error_is_reported_and_the_other_formats_still_written(
    finished_run: Path, tmp_path: Path, monkeypatch
):
    import denas.export.formats as formats
    from denas.export.stage import local_export

    def broken(*args, **kwargs):
        raise RuntimeError("onnx exporter exploded")

    monkeypatch.setitem(formats.FORMATS, "onnx", broken)
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    checkpoint = digest(run / "train" / "model.pt")
    status = json.loads((run / "status.json").read_text())
    status["conditions"] = [c for c in status["conditions"] if c["type"] != "ExportFailed"]
    spec = {"domain": "cnn", "searchSpace": {"preset": "digits"}}
    new = local_export(run, spec, "digits", status)
    failed = next(c for c in new["conditions"] if c["type"] == "ExportFailed")
    assert failed["status"] == "True" and "onnx exporter exploded" in failed["message"]
    assert next(c for c in new["conditions"] if c["type"] == "Succeeded")["status"] == "True"
    assert "torchscript" in new["modelRef"]["formats"]  # the other formats are still written
    assert "onnx" not in new["modelRef"]["formats"]
    assert digest(run / "train" / "model.pt") == checkpoint


def test_an_unknown_export_format_is_rejected_before_any_work(tmp_path: Path):
    out = tmp_path / "out"
    proc = denas("run", str(tiny_digits(tmp_path, formats=["torchscript", "tflite"])), "--out", str(out))
    assert proc.returncode == 2
    assert "spec.export.formats[1]" in proc.stderr and "tflite" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_denas_export_without_a_trained_model_says_what_to_do(tmp_path: Path):
    proc = denas("export", str(tmp_path))
    assert proc.returncode == 2 and "no trained model" in proc.stderr and "Traceback" not in proc.stderr
