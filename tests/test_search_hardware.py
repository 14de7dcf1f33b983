"""A search never mixes latencies measured on different CPUs: resume and extra ranks check the
hardware fingerprint and name the pod/node and both CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from search_support import FAKE, ROOT, config, free_port, rank_env

from denas.search import hardware as hw
from denas.search import run_search, runner
from denas.search.config import SearchError
from denas.search.evaluator import load_scorer

GOLD = {"cpu_model": "Intel(R) Xeon(R) Gold 6240", "flags": ["avx512f"], "cores": 4, "torch": "2", "id": "a"}
SILVER = {**GOLD, "cpu_model": "Intel(R) Xeon(R) Silver 4114", "id": "b"}


class Interrupt(Exception):
    pass


def _stop(event):
    if event.get("event") == "generation":
        raise Interrupt


class DictStore:
    def __init__(self):
        self.data: dict[str, str] = {}

    def set(self, key, value):
        self.data[key] = value

    def get(self, key):
        return self.data[key].encode()


def test_resume_on_another_cpu_is_refused_naming_both_cpus_and_the_pod(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "hardware_fingerprint", lambda: dict(GOLD))
    monkeypatch.setenv("HOSTNAME", "search-pod-0")
    monkeypatch.setenv("NODE_NAME", "node-gold")
    with pytest.raises(Interrupt):  # killed after its first generation
        run_search(config(generations=2), tmp_path, scorer=load_scorer(FAKE), plots=False, on_event=_stop)
    monkeypatch.setattr(runner, "hardware_fingerprint", lambda: dict(SILVER))
    monkeypatch.setenv("HOSTNAME", "search-pod-1")
    monkeypatch.setenv("NODE_NAME", "node-silver")
    with pytest.raises(SearchError) as err:
        run_search(config(generations=2), tmp_path, resume=True, scorer=load_scorer(FAKE), plots=False)
    msg = str(err.value)
    for part in (
        "Gold 6240",
        "Silver 4114",
        "search-pod-0 on node node-gold",
        "search-pod-1 on node node-silver",
    ):
        assert part in msg
    assert "nodeSelector" in msg
    # the same CPU (other fields equal) resumes
    monkeypatch.setattr(runner, "hardware_fingerprint", lambda: dict(GOLD))
    assert run_search(config(generations=2), tmp_path, resume=True, scorer=load_scorer(FAKE), plots=False)


def test_ranks_compare_fingerprints_both_ways():
    store = DictStore()
    store.set(hw.KEY.format(1), json.dumps(hw.stamp(GOLD)))  # rank 1 posted first
    hw.check_ranks(store, 0, 2, GOLD)  # same hardware: no error
    hw.check_ranks(store, 1, 2, GOLD)
    hw.check_ranks(store, 0, 2, {**GOLD, "flags": ("avx512f",)})  # a tuple after pickling, a list after JSON
    store = DictStore()
    store.set(hw.KEY.format(0), json.dumps({"hardware": GOLD, "where": "pod p0 on node n0"}))
    with pytest.raises(
        SearchError,
        match=r"rank 1 .* runs on 'Intel\(R\) Xeon\(R\) Silver 4114'.*rank 0 \(pod p0 on node n0\)",
    ):
        hw.check_ranks(store, 1, 2, SILVER)
    with pytest.raises(SearchError, match="cores=8"):  # any other field that differs is named
        hw.check_ranks(store, 1, 2, {**GOLD, "cores": 8})


RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, os.path.join({root!r}, "tests"))
    from search_support import FAKE, config
    from denas.search import run_search, runner
    from denas.search.config import SearchError
    from denas.search.evaluator import load_scorer
    if os.environ["RANK"] == "1":  # this rank's pod landed on another CPU model
        real = runner.hardware_fingerprint
        runner.hardware_fingerprint = lambda: {{**real(), "cpu_model": "Other CPU 9999"}}
    try:
        run_search(config(generations=1), sys.argv[1], scorer=load_scorer(FAKE), plots=False, dist_timeout_s=60)
    except SearchError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    """
)


def test_an_extra_rank_on_another_cpu_stops_the_search(tmp_path):
    port = free_port()
    script = RANK_SCRIPT.format(root=str(ROOT))
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
        env.update(rank_env(rank, 2, port), HOSTNAME=f"search-{rank}")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path / "out")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
        )
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], errs
    for err in errs:
        assert "Other CPU 9999" in err and "search-0" in err and "search-1" in err, err
    assert not (tmp_path / "out" / "result.json").exists()
