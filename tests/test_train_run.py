"""`denas train` end to end in one process: metrics.json, model.pt, early stop, resume, reporting."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from denas.train.accel import ipex_installed
from denas.train.command import main
from tests.train_support import SMALL_CNN, free_port, one_thread, subprocess_env, write_job  # noqa: F401

STRUCTURE = json.dumps(SMALL_CNN)


def test_digits_trains_well_above_chance_and_writes_its_outputs(tmp_path, capsys):
    job = write_job(tmp_path, epochs=3)
    assert main([str(job), "--structure", STRUCTURE, "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["metric_name"] == "accuracy"
    assert metrics["metric"] > 0.6  # chance is 0.1
    assert metrics["epochs"] == 3 and len(metrics["history"]) == 3
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert (metrics["path"], metrics["world_size"], metrics["domain"]) == ("stock-fp32", 1, "cnn")
    assert metrics["samples_per_s"] > 0
    saved = torch.load(tmp_path / "out" / "model.pt", weights_only=False)
    assert saved["structure"] == SMALL_CNN and saved["state_dict"]
    # stdout is JSON lines (not a TTY): one training event per epoch
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    training = [e for e in events if e.get("phase") == "training"]
    assert [e["epoch"] for e in training] == [1, 2, 3]
    assert {"loss", "metric", "metric_name", "samples_per_s", "epochs"} <= set(training[0])


def test_result_json_and_structure_rank_pick_the_structure(tmp_path):
    other = json.loads(STRUCTURE)
    other["stem_channels"] = 16
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"best": [{"structure": other}, {"structure": SMALL_CNN}]}))
    job = write_job(tmp_path, epochs=1, structureRank=1, dataset={"name": "digits", "limit": 64})
    assert main([str(job), "--structure", str(result), "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["structure"] == SMALL_CNN
    assert metrics["structure_source"].endswith("#best[1]")
    assert metrics["dataset"]["train_size"] == 64


def test_a_diverging_run_fails_naming_the_fix_instead_of_reporting_chance_accuracy(tmp_path, capsys):
    job = write_job(tmp_path, epochs=3, learningRate=1e12, dataset={"name": "digits", "limit": 128})
    assert main([str(job), "--structure", STRUCTURE, "--out", str(tmp_path / "o"), "--optimizer", "sgd"]) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "lower spec.training.learningRate" in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_target_metric_stops_training_early(tmp_path):
    job = write_job(tmp_path, epochs=5, targetMetric=0.05, dataset={"name": "digits", "limit": 128})
    assert main([str(job), "--structure", STRUCTURE, "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["early_stopped"] is True


def test_progress_callback_and_prometheus_endpoint(tmp_path):
    from denas.data import load_dataset
    from denas.spaces import get
    from denas.train.loop import TrainConfig, train

    space = get("cnn", {"preset": "digits"})
    data = load_dataset("digits", config=space.config, limit=64)
    events: list[dict] = []
    port = free_port()
    cfg = TrainConfig(
        out_dir=tmp_path,
        epochs=2,
        batch_size=32,
        ipex="off",
        bf16="off",
        metrics_port=port,
        callbacks=[events.append],
    )
    train(lambda: space.build(SMALL_CNN), data, cfg)
    assert [e["epoch"] for e in events] == [1, 2]
    assert all(
        e["phase"] == "training" and e["metric_name"] == "accuracy" and e["epochs"] == 2 for e in events
    )
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "denas_train_loss " in text and "denas_train_samples_per_second " in text
    assert 'denas_train_metric{metric="accuracy"}' in text
    assert "denas_train_epoch 2.0" in text
    assert "pod" not in text


def test_killed_training_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    job = write_job(tmp_path, epochs=5, dataset={"name": "digits", "limit": 512})
    args = [str(job), "--structure", STRUCTURE]
    # the reference: 5 uninterrupted epochs, in a process like the victim's (this test process may
    # have imported IPEX through earlier tests, which swaps CPU kernels and their rounding)
    train_cmd = [sys.executable, "-m", "denas.train", *args]
    ref_run = subprocess.run(
        [*train_cmd, "--out", str(tmp_path / "ref")],
        env=subprocess_env(threads=1),
        capture_output=True,
        text=True,
    )
    assert ref_run.returncode == 0, ref_run.stderr[-2000:]
    # the victim: killed (SIGKILL, like a node loss) once its first checkpoint is on disk
    out = tmp_path / "victim"
    proc = subprocess.Popen(
        [sys.executable, "-m", "denas.train", *args, "--out", str(out)],
        env=subprocess_env(threads=1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the victim finished before it could be killed"
    resumed = subprocess.run(
        [*train_cmd, "--out", str(out)], env=subprocess_env(threads=1), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 1 <= metrics["resumed_from_epoch"] < 5
    assert metrics["epochs"] == 5 and [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5]
    ref = torch.load(tmp_path / "ref" / "model.pt", weights_only=False)["state_dict"]
    got = torch.load(out / "model.pt", weights_only=False)["state_dict"]
    for name, tensor in ref.items():
        assert torch.allclose(got[name].float(), tensor.float(), atol=1e-4), name


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ({"name": "cifar10", "path": "/nonexistent/cifar"}, "/nonexistent/cifar"),
        ({"name": "imagefolder", "path": "/nonexistent/imgs"}, "class"),
    ],
)
def test_bad_data_path_fails_with_the_path_and_layout(tmp_path, capsys, dataset, expected):
    job = write_job(tmp_path, dataset=dataset)
    assert main([str(job), "--structure", STRUCTURE, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "expect" in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_operator_reporter_gets_progress_and_final_metrics(tmp_path, monkeypatch):
    import denas.kube_report

    class FakeReporter:
        def __init__(self):
            self.events, self.results, self.closed = [], [], False
            self.written: dict[str, str] = {}

        def write(self, key, value):  # rank 0's export hands status.modelRef over this way
            self.written[key] = value
            return True

        def progress(self, event):
            self.events.append(event)

        def result(self, metrics):
            self.results.append(metrics)

        def close(self):
            self.closed = True

    fake = FakeReporter()
    monkeypatch.setattr(denas.kube_report, "reporter_from_env", lambda role=None, rank=None: fake)
    job = write_job(tmp_path, epochs=2, dataset={"name": "digits", "limit": 64})
    assert main([str(job), "--structure", STRUCTURE, "--out", str(tmp_path / "o")]) == 0
    assert [e["epoch"] for e in fake.events] == [1, 2]
    assert all(e["phase"] == "training" for e in fake.events)
    assert fake.results and fake.results[0]["metric_name"] == "accuracy" and fake.closed
    from denas.export.pod import MODEL_REF_KEY

    assert "ok" in json.loads(fake.written[MODEL_REF_KEY])  # the export after training reported its outcome


@pytest.mark.skipif(not ipex_installed(), reason="needs IPEX (the xeon extra)")
def test_ipex_bf16_path_trains_checkpoints_and_resumes(tmp_path):
    # in child processes: importing IPEX re-registers kernels for the whole process
    job = write_job(tmp_path, epochs=1, dataset={"name": "digits", "limit": 256})
    cmd = [
        sys.executable,
        "-m",
        "denas.train",
        str(job),
        "--structure",
        STRUCTURE,
        "--out",
        str(tmp_path / "o"),
    ]
    cmd += ["--ipex", "on", "--bf16", "on"]
    for extra in ([], ["--epochs", "2"]):
        proc = subprocess.run(
            [*cmd, *extra], env=subprocess_env(), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
        assert metrics["path"] == "ipex-bf16" and metrics["ipex"] and metrics["bf16"]
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs"] == 2
    saved = torch.load(tmp_path / "o" / "model.pt", weights_only=False)["state_dict"]
    assert all(v.dtype != torch.bfloat16 for v in saved.values())
