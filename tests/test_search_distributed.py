"""Scoring over torch.distributed (gloo on 127.0.0.1): rank-independent results, no hangs."""

from __future__ import annotations

import signal
import time

from search_support import (
    SLEEP,
    best_of,
    cli,
    free_port,
    progress_generation,
    rank_env,
    read_result,
    spec,
    wait_for,
    write_job,
)

from denas.search.evaluator import Evaluator
from denas.search.runner import load_space


def _job(tmp_path, **search):
    return write_job(tmp_path / "job.yaml", spec("ea", **search))


def test_one_and_two_ranks_give_the_same_result_with_the_real_scorer(tmp_path):
    job = _job(tmp_path, population=4, generations=2, seed=2)
    single = cli(str(job), "--out", str(tmp_path / "one"), "--threads", "1", "--no-plots", timeout=400)
    assert single.returncode == 0, single.stderr

    port = free_port()
    procs = [
        cli(
            str(job),
            "--out",
            str(tmp_path / "two"),
            "--threads",
            "1",
            "--no-plots",
            "--dist-timeout",
            "120",
            env=rank_env(rank, 2, port),
            background=True,
        )
        for rank in range(2)
    ]
    for p in procs:
        p.wait(400)
    assert [p.returncode for p in procs] == [0, 0], procs[0].stderr.read() + procs[1].stderr.read()
    one, two = read_result(tmp_path / "one"), read_result(tmp_path / "two")
    assert best_of(one) == best_of(two)
    assert one["evaluated"] == two["evaluated"]
    assert [b["scores"] for b in one["best"]] == [b["scores"] for b in two["best"]]
    assert not (tmp_path / "two" / "rank1").exists()  # only rank 0 writes


def test_scores_do_not_depend_on_the_order_candidates_are_scored_in():
    from search_support import config

    cfg = config("random")
    space = load_space(cfg)
    import random

    rng = random.Random(0)
    structures = [space.sample(rng) for _ in range(3)]
    evaluator = Evaluator(space, cfg)  # the real DE-Score
    forward = [evaluator.evaluate(s)["scores"] for s in structures]
    backward = [evaluator.evaluate(s)["scores"] for s in reversed(structures)][::-1]
    assert forward == backward
    assert len({json_key(s) for s in forward}) == len(structures)  # and they do tell candidates apart


def json_key(scores: dict) -> str:
    import json

    return json.dumps(scores, sort_keys=True)


def test_a_dead_rank_fails_the_generation_with_a_clear_error_instead_of_hanging(tmp_path):
    job = _job(tmp_path, population=8, generations=50)
    port, progress = free_port(), tmp_path / "progress.json"
    env = {"DENAS_FAKE_SCORE_S": "0.2"}
    common = ["--out", str(tmp_path / "out"), "--scorer", SLEEP, "--threads", "1", "--dist-timeout", "600"]
    rank0 = cli(
        str(job),
        *common,
        "--progress-file",
        str(progress),
        env={**env, **rank_env(0, 2, port)},
        background=True,
    )
    rank1 = cli(str(job), *common, env={**env, **rank_env(1, 2, port)}, background=True)
    try:
        wait_for(lambda: progress_generation(progress) >= 1, 300, "the first generation", [rank0, rank1])
        rank1.send_signal(signal.SIGKILL)
        started = time.monotonic()
        rank0.wait(150)  # far below --dist-timeout: a dead peer is noticed, not waited out
        waited = time.monotonic() - started
    finally:
        rank0.kill()
        rank1.kill()
    stderr = rank0.stderr.read()
    assert rank0.returncode != 0
    assert "peer rank died" in stderr and "--resume" in stderr, stderr[-2000:]
    assert waited < 150
    assert (tmp_path / "out" / "checkpoint.pkl").exists()
