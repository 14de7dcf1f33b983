"""Shared helpers of the tests/test_search_*.py files: specs, a toy space, CLI subprocesses."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from denas.search import SearchConfig

ROOT = Path(__file__).resolve().parents[1]
#: nb201 shrunk so a candidate builds and scores in a few hundred ms
NB201_TINY = {"channels": 8, "cells_per_stage": 1, "image_size": 8}
FAKE = "denas.search.fakes:analytic_scorer"
SLEEP = "denas.search.fakes:sleep_scorer"


def spec(strategy: str = "ea", domain: str = "nb201", **search: Any) -> dict[str, Any]:
    """A DeNASJob spec with a small budget; keyword arguments override spec.search fields."""
    out: dict[str, Any] = {
        "domain": domain,
        "searchSpace": dict(NB201_TINY) if domain == "nb201" else {"preset": "tiny"},
        "search": {"strategy": strategy, "population": 6, "generations": 3, "seed": 0, **search},
        "score": {"batchSize": 4, "latency": {"warmup": 0, "repeats": 2}},
        "hardware": {"ipex": "off", "bf16": "off"},
        # search-only tests: no training, so no selection stage (tests/test_search_select_stage.py)
        "training": {"enabled": False},
    }
    return out


#: four candidates, rungs of 1 and 2 epochs on a small seeded sample of digits
SELECTION = {
    "topK": 4,
    "minEpochs": 1,
    "maxEpochs": 2,
    "eta": 2,
    "maxTrainSamples": 256,
    "maxEvalSamples": 128,
    "surrogateExtra": 0,  # the surrogate has its own test (tests/test_search_select_stage.py)
}


def selection_spec(generations: int = 2, **selection: Any) -> dict[str, Any]:
    """A search with the selection stage (SELECTION, overridden by ``selection``) on digits."""
    s = spec("ea", population=6, generations=generations, seed=1)
    s["search"]["selection"] = {**SELECTION, **selection}
    s["training"] = {"enabled": True, "dataset": {"name": "digits"}, "batchSize": 32}
    return s


def config(strategy: str = "ea", constraints: dict | None = None, **search: Any) -> SearchConfig:
    s = spec(strategy, **search)
    if constraints:
        s["constraints"] = constraints
    return SearchConfig.from_spec(s)


def write_job(path: Path, spec_: dict[str, Any], name: str = "search-test") -> Path:
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": name},
        "spec": spec_,
    }
    path.write_text(yaml.safe_dump(manifest))
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **popen: Any):
    """Run `python -m denas search ...`; returns the CompletedProcess (or a Popen with popen=True)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    cmd = [sys.executable, "-m", "denas", "search", *args]
    if popen.pop("background", False):
        return subprocess.Popen(
            cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def best_of(result: dict[str, Any]) -> list[tuple[str, float]]:
    return [(b["hash"], round(b["fitness"], 9)) for b in result["best"]]


def read_result(out: Path) -> dict[str, Any]:
    return json.loads((out / "result.json").read_text())


class BitSpace:
    """A toy space (OneMax over ``n`` bits) implementing the slice of the space interface that
    strategies use, to show they work on any space without importing a concrete one."""

    name = "bits"

    def __init__(self, n: int = 24):
        self.n = n

    def sample(self, rng: random.Random) -> dict:
        return {"bits": [rng.randint(0, 1) for _ in range(self.n)]}

    def mutate(self, structure: dict, rng: random.Random, prob: float = 0.3) -> dict:
        bits = list(structure["bits"])
        forced = rng.randrange(self.n)
        for i in range(self.n):
            if i == forced or rng.random() < prob / 4:
                bits[i] = 1 - bits[i]
        return {"bits": bits}

    def crossover(self, a: dict, b: dict, rng: random.Random) -> dict:
        cut = rng.randrange(1, self.n)
        return {"bits": a["bits"][:cut] + b["bits"][cut:]}

    def validate(self, structure: dict) -> None:
        if len(structure.get("bits", [])) != self.n:
            raise ValueError("bits: wrong length")

    def count_params(self, structure: dict) -> int:
        return 100 + sum(structure["bits"])

    def count_flops(self, structure: dict, batch_size: int = 1) -> int:
        return 1000 * (1 + sum(structure["bits"][: self.n // 2]))

    def encode(self, structure: dict) -> list[float]:
        return [float(b) for b in structure["bits"]]

    def hash(self, structure: dict) -> str:
        return hashlib.sha256(json.dumps(structure, sort_keys=True).encode()).hexdigest()[:16]


def onemax_record(space: BitSpace, structure: dict, index: int = 0) -> dict:
    ones = sum(structure["bits"])
    return {
        "hash": space.hash(structure),
        "structure": copy.deepcopy(structure),
        "params": space.count_params(structure),
        "flops": space.count_flops(structure),
        "latency_ms": 1.0 + sum(structure["bits"][: space.n // 2]),
        "scores": {"de_score": float(ones)},
        "fitness": float(ones),
        "feasible": True,
        "violation": None,
        "index": index,
    }


def drive(strategy, space, generations: int, admit=None, archive: dict | None = None) -> dict:
    """The runner's loop in miniature (OneMax scores, no torch): returns the archive."""
    from denas.search.strategies import Context

    archive = {} if archive is None else archive
    for _ in range(generations):
        ctx = Context(space=space, config=strategy.config, admit=admit or (lambda s: None), archive=archive)
        structures = strategy.ask(ctx)
        for s in structures:
            h = space.hash(s)
            if h not in archive:
                archive[h] = {**onemax_record(space, s, len(archive)), "generation": strategy.generation}
        strategy.tell(ctx, [archive[space.hash(s)] for s in structures])
    return archive


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        for p in procs:
            if p.poll() is not None and p.returncode != 0:
                raise AssertionError(
                    f"process exited {p.returncode} while waiting for {what}: {p.stderr.read()}"
                )
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def progress_generation(path: Path) -> int:
    try:
        event = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return -1
    return event.get("generation", 10**9) if event["event"] == "generation" else 10**9
