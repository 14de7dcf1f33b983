"""The campaign score store and the provenance of cached scores (issues #17 and #14)."""

from __future__ import annotations

import json
import logging
import random
import threading
import time

import pytest
from search_support import FAKE

from denas.search import SearchConfig, run_search
from denas.search.evaluator import DeNASScorer, load_scorer
from denas.search.score_store import ScoreProvenance, ScoreStore

#: the digits CNN space with the sample's search budget; the cells differ in their params budget
CELL_SPEC = {
    "domain": "cnn",
    "searchSpace": {"preset": "digits"},
    "search": {"strategy": "ea", "population": 12, "generations": 4, "warmup": 12, "seed": 0},
    "hardware": {"ipex": "off", "bf16": "off"},
}
BUDGETS = (200_000, 100_000)
TARGETS = ("spr", "icx")


def cell_config(max_params: int) -> SearchConfig:
    return SearchConfig.from_spec({**CELL_SPEC, "constraints": {"maxParams": max_params}})


def candidates(out) -> set[str]:
    lines = (json.loads(line) for line in (out / "history.jsonl").read_text().splitlines())
    return {e["hash"] for e in lines if e["event"] == "candidate"}


def winners(result: dict) -> list[tuple[str, float]]:
    return [(r["hash"], r["scores"]["de_score"]) for r in result["best"]]


def test_a_2x2_campaign_scores_each_structure_once_and_returns_the_independent_winners(tmp_path):
    independent = {}
    for target in TARGETS:
        for budget in BUDGETS:
            out = tmp_path / "alone" / f"{target}-{budget}"
            result = run_search(cell_config(budget), out, scorer=load_scorer(FAKE), plots=False)
            independent[target, budget] = (result, candidates(out))
    one_job = len(independent[TARGETS[0], BUDGETS[0]][1])
    union = set().union(*(c for _, c in independent.values()))

    store = tmp_path / "campaign" / "score-store"
    shared: dict = {}

    def cell(target: str, budget: int) -> None:
        out = tmp_path / "campaign" / f"{target}-{budget}"
        shared[target, budget] = run_search(
            cell_config(budget), out, scorer=load_scorer(FAKE), plots=False, score_store=store
        )

    threads = [threading.Thread(target=cell, args=(t, b)) for t in TARGETS for b in BUDGETS]
    for t in threads:  # all four cells at once: the claims must keep two jobs off the same score
        t.start()
    for t in threads:
        t.join()

    for key, (alone, _) in independent.items():
        assert winners(shared[key]) == winners(alone), key
    computed = sum(r["scoresComputed"] for r in shared.values())
    reused = sum(r["scoresReused"] for r in shared.values())
    assert computed == len(union) == ScoreStore(store).count()
    assert computed + reused == sum(r["evaluated"] for r in shared.values())
    assert computed <= 1.3 * one_job, (computed, one_job)
    # without the store the four jobs compute every one of their candidates
    assert sum(len(c) for _, c in independent.values()) >= 3.9 * one_job


def _counting_scorer(calls: dict, slower: float = 1.0, noisy: bool = False, noise_seed: int = 0):
    """The analytic scorer, counting its calls; ``noisy``: every latency measurement differs (as
    on a real, loaded machine), by up to +-30 %."""
    fake = load_scorer(FAKE)
    rng = random.Random(noise_seed)

    def scorer(space, structure, seed, config):
        calls["score"] += 1
        scores, _ = fake(space, structure, seed, config)
        return scores, latency(space, structure, config)

    def latency(space, structure, config):
        calls["latency"] += 1
        base = slower * fake.latency(space, structure, config)
        return base * (1 + rng.uniform(-0.3, 0.3)) if noisy else base

    scorer.scorer_identity = "tests:counting"
    scorer.latency = latency
    return scorer


def _on(monkeypatch, cpu: str) -> None:
    """Run the next searches on a machine whose fingerprint names ``cpu``."""
    from denas.search import runner

    real = runner.hardware_fingerprint()
    monkeypatch.setattr(runner, "hardware_fingerprint", lambda: {**real, "cpu_model": cpu})


def test_stored_scores_are_reused_but_another_pool_measures_its_own_latency(tmp_path, monkeypatch):
    calls = {"score": 0, "latency": 0}
    store = tmp_path / "store"
    _on(monkeypatch, "Xeon A")
    first = run_search(
        cell_config(BUDGETS[0]),
        tmp_path / "a",
        scorer=_counting_scorer(calls),
        plots=False,
        score_store=store,
    )
    scored, measured = calls["score"], calls["latency"]
    _on(monkeypatch, "Xeon B")  # another CPU model: its latencies are its own
    second = run_search(
        cell_config(BUDGETS[0]),
        tmp_path / "b",
        scorer=_counting_scorer(calls, slower=2.0),
        plots=False,
        score_store=store,
    )
    assert calls["score"] == scored and calls["latency"] - measured == second["evaluated"]
    assert second["scoresReused"] == second["evaluated"] and second["scoresComputed"] == 0
    assert first["best"][0]["scores"] == second["best"][0]["scores"]
    assert second["best"][0]["latency_ms"] == 2 * first["best"][0]["latency_ms"]


def test_jobs_on_identical_hardware_share_measured_latency_and_search_alike(tmp_path, monkeypatch):
    """Noisy measurements near a latency budget flip feasibility; on one CPU model the cells of a
    campaign share what was measured, so the cells of one budget search exactly alike."""
    _on(monkeypatch, "Xeon A")
    spec = {**CELL_SPEC, "constraints": {"maxParams": BUDGETS[0], "maxLatencyMs": 0.6}}
    config = SearchConfig.from_spec(spec)
    # without a store, two runs of the same job on a noisy machine already disagree
    alone = [
        candidates_of(
            run_search(
                config,
                tmp_path / f"alone{i}",
                scorer=_counting_scorer({"score": 0, "latency": 0}, noisy=True, noise_seed=i),
                plots=False,
            ),
            tmp_path / f"alone{i}",
        )
        for i in range(2)
    ]
    calls = {"score": 0, "latency": 0}
    store = tmp_path / "store"
    shared = [
        run_search(
            config,
            tmp_path / f"cell{i}",
            scorer=_counting_scorer(calls, noisy=True),
            plots=False,
            score_store=store,
        )
        for i in range(2)
    ]
    assert candidates(tmp_path / "cell0") == candidates(tmp_path / "cell1")
    assert winners(shared[0]) == winners(shared[1])
    assert [r["latency_ms"] for r in shared[0]["best"]] == [r["latency_ms"] for r in shared[1]["best"]]
    assert shared[1]["scoresComputed"] == 0
    # the second cell measured nothing: every latency (the predictor's calibration too) was shared
    measured_by_first = calls["latency"]
    assert measured_by_first > 0
    run_search(
        config, tmp_path / "cell2", scorer=_counting_scorer(calls, noisy=True), plots=False, score_store=store
    )
    assert calls["latency"] == measured_by_first
    assert alone[0] != alone[1], "the noise did not move the search: the test shows nothing"


def candidates_of(result: dict, out) -> set[str]:
    return candidates(out)


def test_a_store_record_of_another_scorer_or_code_version_is_not_reused(tmp_path):
    store = ScoreStore(tmp_path)
    mine = ScoreProvenance("denas.search.evaluator:DeNASScorer", "v1")
    key = store.key("abc", "settings", 7, mine)
    assert store.get_or_claim(key) is None
    store.put(key, {"de_score": 11.45}, {})
    assert store.get_or_claim(key) == {"de_score": 11.45}
    for other in (
        ScoreProvenance("denas.search.fakes:analytic_scorer", "v1"),
        ScoreProvenance(mine.scorer, "v2"),
    ):
        assert store.key("abc", "settings", 7, other) != key
    assert store.key("abc", "settings", 8, mine) != key  # another seed


@pytest.mark.parametrize(
    "edited",
    ["denas/train/tasks.py", "denas/train/taskdata.py", "denas/search/score_inputs.py", "denas.data"],
)
def test_an_edit_to_the_loss_or_the_scoring_batch_changes_the_scoring_code_version(monkeypatch, edited):
    """A DE-Score is scored with the training loss on a batch of the job's data: records scored
    before an edit of either must not be reused after it."""
    from denas.search import score_store

    scorer = DeNASScorer()
    before = score_store.scoring_code_version(scorer)
    real_file, real_package = score_store._file_digest, score_store._package_digest

    def file_digest(path: str) -> str:
        return "edited" if path.replace("\\", "/").endswith(edited) else real_file(path)

    def package_digest(package: str) -> str:
        return "edited" if package == edited else real_package(package)

    monkeypatch.setattr(score_store, "_file_digest", file_digest)
    monkeypatch.setattr(score_store, "_package_digest", package_digest)
    assert score_store.scoring_code_version(scorer) != before


def test_a_waiting_job_gets_the_score_its_peer_is_computing(tmp_path):
    store = ScoreStore(tmp_path, poll_s=0.01)
    key = store.key("abc", "settings", 0, ScoreProvenance("s", "c"))
    assert store.get_or_claim(key) is None  # this process computes
    got = []
    waiter = threading.Thread(target=lambda: got.append(store.get_or_claim(key)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "the second job must wait, not compute the same score"
    store.put(key, {"de_score": 0.5}, {})
    waiter.join(5)
    assert got == [{"de_score": 0.5}]


def test_a_claim_left_by_a_dead_job_is_taken_over(tmp_path):
    store = ScoreStore(tmp_path, stale_s=0.0, poll_s=0.01)
    key = store.key("abc", "settings", 0, ScoreProvenance("s", "c"))
    assert store.get_or_claim(key) is None  # ... and this job dies without put/release
    assert ScoreStore(tmp_path, stale_s=0.0).get_or_claim(key) is None  # another one computes


def test_a_claim_of_a_process_gone_from_this_host_is_taken_over_at_once(tmp_path):
    import subprocess
    import sys

    key = ScoreStore.key("abc", "settings", 0, ScoreProvenance("s", "c"))
    code = f"from denas.search.score_store import ScoreStore; ScoreStore({str(tmp_path)!r}).get_or_claim({key!r})"
    subprocess.run([sys.executable, "-c", code], check=True)  # claims, then exits without computing
    assert (tmp_path / f"{key}.claim").exists()
    started = time.monotonic()
    assert ScoreStore(tmp_path, wait_s=60).get_or_claim(key) is None  # ours to compute, no 60 s wait
    assert time.monotonic() - started < 5


def test_a_live_owner_on_another_node_keeps_its_claim_and_a_dead_one_loses_it(tmp_path):
    """The owner touches its claim while it computes: a peer waits for a live owner on another
    node (no pid to check there) and takes over within ``stale_s`` once the owner is gone."""
    import subprocess
    import sys

    key = ScoreStore.key("abc", "settings", 0, ScoreProvenance("s", "c"))
    code = f"""
import json, pathlib, time
from denas.search.score_store import ScoreStore
assert ScoreStore({str(tmp_path)!r}, beat_s=0.1).get_or_claim({key!r}) is None
claim = pathlib.Path({str(tmp_path)!r}) / ({key!r} + ".claim")
owner = json.loads(claim.read_text())
claim.write_text(json.dumps({{**owner, "host": "another-node"}}))  # as if it ran elsewhere
print("claimed", flush=True)
time.sleep(2.0)  # computing; then it dies without put or release
"""
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "claimed"
    started = time.monotonic()
    assert ScoreStore(tmp_path, stale_s=0.5, poll_s=0.02, wait_s=60).get_or_claim(key) is None
    waited = time.monotonic() - started
    owner.wait(10)
    assert 1.5 < waited < 6, waited  # not taken from the live owner; taken soon after it died


def test_the_heartbeat_ends_when_no_claim_is_held(tmp_path):
    store = ScoreStore(tmp_path, beat_s=0.05)
    key = store.key("abc", "settings", 0, ScoreProvenance("s", "c"))
    before = set(threading.enumerate())
    assert store.get_or_claim(key) is None
    (beater,) = (t for t in set(threading.enumerate()) - before if t.name == "denas-claim-heartbeat")
    store.put(key, {"de_score": 0.5}, {})
    beater.join(1.0)
    assert not beater.is_alive()


def test_a_real_search_does_not_reuse_the_test_scorers_cached_records(tmp_path, caplog):
    """Issue #14 repro: the analytic scorer's records (scores around 11) fill a shared cache;
    a real search with the same settings must score for itself (DE-Score in (0, 1))."""
    spec = {**CELL_SPEC, "search": {**CELL_SPEC["search"], "population": 4, "generations": 1, "warmup": 0}}
    spec["score"] = {"batchSize": 4, "latency": {"warmup": 0, "repeats": 1}}
    cache = tmp_path / "scores.jsonl"
    fake = run_search(
        SearchConfig.from_spec(spec), tmp_path / "fake", scorer=load_scorer(FAKE), score_cache=cache
    )
    assert fake["best"][0]["scores"]["de_score"] > 5
    with caplog.at_level(logging.WARNING):
        real = run_search(
            SearchConfig.from_spec(spec),
            tmp_path / "real",
            scorer=DeNASScorer(),
            score_cache=cache,
            plots=False,
        )
    assert real["scoresComputed"] == real["evaluated"] > 0
    assert all(0 < r["scores"]["de_score"] < 1 for r in real["best"])
    assert any("ignoring" in r.message and "analytic_scorer" in r.message for r in caplog.records)
