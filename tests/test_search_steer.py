"""Steering (spec.search.selection.interleave, denas.search.steer): short training inside the search
orders later generations' proposals, and the selection stage reuses those runs."""

from __future__ import annotations

import json

import pytest
from search_support import FAKE, cli, read_result, selection_spec, write_job

from denas.search import SearchConfig
from denas.search.config import SearchError
from denas.search.selection import SelectionSettings
from denas.search.steer import Steering


class _Cfg:
    def __init__(self, interleave: int = 2, runs: int = 2, generations: int = 6):
        self.selection = SelectionSettings(enabled=True, interleave=interleave, interleave_runs=runs)
        self.generations = generations


class _LineSpace:
    """Structures {"x": int, "y": int}; encode is (x, y)."""

    name = "line"

    def encode(self, structure: dict) -> list[float]:
        return [float(structure["x"]), float(structure["y"])]


class _NoEncode(_LineSpace):
    def encode(self, structure: dict) -> list[float]:
        raise NotImplementedError


class _Pool:
    """Runs "select" items in order with a metric of the structure, like LocalPool + RunHandler."""

    def __init__(self, metric):
        self.metric, self.calls = metric, []

    def map(self, items, kind="score", cost=None, on_record=None):
        assert kind == "select"
        self.calls.append([i["hash"] for i in items])
        return [
            {
                "hash": i["hash"],
                "rung": i["rung"],
                "epochs": i["epochs"],
                "metric": self.metric(i["structure"]),
                "status": "ok",
            }
            for i in items
        ]


class _Handler:
    def cost(self, item):
        return 1.0


def _archive(structs: list[tuple[int, int]]) -> dict:
    out = {}
    for i, (x, y) in enumerate(structs):
        h = f"h{x}{y}"
        out[h] = {
            "hash": h,
            "structure": {"x": x, "y": y},
            "feasible": True,
            "fitness": 100.0 - i,
            "latency_ms": 1.0,
        }
    return out


def test_rounds_fall_every_interleave_generations_never_before_the_first_or_after_the_last():
    st = Steering(_Cfg(interleave=2, generations=6), _LineSpace(), None, _Handler())
    state: dict = {}
    assert [g for g in range(7) if st.due(state, g)] == [2, 4]
    state["steer_rounds"] = [2]  # done before a restart: not again
    assert [g for g in range(7) if st.due(state, g)] == [4]
    off = Steering(_Cfg(interleave=0), _LineSpace(), None, _Handler())
    assert not any(off.due({}, g) for g in range(7))


def test_a_round_trains_the_best_untrained_with_new_choices_and_keeps_them_in_the_state():
    # fitness order: (0,0), (0,1), (1,0), (5,5); (0,1) and (1,0) each bring a new choice
    archive = _archive([(0, 0), (0, 1), (1, 0), (5, 5)])
    pool = _Pool(lambda s: float(s["x"]))
    st = Steering(_Cfg(runs=2), _LineSpace(), pool, _Handler())
    state: dict = {}
    first = st.train(state, archive, 2)
    assert [r["hash"] for r in first] == ["h00", "h01"]
    assert all(r["steer"] == 2 and r["rung"] == 0 and r["epochs"] == 1 for r in first)
    # the next round never trains them again; what they covered counts as covered
    second = st.train(state, archive, 4)
    assert [r["hash"] for r in second] == ["h10", "h55"]
    assert [r["hash"] for r in state["steer_runs"]] == ["h00", "h01", "h10", "h55"]
    assert state["steer_rounds"] == [2, 4]


def test_the_ranker_orders_proposals_by_what_the_trained_runs_learned():
    archive = _archive([(0, 0), (1, 0), (2, 0), (3, 0)])
    st = Steering(_Cfg(runs=4), _LineSpace(), _Pool(lambda s: 0.5 + 0.1 * s["x"]), _Handler())
    state: dict = {}
    assert st.ranker(state, True) is None  # nothing trained yet
    st.train(state, archive, 2)
    proposals = [{"x": 1, "y": 0}, {"x": 9, "y": 0}, {"x": 4, "y": 0}]
    assert st.ranker(state, True)(proposals) == [{"x": 9, "y": 0}, {"x": 4, "y": 0}, {"x": 1, "y": 0}]
    # a loss (lower is better) turns the order round
    assert st.ranker(state, False)(proposals)[0] == {"x": 1, "y": 0}
    # fewer than 3 finished runs, or a space without an encoding: no ordering
    state["steer_runs"] = state["steer_runs"][:2]
    assert st.ranker(state, True) is None
    st2 = Steering(_Cfg(runs=4), _NoEncode(), _Pool(lambda s: 1.0), _Handler())
    st2.train(s2 := {}, archive, 2)
    assert st2.ranker(s2, True) is None


def test_steering_needs_selection_and_a_strategy_that_proposes_itself():
    base = {"domain": "nb201", "search": {"population": 4, "generations": 3}, "training": {"enabled": False}}
    with pytest.raises(SearchError, match="spec.search.selection.interleave"):
        SearchConfig.from_spec({**base, "search": {**base["search"], "selection": {"interleave": 1}}})
    trains = {**base, "training": {"enabled": True}}
    with pytest.raises(SearchError, match="spec.search.selection.interleave"):
        SearchConfig.from_spec(
            {**trains, "search": {**base["search"], "strategy": "bo", "selection": {"interleave": 1}}}
        )
    with pytest.raises(SearchError, match="spec.search.selection.interleaveRuns"):
        SearchConfig.from_spec({**trains, "search": {**base["search"], "selection": {"interleaveRuns": 0}}})
    ok = SearchConfig.from_spec({**trains, "search": {**base["search"], "selection": {"interleave": 1}}})
    assert ok.selection.interleave == 1 and ok.selection.to_json()["interleaveRuns"] == 4


def test_denas_search_steers_and_selection_reuses_the_runs_also_after_a_restart(tmp_path):
    s = selection_spec(generations=3, interleave=1, interleaveRuns=2)
    job = write_job(tmp_path / "job.yaml", s)
    out = tmp_path / "out"
    args = (str(job), "--out", str(out), "--scorer", FAKE, "--threads", "1", "--no-plots")
    proc = cli(*args, env={"OMP_NUM_THREADS": "1"}, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    steer = [e for e in history if e["event"] == "steer"]
    # rounds before generations 1 and 2 (never after the last), two runs each, never the same twice
    assert [e["generation"] for e in steer] == [1, 2]
    steered = [r["hash"] for e in steer for r in e["runs"]]
    assert len(steered) == 4 == len(set(steered))
    assert all(r["status"] == "ok" and r["rung"] == 0 and r["epochs"] == 1 for e in steer for r in e["runs"])
    # generation 1 had 2 finished runs (too few to fit); generation 2 was ordered by 4
    gens = {e["generation"]: e for e in history if e["event"] == "generation"}
    assert [g for g, e in sorted(gens.items()) if e.get("steered")] == [3]
    # a round comes before the generation it steers: every steered cell was scored earlier
    first_seen = {}
    for i, e in enumerate(history):
        if e["event"] == "candidate":
            first_seen.setdefault(e["hash"], i)
    for e in steer:
        at = history.index(e)
        assert all(first_seen[r["hash"]] < at for r in e["runs"])
    result = read_result(out)
    sel = result["selection"]
    assert sel["settings"]["interleave"] == 1
    rung0 = [r for r in sel["runs"] if r["rung"] == 0]
    # every steering run competes at rung 0, once, and was not trained again by the stage
    assert set(steered) <= {r["hash"] for r in rung0}
    assert len(rung0) == len({r["hash"] for r in rung0})
    assert all(r.get("steer") in (1, 2) for r in rung0 if r["hash"] in steered)
    logged = [json.loads(x) for x in (out / "selection.jsonl").read_text().splitlines()]
    assert not {r["hash"] for r in logged if r["rung"] == 0} & set(steered)
    # a restart after the search: the steering runs come from the checkpoint, nothing is retrained
    before = (out / "selection.jsonl").read_text()
    (out / "result.json").unlink()
    again = cli(*args, "--resume", env={"OMP_NUM_THREADS": "1"}, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "selection.jsonl").read_text() == before
    assert read_result(out)["selection"]["winner"] == sel["winner"]
