"""The selection stage inside `denas search` (denas.search.select_stage): real short training of
the top-K on digits, its record in result.json, validation, resume after a kill, and two ranks."""

from __future__ import annotations

import copy
import json
import signal

import pytest
from search_support import (
    FAKE,
    cli,
    free_port,
    rank_env,
    read_result,
    selection_spec,
    wait_for,
    write_job,
)

from denas.job import JobValidationError, load_job
from denas.search import SearchConfig
from denas.search.config import SearchError
from denas.status import best_structures, search_progress


def run_cli(tmp_path, name: str, *extra: str, env=None, **kw):
    job = write_job(tmp_path / "job.yaml", selection_spec())
    return cli(
        str(job),
        "--out",
        str(tmp_path / name),
        "--scorer",
        FAKE,
        "--threads",
        "1",
        "--no-plots",
        *extra,
        env=env,
        **kw,
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("select")
    proc = run_cli(tmp, "one", env={"OMP_NUM_THREADS": "1"}, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "one", proc.stdout


def test_search_trains_the_top_k_and_the_winner_leads_best(single):
    out, stdout = single
    result = read_result(out)
    sel = result["selection"]
    runs = sel["runs"]
    # 4 candidates for 1 epoch, the best 2 for 2 epochs, every run with its record
    assert [(r["rung"], r["epochs"]) for r in runs] == [(0, 1)] * 4 + [(1, 2)] * 2
    for r in runs:
        assert set(r) >= {"hash", "rung", "epochs", "metric", "status", "train_s"}
        assert r["status"] == "ok" and 0.0 <= r["metric"] <= 1.0
    assert len({r["hash"] for r in runs if r["rung"] == 0}) == 4
    # the two promoted are the best of rung 0
    rung0 = sorted((r for r in runs if r["rung"] == 0), key=lambda r: -r["metric"])
    assert {r["hash"] for r in runs if r["rung"] == 1} == {r["hash"] for r in rung0[:2]}
    top = max((r for r in runs if r["rung"] == 1), key=lambda r: r["metric"])
    assert sel["winner"] == top["hash"] == result["best"][0]["hash"]
    assert result["best"][0]["selection"]["metric"] == top["metric"]
    # the train-free rank stays visible beside the selection metric
    free = [b["trainFreeRank"] for b in result["best"]]
    assert sorted(free) == sorted(set(free)) and all(isinstance(x, int) for x in free)
    assert sel["metric_name"] == "accuracy" and sel["dataset"] == "digits" and sel["train_samples"] == 256
    assert 0 < sel["validation_samples"] <= 128
    # the per-run log on disk holds the same runs (the resume record)
    lines = [json.loads(x) for x in (out / "selection.jsonl").read_text().splitlines()]
    assert sorted(json.dumps(x, sort_keys=True) for x in lines) == sorted(
        json.dumps(x, sort_keys=True) for x in runs
    )
    # progress: one event per finished run, in the status' shape
    events = [json.loads(x) for x in stdout.splitlines() if '"selection"' in x]
    assert events and events[-1]["selection"] == {"rung": 1, "rungs": 2, "done": 2, "total": 2}
    assert search_progress(events[-1])["selection"]["rungs"] == 2
    status = best_structures(result, 5)
    assert status[0]["hash"] == sel["winner"] and status[0]["selection"]["metric"] == top["metric"]
    assert "trainFreeRank" in status[0]


def test_two_ranks_share_the_rungs_and_reach_the_same_result(single, tmp_path):
    port = free_port()
    procs = [
        run_cli(
            tmp_path,
            "two",
            "--dist-timeout",
            "200",
            env={**rank_env(rank, 2, port), "OMP_NUM_THREADS": "1"},
            background=True,
        )
        for rank in range(2)
    ]
    for p in procs:
        p.wait(400)
    assert [p.returncode for p in procs] == [0, 0], (
        procs[0].stderr.read()[-2000:] + procs[1].stderr.read()[-2000:]
    )
    one, two = read_result(single[0])["selection"], read_result(tmp_path / "two")["selection"]
    assert {r["rank"] for r in two["runs"]} == {0, 1}  # both ranks trained their share
    key = lambda r: (r["rung"], r["hash"], r["metric"])  # noqa: E731
    assert sorted(map(key, one["runs"])) == sorted(map(key, two["runs"]))
    assert one["winner"] == two["winner"]


def test_a_search_killed_inside_a_rung_resumes_without_retraining_finished_runs(single, tmp_path):
    log = tmp_path / "out" / "selection.jsonl"
    proc = run_cli(tmp_path, "out", env={"OMP_NUM_THREADS": "1"}, background=True)
    wait_for(
        lambda: log.exists() and len(log.read_text().splitlines()) >= 2, 300, "two selection runs", [proc]
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    before = [json.loads(x) for x in log.read_text().splitlines() if x.endswith("}")]
    assert "result.json" not in {p.name for p in (tmp_path / "out").iterdir()} or len(before) < 6
    again = run_cli(tmp_path, "out", "--resume", env={"OMP_NUM_THREADS": "1"}, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = read_result(tmp_path / "out")["selection"]["runs"]
    for r in before:  # kept verbatim (same train_s): not trained again
        assert r in runs
    reference = read_result(single[0])["selection"]
    assert sorted((r["rung"], r["hash"], r["metric"]) for r in runs) == sorted(
        (r["rung"], r["hash"], r["metric"]) for r in reference["runs"]
    )


def _manifest(search: dict, training: dict) -> dict:
    return {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "bad"},
        "spec": {
            "domain": "cnn",
            "search": {"population": 4, "generations": 2, **search},
            "training": training,
        },
    }


@pytest.mark.parametrize(
    ("search", "training", "field"),
    [
        ({"selection": {"enabled": True}}, {"enabled": False}, "spec.search.selection.enabled"),
        ({"selection": {"topK": 9}}, {"enabled": True}, "spec.search.selection.topK"),
        (
            {"selection": {"minEpochs": 3, "maxEpochs": 2}},
            {"enabled": True},
            "spec.search.selection.maxEpochs",
        ),
        ({"selection": {"eta": 1}}, {"enabled": True}, "spec.search.selection.eta"),
        ({"selection": {"surrogateExtra": -1}}, {"enabled": True}, "spec.search.selection.surrogateExtra"),
        ({"selection": {"surrogatePool": 0}}, {"enabled": True}, "spec.search.selection.surrogatePool"),
        ({"selection": {"diversity": "max"}}, {"enabled": True}, "spec.search.selection.diversity"),
        ({"strategy": "bo", "surrogate": True}, {"enabled": True}, "spec.search.surrogate"),
        ({"strategy": "nsga2", "surrogate": True}, {"enabled": True}, "spec.search.surrogate"),
    ],
)
def test_bad_selection_settings_are_rejected_naming_the_field(search, training, field):
    with pytest.raises(JobValidationError) as err:
        load_job(_manifest(search, training))
    assert field in str(err.value)


def test_selection_without_training_is_checked_after_the_api_servers_defaults_too():
    """On a cluster the API server fills spec.training.dataset with digits before the operator
    validates: a bert job that only searches and asks for selection must not train on digits."""
    from denas.job import apply_defaults, openapi_schema, validate_manifest

    manifest = _manifest({"selection": {"enabled": True}}, {"enabled": False})
    manifest["spec"]["domain"] = "bert"
    defaulted = apply_defaults(openapi_schema(), copy.deepcopy(manifest))
    assert defaulted["spec"]["training"]["dataset"] == {"name": "digits"}
    errors = validate_manifest(defaulted)
    assert any(
        e.startswith("spec") and "spec.training.dataset.name does not fit spec.domain" in e for e in errors
    )
    # the same job with a data set that fits, or without selection, is fine
    defaulted["spec"]["training"]["dataset"] = {"name": "synthetic-text"}
    assert validate_manifest(defaulted) == []
    manifest["spec"]["search"]["selection"]["enabled"] = False
    assert validate_manifest(apply_defaults(openapi_schema(), copy.deepcopy(manifest))) == []


def test_a_search_only_job_with_selection_scores_on_the_data_selection_trains_on():
    from denas.search.score_inputs import label as score_inputs_label

    job = load_job(
        _manifest({"selection": {"enabled": True}}, {"enabled": False, "dataset": {"name": "digits"}})
    )
    config = SearchConfig.from_spec(job.spec)
    assert config.selection.enabled and config.dataset == {"name": "digits"}
    assert score_inputs_label(config) == "dataset:digits"
    # without selection and training the search has no data: synthetic inputs
    plain = SearchConfig.from_spec(load_job(_manifest({}, {"enabled": False})).spec)
    assert plain.dataset is None and score_inputs_label(plain) == "synthetic"


def test_the_engine_rejects_the_same_settings_without_the_schema():
    base = {"domain": "cnn", "search": {"population": 4, "generations": 2}, "training": {"enabled": True}}
    for selection, field in (
        ({"topK": 9}, "spec.search.selection.topK"),
        ({"minEpochs": 3, "maxEpochs": 2}, "spec.search.selection.maxEpochs"),
        ({"eta": 1}, "spec.search.selection.eta"),
        ({"surrogateExtra": -1}, "spec.search.selection.surrogateExtra"),
        ({"diversity": "max"}, "spec.search.selection.diversity"),
    ):
        with pytest.raises(SearchError, match=field):
            SearchConfig.from_spec({**base, "search": {**base["search"], "selection": selection}})
    with pytest.raises(SearchError, match="spec.search.surrogate"):
        SearchConfig.from_spec({**base, "search": {"strategy": "bo", "surrogate": True}})


def test_selection_is_on_by_default_when_the_job_trains_and_off_otherwise():
    on = load_job(_manifest({}, {"enabled": True}))
    off = load_job(_manifest({}, {"enabled": False}))
    assert SearchConfig.from_spec(on.spec).selection.enabled
    assert not SearchConfig.from_spec(off.spec).selection.enabled
    # an unset topK never exceeds what the search scores (4 x 2 here)
    assert SearchConfig.from_spec(on.spec).selection.top_k == 8
    small = load_job(_manifest({"population": 3, "generations": 1}, {"enabled": True}))
    assert SearchConfig.from_spec(small.spec).selection.top_k == 3


def test_denas_search_exits_2_on_a_bad_selection(tmp_path):
    s = selection_spec(minEpochs=3, maxEpochs=2)
    proc = cli(str(write_job(tmp_path / "job.yaml", s)), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "spec.search.selection.maxEpochs" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_that_diverges_on_real_data_is_recorded_as_failed_not_raised():
    import torch

    from denas.search.runner import load_space
    from denas.search.select_stage import ShortTrainer
    from denas.search.selection import run_one

    s = selection_spec(maxTrainSamples=64, maxEvalSamples=32)
    s["training"]["learningRate"] = 1e12  # SGD at this rate overflows within a step or two
    config = SearchConfig.from_spec(s)
    space = load_space(config)
    torch.set_num_threads(1)
    trainer = ShortTrainer(space, config)
    structure = space.sample(__import__("random").Random(0))
    run = run_one(trainer, {"hash": "x", "structure": structure}, 0, 2)
    assert run["status"] == "failed" and run["metric"] is None
    assert "TrainingDiverged" in run["error"] or "diverged" in run["error"]


def test_runs_are_measured_on_data_held_out_of_the_training_split():
    from denas.search.select_stage import validation_split

    train, val = validation_split(list(range(1000)), 300, 150, seed=3)
    assert len(val) == 150 and len(train) == 300  # a fifth at most (200), capped at 150
    assert not set(train.indices) & set(val.indices)
    assert validation_split(list(range(1000)), 300, 150, seed=3)[1].indices == val.indices  # seeded
    train, val = validation_split(list(range(100)), None, 512, seed=0)
    assert len(val) == 20 and len(train) == 80


RESCUE_SCRIPT = r"""
import json, os, sys, time
from pathlib import Path

import torch.distributed

from denas.search.distributed import DistributedPool, RankFailure

tmp = Path(sys.argv[1])
rank = int(os.environ["RANK"])
done = []


def evaluate(item):
    if rank == 1 and len(done) == 2:
        os._exit(1)  # the pod is lost while training its third candidate
    time.sleep(0.2)
    done.append(item["i"])
    return {"i": item["i"], "rank": rank}


pool = DistributedPool(evaluate, rank, 2, 30.0)
if rank == 1:
    pool.serve()
else:
    kept = []
    try:
        pool.map([{"i": i} for i in range(12)], on_record=kept.append)
    except RankFailure:
        (tmp / "kept.json").write_text(json.dumps(kept))
        sys.exit(4)
"""


def test_a_lost_worker_loses_only_the_run_it_was_on(tmp_path):
    """Finished runs of a rank that dies mid-rung reach rank 0's on_record (the selection log)."""
    import os
    import subprocess
    import sys

    from search_support import ROOT

    script = tmp_path / "rank.py"
    script.write_text(RESCUE_SCRIPT)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)],
            env={**env, **rank_env(rank, 2, port)},
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for p in procs:
        p.wait(120)
    assert procs[0].returncode == 4, procs[0].stderr.read()[-2000:]
    kept = json.loads((tmp_path / "kept.json").read_text())
    assert sum(r["rank"] == 1 for r in kept) == 2  # both runs rank 1 finished were kept
    assert sum(r["rank"] == 0 for r in kept) >= 1


def test_the_selection_surrogate_adds_candidates_beyond_top_k_and_result_json_says_which(tmp_path):
    job = write_job(tmp_path / "job.yaml", selection_spec(surrogateExtra=2, surrogatePool=8))
    proc = cli(
        str(job),
        "--out",
        str(tmp_path / "s"),
        "--scorer",
        FAKE,
        "--threads",
        "1",
        "--no-plots",
        env={"OMP_NUM_THREADS": "1"},
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(tmp_path / "s")
    sel = result["selection"]
    sur = sel["surrogate"]
    assert sur["extra"] == 2 and sur["fitted_on"] == 4 and 4 <= sur["pool"] <= 8
    picked = [p["hash"] for p in sur["picked"]]
    assert len(picked) == 2 and all(p["predicted"] is not None for p in sur["picked"])
    # the picks come from beyond the train-free top-4 and were trained at rung 0 beside it
    rung0 = [r["hash"] for r in sel["runs"] if r["rung"] == 0]
    assert len(rung0) == 6 and rung0[4:] == picked
    # never a candidate rung 0 already trained (with coverage the top-4 need not be ranks 1-4)
    assert not set(picked) & set(rung0[:4])
    assert sel["settings"]["surrogateExtra"] == 2 and sel["rungs"][0]["trained"] == 6
