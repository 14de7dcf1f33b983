"""Selection runs shared through a campaign's store (issue #17): a structure short-trained by one
cell is not trained again by another, and the cells still choose what they would choose alone."""

from __future__ import annotations

import pytest
from search_support import FAKE, selection_spec

from denas.search import SearchConfig, run_search
from denas.search.evaluator import load_scorer
from denas.search.score_store import SELECTION_DIR, ScoreStore
from denas.search.select_stage import ShortTrainer


@pytest.fixture
def trained(monkeypatch):
    """Every (structure hash, epochs) the short trainer really trains, in order."""
    calls: list[tuple[str, int]] = []
    real = ShortTrainer.__call__

    def counting(self, structure, epochs):
        calls.append((self.space.hash(structure), epochs))
        return real(self, structure, epochs)

    monkeypatch.setattr(ShortTrainer, "__call__", counting)
    return calls


def search(out, store=None, **selection):
    config = SearchConfig.from_spec(selection_spec(**selection))
    return run_search(config, out, scorer=load_scorer(FAKE), plots=False, threads=1, score_store=store)


def runs(result: dict) -> list[tuple[str, int, int, float]]:
    return [(r["hash"], r["rung"], r["epochs"], r["metric"]) for r in result["selection"]["runs"]]


def test_a_second_cell_reuses_every_selection_run_and_picks_the_lone_jobs_winner(tmp_path, trained):
    alone = search(tmp_path / "alone")  # no store: what the job returns on its own
    trained.clear()
    store = tmp_path / "store"
    first = search(tmp_path / "first", store)
    assert len(trained) == len(first["selection"]["runs"]) == first["selectionRunsComputed"] > 0
    assert first["selectionRunsReused"] == 0
    assert len(list((store / SELECTION_DIR).glob("*.json"))) == len(trained)

    trained.clear()
    second = search(tmp_path / "second", store)
    assert trained == []  # nothing trained again
    assert second["selectionRunsComputed"] == 0
    assert second["selectionRunsReused"] == len(second["selection"]["runs"])
    assert all(r["source"] == "store" for r in second["selection"]["runs"])
    # the same runs, metrics and winner as the job alone
    assert runs(second) == runs(first) == runs(alone)
    assert second["selection"]["winner"] == alone["selection"]["winner"] == second["best"][0]["hash"]
    assert not list((store / SELECTION_DIR).glob("*.claim"))


def test_another_recipe_trains_its_own_runs(tmp_path, trained):
    store = tmp_path / "store"
    search(tmp_path / "first", store)
    trained.clear()
    # another training sample bound: every metric may differ, so nothing is reused
    other = search(tmp_path / "other", store, maxTrainSamples=192)
    assert other["selectionRunsReused"] == 0
    assert len(trained) == other["selectionRunsComputed"] == len(other["selection"]["runs"])


def test_a_failed_run_is_not_stored_and_the_next_cell_tries_it_itself(tmp_path, monkeypatch):
    calls: list[str] = []
    real = ShortTrainer.__call__
    state = {"fail": None}

    def flaky(self, structure, epochs):
        h = self.space.hash(structure)
        calls.append(h)
        if state["fail"] is None:  # the first run trained fails, once: a failure of that run only
            state["fail"] = h
            raise MemoryError("out of memory")
        return real(self, structure, epochs)

    monkeypatch.setattr(ShortTrainer, "__call__", flaky)
    store = tmp_path / "store"
    first = search(tmp_path / "first", store)
    failed = [r for r in first["selection"]["runs"] if r["status"] == "failed"]
    assert [r["hash"] for r in failed] == [state["fail"]]
    calls.clear()
    second = search(tmp_path / "second", store)
    # the failed run is trained again (and now succeeds); every stored run is reused. The structure
    # may now win a place at rung 1: that run is new too
    assert calls[0] == state["fail"]
    assert second["selectionRunsComputed"] == len(calls) <= 2
    assert second["selectionRunsReused"] == len(second["selection"]["runs"]) - len(calls)
    mine = [r for r in second["selection"]["runs"] if r["hash"] == state["fail"] and r["rung"] == 0]
    assert mine[0]["status"] == "ok" and "source" not in mine[0]
    assert not list((store / SELECTION_DIR).glob("*.claim"))


def test_a_run_interrupted_mid_training_leaves_no_claim_behind(tmp_path, monkeypatch):
    def interrupted(self, structure, epochs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ShortTrainer, "__call__", interrupted)
    store = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "first", store)
    # the next cell must not wait for a run nobody trains
    assert not list((store / SELECTION_DIR).glob("*.claim"))
    assert ScoreStore(store / SELECTION_DIR).count() == 0


def test_the_run_key_names_the_compute_path_and_the_epochs_not_the_cpu(monkeypatch):
    from denas.search import runner
    from denas.search.select_stage import RunHandler
    from denas.train import accel

    def key(bf16: str = "off", epochs: int = 1) -> str:
        spec = selection_spec()
        spec["hardware"]["bf16"] = bf16
        config = SearchConfig.from_spec(spec)
        return RunHandler(runner.load_space(config), config).run_key({"hash": "h", "epochs": epochs})

    plain = key()
    assert key() == plain
    assert key(epochs=2) != plain
    # bf16 forced on: other numerics, another key (a pool where it is chosen trains its own runs)
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: True)
    assert key(bf16="on") != key()
    # the CPU itself is not in the key: another pool with the same compute path reuses the run
    monkeypatch.setattr(accel, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: False)
    assert key() == plain
