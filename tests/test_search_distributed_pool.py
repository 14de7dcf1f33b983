"""DistributedPool on two real gloo ranks: dynamic hand-out, candidate order, no hangs.

Each test runs RANK_SCRIPT as two processes with a sleep-based ``evaluate`` (a candidate
``{"i": i, "cost": s}`` takes ``s`` seconds and reports which rank scored it, so these tests
do not depend on the CPU load).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from search_support import ROOT, free_port, rank_env, wait_for

RANK_SCRIPT = r"""
import json, os, sys, time
from pathlib import Path

import torch.distributed  # imported before the file barrier so both ranks join together

from denas.search.config import SearchError
from denas.search.distributed import DistributedPool, RankFailure

mode, tmp, timeout, late = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rank = int(os.environ["RANK"])
(tmp / f"ready.{rank}").touch()
while not all((tmp / f"ready.{r}").exists() for r in range(2)):
    time.sleep(0.01)


def evaluate(structure):
    start = time.monotonic()
    time.sleep(structure["cost"])
    return {"i": structure["i"], "cost": structure["cost"], "rank": rank, "start": start}


pool = DistributedPool(evaluate, rank, 2, timeout, cost=lambda s: s["cost"])
try:
    if rank == 1:
        time.sleep(late)  # a worker still warming up when the first round is posted
        try:
            pool.serve()
        except (SearchError, RankFailure) as e:
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(3)
    else:
        rounds = json.loads((tmp / "rounds.json").read_text())
        out = []
        for n, structures in enumerate(rounds):
            if n == 1 and mode == "stall":
                (tmp / "round1.done").touch()
                while not (tmp / "go").exists():  # the test stops or kills a rank meanwhile
                    time.sleep(0.01)
            try:
                out.append(pool.map(structures))
            except RankFailure as e:
                print(f"RankFailure: {e}", file=sys.stderr)
                sys.exit(4)
        (tmp / "records.json").write_text(json.dumps(out))
        if mode == "abort":
            pool.abort("the strategy exploded")
            sys.exit(5)
finally:
    pool.close()
"""


def start(tmp: Path, mode: str, rounds: list, timeout: float = 60, late: float = 0.0):
    script = tmp / "rank.py"
    script.write_text(RANK_SCRIPT)
    (tmp / "rounds.json").write_text(json.dumps(rounds))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    return [
        subprocess.Popen(
            [sys.executable, str(script), mode, str(tmp), str(timeout), str(late)],
            env={**env, **rank_env(rank, 2, port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for rank in range(2)
    ]


def finish(procs, timeout: float = 120) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        finally:
            p.kill()
        out.append((p.returncode, err))
    return out


def round_of(costs: list[float], offset: int = 0) -> list[dict]:
    return [{"i": offset + i, "cost": c} for i, c in enumerate(costs)]


def test_records_come_back_in_candidate_order_and_a_late_rank_takes_fewer(tmp_path):
    first = round_of([0.05, 0.12, 0.08, 0.15, 0.1, 0.06])  # 0.56 s in all
    second = round_of([0.1] * 8, offset=100)
    procs = start(tmp_path, "rounds", [first, second], late=1.5)
    results = finish(procs)
    assert [code for code, _ in results] == [0, 0], results
    got = json.loads((tmp_path / "records.json").read_text())

    assert [[r["i"] for r in records] for records in got] == [
        [s["i"] for s in first],
        [s["i"] for s in second],
    ]
    # rank 1 was still busy when round 1 was posted: rank 0 did not wait for it, and (a fixed
    # split would give each rank 3) scored the round alone, most expensive first
    by_rank0 = sorted((r for r in got[0] if r["rank"] == 0), key=lambda r: r["start"])
    assert len(by_rank0) >= 4, got[0]
    costs = [r["cost"] for r in by_rank0]
    assert costs == sorted(costs, reverse=True)
    # once both ranks are there, both score
    assert {r["rank"] for r in got[1]} == {0, 1}


def test_rank_0_tells_the_workers_why_it_aborted(tmp_path):
    procs = start(tmp_path, "abort", [round_of([0.05] * 4)])
    (code0, _), (code1, err1) = finish(procs)
    assert code0 == 5
    assert code1 == 3
    assert "rank 0 aborted the search: the strategy exploded" in err1, err1


def test_a_worker_fails_at_once_when_rank_0_dies_between_generations(tmp_path):
    procs = start(tmp_path, "stall", [round_of([0.05] * 4), round_of([0.05] * 4, 10)], timeout=600)
    try:
        wait_for(lambda: (tmp_path / "round1.done").exists(), 120, "the first round", procs)
        procs[0].send_signal(signal.SIGKILL)
        began = time.monotonic()
        procs[1].wait(60)  # far below the 600 s timeout: rank 0's store went away
        waited = time.monotonic() - began
    finally:
        for p in procs:
            p.kill()
    err = procs[1].stderr.read()
    assert procs[1].returncode == 3
    assert "RankFailure" in err and "waiting for the next generation" in err, err[-2000:]
    assert waited < 60


def test_a_stalled_worker_fails_the_generation_after_the_timeout_not_never(tmp_path):
    procs = start(tmp_path, "stall", [round_of([0.05] * 4), round_of([0.05] * 4, 10)], timeout=5)
    try:
        wait_for(lambda: (tmp_path / "round1.done").exists(), 120, "the first round", procs)
        procs[1].send_signal(signal.SIGSTOP)  # alive, connections open, never answers
        (tmp_path / "go").touch()
        began = time.monotonic()
        procs[0].wait(90)
        waited = time.monotonic() - began
    finally:
        for p in procs:
            p.kill()
    err = procs[0].stderr.read()
    assert procs[0].returncode == 4
    assert "gathering scores failed" in err and "within 5 s" in err, err[-2000:]
    assert waited < 90


def test_a_workers_warm_up_changes_no_score():
    from search_support import config

    from denas.search.evaluator import Evaluator
    from denas.search.runner import load_space

    cfg = config("random")
    space = load_space(cfg)
    rng = random.Random(5)
    structures = [space.sample(rng) for _ in range(2)]
    evaluator = Evaluator(space, cfg)  # the real DE-Score
    cold = [evaluator.evaluate(s)["scores"] for s in structures]
    evaluator.warm_up()
    assert [evaluator.evaluate(s)["scores"] for s in structures] == cold


def test_a_failing_warm_up_is_only_a_warning(caplog):
    from search_support import FAKE, config

    from denas.search.evaluator import Evaluator, load_scorer
    from denas.search.runner import load_space

    class Broken:
        def __call__(self, *args):
            return load_scorer(FAKE)(*args)

        def warm_up(self, space, config):
            raise RuntimeError("no kernels today")

    cfg = config("random")
    space = load_space(cfg)
    evaluator = Evaluator(space, cfg, Broken())
    evaluator.warm_up()
    assert "no kernels today" in caplog.text
    assert evaluator.evaluate(space.sample(random.Random(0)))["fitness"] is not None
