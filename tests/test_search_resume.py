"""Kill-and-resume reaches the same result as an uninterrupted search with the same seed."""

from __future__ import annotations

import signal

import pytest
from search_support import (
    FAKE,
    SLEEP,
    best_of,
    cli,
    config,
    progress_generation,
    read_result,
    spec,
    wait_for,
    write_job,
)

from denas.search import run_search
from denas.search.evaluator import load_scorer
from denas.search.score_store import scorer_identity


class Interrupt(Exception):
    pass


def _stop_after(generation: int):
    def on_event(event):
        if event["event"] == "generation" and event["generation"] == generation:
            raise Interrupt

    return on_event


def test_sigkill_mid_generation_then_resume_equals_an_uninterrupted_run(tmp_path):
    s = spec("ea", population=6, generations=6, seed=5)
    job = write_job(tmp_path / "job.yaml", s)
    reference = run_search(
        config("ea", population=6, generations=6, seed=5), tmp_path / "ref", scorer=load_scorer(FAKE)
    )

    out, progress = tmp_path / "out", tmp_path / "progress.json"
    calls = tmp_path / "calls.log"
    env = {"DENAS_FAKE_SCORE_S": "0.15", "DENAS_FAKE_SCORE_LOG": str(calls)}
    proc = cli(
        str(job),
        "--out",
        str(out),
        "--scorer",
        SLEEP,
        "--progress-file",
        str(progress),
        env=env,
        background=True,
    )
    try:
        wait_for(lambda: progress_generation(progress) >= 2, 300, "the second checkpoint", [proc])
        # land the kill inside generation 3's scoring: some of its candidates are done, some not
        wait_for(
            lambda: calls.exists() and len(calls.read_text().split()) > reference_count(out) + 1,
            30,
            "scoring",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert not (out / "result.json").exists(), "the kill came too late to test anything"

    resumed = cli(str(job), "--out", str(out), "--scorer", SLEEP, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    result = read_result(out)
    assert best_of(result) == best_of(reference)
    assert result["evaluated"] == reference["evaluated"]
    assert [r["hash"] for r in result["pareto"]] == [r["hash"] for r in reference["pareto"]]
    # no structure was scored twice: the kill lost at most the candidate being scored at that instant
    scored = calls.read_text().split()
    assert len(scored) - len(set(scored)) <= 1
    history = [line for line in (out / "history.jsonl").read_text().splitlines() if '"candidate"' in line]
    assert len(history) == result["evaluated"]


def reference_count(out):
    """Candidates already recorded in the checkpointed history."""
    try:
        return (out / "history.jsonl").read_text().count('"candidate"')
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize(
    "strategy,extra",
    [("bo", {}), ("nsga2", {}), ("ea", {"aging": True, "surrogate": True, "moveProposals": 2})],
)
def test_interrupted_and_resumed_equals_uninterrupted(strategy, extra, tmp_path):
    cfg = lambda: config(strategy, population=6, generations=5, seed=11, **extra)  # noqa: E731
    reference = run_search(cfg(), tmp_path / "ref", scorer=load_scorer(FAKE), plots=False)
    with pytest.raises(Interrupt):
        run_search(cfg(), tmp_path / "out", scorer=load_scorer(FAKE), on_event=_stop_after(2), plots=False)
    resumed = run_search(cfg(), tmp_path / "out", resume=True, scorer=load_scorer(FAKE), plots=False)
    assert best_of(resumed) == best_of(reference)
    assert resumed["pareto"] == reference["pareto"]
    assert resumed["evaluated"] == reference["evaluated"]


def test_a_shared_score_cache_means_a_repeated_search_scores_nothing(tmp_path):
    cache = tmp_path / "scores.jsonl"
    first = run_search(
        config("ea", seed=4), tmp_path / "a", scorer=load_scorer(FAKE), score_cache=cache, plots=False
    )

    def never(*args):
        raise AssertionError("scored a structure that the shared cache holds")

    # the same scorer as far as the cache can tell (its records are keyed by scorer identity)
    never.scorer_identity = scorer_identity(load_scorer(FAKE))

    again = run_search(config("ea", seed=4), tmp_path / "b", scorer=never, score_cache=cache, plots=False)
    assert best_of(again) == best_of(first)
    other = config("ea", seed=4)
    other.score["batchSize"] = 8  # other score settings: the cached entries must not match
    with pytest.raises(AssertionError, match="shared cache"):
        run_search(other, tmp_path / "c", scorer=never, score_cache=cache, plots=False)
