"""Pure pieces of denas.train: the torchrun env contract, thread shares, compute-path choice,
structure resolution, tasks and checkpoints. No training here."""

from __future__ import annotations

import json
import random
import sys

import pytest
import torch

from denas.train import accel, checkpoint, distributed
from denas.train.command import resolve_structure
from denas.train.envvars import torchrun_command, torchrun_env
from denas.train.tasks import ClassificationTask, CTCTask, edit_distance


def test_torchrun_env_follows_the_pytorchjob_contract():
    env = torchrun_env("mnist", None, node_rank=1, nnodes=3, nproc_per_node=2, port=23456)
    assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "mnist-train-master-0.mnist-train"
    assert env["MASTER_PORT"] == env["PET_MASTER_PORT"] == "23456"
    assert (env["WORLD_SIZE"], env["RANK"]) == ("3", "1")
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"], env["PET_NODE_RANK"]) == ("3", "2", "1")
    assert all(isinstance(v, str) for v in env.values())


def test_torchrun_env_master_addr_override_for_local_processes():
    env = torchrun_env("j", "svc", 0, 1, 1, 1234, master_addr="127.0.0.1")
    assert env["MASTER_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize("kwargs", [{"node_rank": 2, "nnodes": 2}, {"nnodes": 0}, {"nproc_per_node": 0}])
def test_torchrun_env_rejects_impossible_groups(kwargs):
    args = {"job_name": "j", "service": None, "node_rank": 0, "nnodes": 1, "nproc_per_node": 1} | kwargs
    with pytest.raises(ValueError):
        torchrun_env(**args)


def test_torchrun_command_repeats_the_env_and_bounds_the_rendezvous():
    cmd = torchrun_command(
        "j", None, 0, 2, 4, 2999, train_args=["job.yaml", "--out", "o"], rendezvous_timeout=42
    )
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    for flag in (
        "--nnodes=2",
        "--nproc-per-node=4",
        "--node-rank=0",
        "--master-port=2999",
        "--rdzv-conf=timeout=42",
    ):
        assert flag in cmd
    assert "--master-addr=j-train-master-0.j-train" in cmd
    assert cmd[-6:] == ["-m", "denas", "train", "job.yaml", "--out", "o"]


def test_thread_share_divides_cpus_between_local_processes():
    assert distributed.threads_per_process(2, cpus=8) == 4
    assert distributed.threads_per_process(3, cpus=8) == 2
    assert distributed.threads_per_process(4, cpus=2) == 1


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert distributed._cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert distributed._cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert distributed._cgroup_cpu_quota(tmp_path / "v1") == 4.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert distributed._cgroup_cpu_quota(tmp_path / "v1") is None


def test_compute_path_off_means_stock_fp32():
    path = accel.choose_compute_path("off", "off")
    assert (path.ipex, path.bf16, path.name) == (False, False, "stock-fp32")


def test_compute_path_auto_is_stock_pytorch_with_bf16_only_where_it_helps():
    for domain in ("vit", "bert", "asr"):
        path = accel.choose_compute_path("auto", "auto", domain)
        assert not path.ipex  # IPEX is opt-in: it gave no training speed-up and diverged with bf16 weights
        assert path.bf16 == accel.cpu_has_native_bf16()
    for domain in ("cnn", "nb201"):
        path = accel.choose_compute_path("auto", "auto", domain)
        assert (path.ipex, path.bf16, path.name) == (False, False, "stock-fp32")
        assert "fp32 for" in path.reason or "no AMX" in path.reason


def test_compute_path_on_is_honoured_whatever_the_domain(monkeypatch):
    monkeypatch.setattr(accel, "ipex_installed", lambda: True)
    path = accel.choose_compute_path("on", "on", "cnn")
    assert (path.ipex, path.bf16, path.name) == (True, True, "ipex-bf16")


def test_compute_path_rejects_unknown_setting():
    with pytest.raises(ValueError, match="spec.hardware.ipex"):
        accel.choose_compute_path("yes", "auto")


def test_structure_from_result_json_uses_the_rank(tmp_path):
    result = {"best": [{"structure": {"a": 1}}, {"structure": {"a": 2}}]}
    file = tmp_path / "result.json"
    file.write_text(json.dumps(result))
    assert resolve_structure(str(file), 1)[0] == {"a": 2}
    with pytest.raises(ValueError, match="structureRank"):
        resolve_structure(str(file), 2)


def test_structure_inline_and_missing_file(tmp_path):
    assert resolve_structure('{"ops": ["none"]}')[0] == {"ops": ["none"]}
    with pytest.raises(FileNotFoundError, match="nope.json"):
        resolve_structure(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        resolve_structure(str(tmp_path / "bad.json"))


def test_classification_counts_correct_predictions():
    task = ClassificationTask()
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    counts = task.counts(logits, torch.tensor([0, 1, 1]))
    assert counts == [2.0, 3.0]
    assert task.metric(counts) == pytest.approx(2 / 3)


def test_ctc_greedy_decode_merges_repeats_and_drops_blanks():
    task = CTCTask(" ab")  # ids: 0 blank, 1 space, 2 a, 3 b
    frames = [2, 2, 0, 2, 1, 3, 3, 0]  # "aa" (blank separates) + " " + "b"
    logits = torch.nn.functional.one_hot(torch.tensor([frames]), 4).float()
    assert task.decode(logits, torch.tensor([8])) == ["aa b"]
    targets = {"input_lengths": torch.tensor([8]), "frames": 8, "texts": ["aa c"]}
    assert task.counts(logits, targets) == [1.0, 2.0]


def test_edit_distance():
    assert edit_distance("a b c".split(), "a c".split()) == 1
    assert edit_distance([], "x y".split()) == 2
    assert edit_distance("x".split(), "x".split()) == 0


def test_atomic_save_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / checkpoint.CHECKPOINT_NAME
    checkpoint.atomic_save({"epoch": 1}, path)
    checkpoint.atomic_save({"epoch": 2}, path)
    assert checkpoint.load_checkpoint(tmp_path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT_NAME]


def test_rng_state_round_trip():
    state = checkpoint.rng_state()
    a = (torch.rand(3), random.random())
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(3), a[0]) and random.random() == a[1]


def test_thread_setting_precedence(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("DENAS_THREADS", "1")
        assert distributed.set_threads(local_world_size=4) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("DENAS_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        monkeypatch.setattr(distributed, "available_cpus", lambda: 8)
        # a lone process honours OMP_NUM_THREADS; several share the CPUs (torchrun's OMP=1 ignored)
        assert distributed.set_threads(local_world_size=1) == 1
        assert distributed.set_threads(local_world_size=2) == 4
    finally:
        torch.set_num_threads(before)


def test_ipex_on_without_ipex_fails_with_the_fix(monkeypatch):
    monkeypatch.setattr(accel, "ipex_installed", lambda: False)
    with pytest.raises(RuntimeError, match="xeon"):
        accel.choose_compute_path("on", "off")
    assert accel.choose_compute_path("auto", "off").name == "stock-fp32"
