"""Several processes: torchrun with 2 local processes, 1-vs-2-process equivalence, rendezvous timeout.

Run as a script (``python -m torch.distributed.run ... tests/test_train_ddp.py --worker OUT``) this
file is the worker of the equivalence test: a BatchNorm-free model, so that per-process batch
statistics cannot differ from the single-process run's and the weights must match.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.train_support import SMALL_CNN, free_port, one_thread, subprocess_env, torchrun, write_job  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))


def _train_mlp(out: Path) -> None:
    from denas.data import load_dataset
    from denas.train.loop import TrainConfig, train

    data = load_dataset("digits", config={"in_channels": 1, "image_size": 8}, limit=16)
    cfg = TrainConfig(
        out_dir=out, epochs=1, batch_size=8, learning_rate=0.1, ipex="off", bf16="off", warmup_fraction=0.0
    )
    train(_mlp, data, cfg)


def test_two_processes_train_digits_well_above_chance(tmp_path):
    job = write_job(tmp_path, epochs=2, batchSize=32)
    out = tmp_path / "out"
    cmd = torchrun(2, "-m", "denas.train", str(job), "--structure", json.dumps(SMALL_CNN), "--out", str(out))
    proc = subprocess.run(
        cmd, env=subprocess_env(threads=1), capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_batch_size"] == 32
    assert metrics["metric"] > 0.5  # chance is 0.1
    assert (out / "model.pt").is_file() and (out / "checkpoint.pt").is_file()
    # only rank 0 reports: one JSON line per epoch
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [e["epoch"] for e in lines if e.get("phase") == "training"] == [1, 2]


def test_two_nodes_started_with_the_shared_torchrun_command(tmp_path):
    """Two "nodes" (one torchrun each, as two pods would run) built by denas.train.envvars."""
    from denas.train.envvars import torchrun_command, torchrun_env

    job = write_job(tmp_path, epochs=2, batchSize=32, dataset={"name": "digits", "limit": 256})
    out = tmp_path / "out"
    port = free_port()
    train_args = [str(job), "--structure", json.dumps(SMALL_CNN), "--out", str(out)]
    procs = []
    for node in (1, 0):  # the worker first: it must wait for its master, not fail
        env = subprocess_env(threads=1) | torchrun_env("t", None, node, 2, 1, port, master_addr="127.0.0.1")
        cmd = torchrun_command(
            "t",
            None,
            node,
            2,
            1,
            port,
            master_addr="127.0.0.1",
            train_args=train_args,
            rendezvous_timeout=120,
            entrypoint=["-m", "denas.train"],
        )
        procs.append(
            subprocess.Popen(
                cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[1][1][-3000:] + outputs[0][1][-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["world_size"], metrics["nnodes"]) == (2, 2)
    assert metrics["history"][1]["loss"] < metrics["history"][0]["loss"]


def test_two_processes_and_one_process_reach_the_same_weights(tmp_path):
    proc = subprocess.run(
        torchrun(2, str(Path(__file__)), "--worker", str(tmp_path / "two")),
        env=subprocess_env(threads=1),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _train_mlp(tmp_path / "one")
    two = torch.load(tmp_path / "two" / "model.pt", weights_only=False)["state_dict"]
    one = torch.load(tmp_path / "one" / "model.pt", weights_only=False)["state_dict"]
    init = _initial_weights()
    for name in one:
        assert not torch.allclose(one[name], init[name]), f"{name} did not train"
        assert torch.allclose(one[name], two[name], atol=1e-5), name


def _initial_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return _mlp().state_dict()


def test_worker_without_a_master_fails_naming_the_address(monkeypatch):
    from denas.train.distributed import RendezvousError, init_distributed

    port = free_port()  # nothing listens here
    for key, value in {
        "WORLD_SIZE": "2",
        "RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    with pytest.raises(RendezvousError) as info:
        init_distributed("gloo", timeout_s=2)
    assert f"127.0.0.1:{port}" in str(info.value) and "within 2s" in str(info.value)
    assert time.monotonic() - started < 60


def test_cli_maps_a_failed_rendezvous_to_exit_code_3(tmp_path, monkeypatch, capsys):
    from denas.train import command
    from denas.train.distributed import RendezvousError

    def no_master(*args, **kwargs):
        raise RendezvousError("rank 1/2 could not join the training group at master 10.0.0.1:29500 within 1s")

    monkeypatch.setattr(command, "train", no_master)
    job = write_job(tmp_path)
    assert command.main([str(job), "--structure", json.dumps(SMALL_CNN), "--out", str(tmp_path / "o")]) == 3
    assert "10.0.0.1:29500" in capsys.readouterr().err


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _train_mlp(Path(sys.argv[2]))
