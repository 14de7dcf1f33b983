"""Cost of every proxy and of the DE-Score, as a ratio to one forward+backward pass.

For each model (one structure per space, seeded), on the same synthetic batch of 16:
baseline = wall time of ``loss(model(x), y).backward()``; each proxy = wall time
of ``score_model(model, x, y, proxies=[p], weights={})`` (only that proxy, including the
private model copy it makes); DE-Score = ``score_model(model, x, y, domain=...)``: the components a
search of that space computes, with its domain's (or preset's) default weights.
Best of REPEATS interleaved runs (the least disturbed by other processes), one torch thread. Ratios, not seconds, are the figure:
seconds depend on the machine and on its load.

    OMP_NUM_THREADS=1 python benchmarks/score_cost.py [nb201 cnn-digits cnn vit asr]
"""

from __future__ import annotations

import random
import sys
import time

import torch

import denas.scores as scores
from denas import spaces
from denas.scores import _model
from denas.scores.descore import domain_key

REPEATS = 5
NO_WEIGHTS = {c: 0.0 for c in scores.COMPONENTS}  # only the named proxy, no DE-Score
MODELS = {
    "nb201": ("nb201", None),
    "cnn-digits": ("cnn", {"preset": "digits"}),
    "cnn": ("cnn", None),
    "vit": ("vit", None),
    "asr": ("asr", None),
}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ratios(model: torch.nn.Module, x, y, proxies: list[str], domain: str) -> tuple[float, dict[str, float]]:
    """Seconds of one forward+backward, and each job's time as a multiple of it."""

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        _model.default_loss(_model.logits(model, x), y).backward()

    jobs = {"base": fwd_bwd, "de_score": lambda: scores.score_model(model, x, y, domain=domain)}
    for p in proxies:
        jobs[p] = lambda p=p: scores.score_model(model, x, y, proxies=[p], weights=NO_WEIGHTS)
    for fn in jobs.values():  # warm-up: first calls pay for lazy initialisation
        fn()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(REPEATS):
        for k, fn in jobs.items():
            times[k].append(timed(fn))
    best = {k: min(v) for k, v in times.items()}  # min: the least disturbed by other processes
    model.zero_grad(set_to_none=True)
    return best["base"], {k: v / best["base"] for k, v in best.items()}


def main(names: list[str]) -> int:
    torch.set_num_threads(1)
    proxies = scores.names()
    header = f"{'model':12s}{'params':>10s}{'fwd+bwd s':>10s}{'DE-Score':>9s}"
    print(header + "".join(f"{p[:9]:>10s}" for p in proxies))
    weighted = {name: scores.descore.resolve_weights(None, domain_key(*MODELS[name])) for name in names}
    for name in names:
        domain, overrides = MODELS[name]
        space = spaces.get(domain, overrides)
        structure = space.sample(random.Random(3))
        torch.manual_seed(0)
        x, y = space.example_inputs(16, seed=0)
        base, ratio = ratios(space.build(structure), x, y, proxies, domain_key(domain, overrides))
        line = f"{name:12s}{space.count_params(structure):10d}{base:10.3f}{ratio['de_score']:9.2f}"
        print(line + "".join(f"{ratio[p]:10.2f}" for p in proxies), flush=True)
    for name in names:
        print(f"DE-Score weights of {name}: {weighted[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(MODELS)))
