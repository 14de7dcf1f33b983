"""Proxy quality on our own `cnn` space (digits preset) against networks we train ourselves.

Ground truth (made once, kept in benchmarks/data/cnn_digits_truth.json): 120 structures sampled
from the `cnn` space's `digits` preset (seeded) — 80 drawn at random and 40 drawn inside a narrow
parameter band (+-10% around the pool's median), where the parameter count cannot rank them.
Each is trained on scikit-learn's bundled digits with a deliberately small training subset
(300 images) for 12 epochs of Adam (lr 3e-3, batch 32), 3 seeds; the truth is the mean test
accuracy on 600 held-out images.

Scores use what a search sees: one synthetic Gaussian batch of 16 (`space.example_inputs(16, 0)`)
and PyTorch default initialisation (seed 0), with the DE-Score's `cnn` default weights — which
were NOT chosen on these networks (see benchmarks/README_scores.md).

    OMP_NUM_THREADS=1 python benchmarks/digits_correlation.py            # trains if the file is missing
    OMP_NUM_THREADS=1 python benchmarks/digits_correlation.py --retrain  # remake the ground truth
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr
from sklearn.datasets import load_digits

import denas.scores as scores
from denas import spaces

HERE = Path(__file__).resolve().parent
TRUTH = HERE / "data" / "cnn_digits_truth.json"
N_RANDOM, N_BAND, BAND = 80, 40, 0.10
TRAIN, TEST, EPOCHS, LR, BATCH, SEEDS = 300, 600, 12, 3e-3, 32, (0, 1, 2)


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    tr, te = order[:TRAIN], order[TRAIN : TRAIN + TEST]
    return x[tr], y[tr], x[te], y[te]


def pick_structures(space: spaces.SearchSpace) -> list[tuple[dict, str]]:
    rng = random.Random(2024)
    pool = [space.sample(rng) for _ in range(3000)]
    unique = {space.hash(s): s for s in pool}
    pool = list(unique.values())
    params = [space.count_params(s) for s in pool]
    median = statistics.median(params)
    band = [s for s, p in zip(pool, params) if abs(p - median) <= BAND * median]
    chosen = [(s, "random") for s in pool[:N_RANDOM]]
    taken = {space.hash(s) for s, _ in chosen}
    chosen += [(s, "band") for s in [s for s in band if space.hash(s) not in taken][:N_BAND]]
    return chosen


def train_once(model: torch.nn.Module, data, seed: int) -> float:
    xtr, ytr, xte, yte = data
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(xte).argmax(1) == yte).float().mean())


def make_truth(space: spaces.SearchSpace) -> dict:
    data = digits_split()
    records = []
    chosen = pick_structures(space)
    start = time.time()
    for k, (structure, group) in enumerate(chosen, 1):
        accs = []
        for seed in SEEDS:
            torch.manual_seed(seed)
            accs.append(train_once(space.build(structure), data, seed))
        records.append(
            {
                "structure": structure,
                "hash": space.hash(structure),
                "group": group,
                "params": space.count_params(structure),
                "flops": space.count_flops(structure),
                "acc": accs,
                "mean_acc": float(np.mean(accs)),
            }
        )
        rate = (time.time() - start) / k
        print(
            f"trained {k}/{len(chosen)} ({rate:.1f} s/net, ~{rate * (len(chosen) - k) / 60:.0f} min left)",
            file=sys.stderr,
            flush=True,
        )
    truth = {
        "protocol": {
            "train": TRAIN,
            "test": TEST,
            "epochs": EPOCHS,
            "lr": LR,
            "batch": BATCH,
            "seeds": list(SEEDS),
            "band": BAND,
            "preset": "digits",
        },
        "networks": records,
    }
    TRUTH.parent.mkdir(parents=True, exist_ok=True)
    TRUTH.write_text(json.dumps(truth, indent=1))
    return truth


def score_all(space: spaces.SearchSpace, networks: list[dict]) -> list[dict[str, float]]:
    x, y = space.example_inputs(16, seed=0)
    out = []
    for net in networks:
        torch.manual_seed(0)
        values = scores.score_model(
            space.build(net["structure"]),
            x,
            y,
            proxies=scores.names(),
            weights={c: 0.0 for c in scores.COMPONENTS},
        )
        values.pop("de_score")
        out.append(values)
    return out


def table(
    title: str, networks: list[dict], values: list[dict[str, float]], weights: dict[str, float]
) -> dict:
    truth = [n["mean_acc"] for n in networks]
    # oriented like the DE-Score (complexity as -log condition number: higher is better)
    columns = {name: [scores.transform(name, v[name]) for v in values] for name in scores.names()}
    columns["de_score (cnn defaults, absolute)"] = [scores.combine(v, weights, "cnn/digits") for v in values]
    columns["de_score (cnn defaults, ranked)"] = scores.combine_ranked(values, weights)
    print(
        f"\n{title}: {len(networks)} networks, accuracy {min(truth):.3f}..{max(truth):.3f}, "
        f"params {min(n['params'] for n in networks)}..{max(n['params'] for n in networks)}"
    )
    print(f"{'proxy':40s}{'Spearman':>10s}{'Kendall':>10s}")
    result = {}
    for name, vals in columns.items():
        rho, tau = spearmanr(vals, truth).statistic, kendalltau(vals, truth).statistic
        result[name] = rho
        print(f"{name:40s}{rho:10.3f}{tau:10.3f}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retrain", action="store_true", help="remake the trained ground truth")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = spaces.get("cnn", {"preset": "digits"})
    truth = make_truth(space) if args.retrain or not TRUTH.exists() else json.loads(TRUTH.read_text())
    networks = truth["networks"]
    values = score_all(space, networks)
    weights = scores.resolve_weights("cnn")
    print(f"DE-Score weights (cnn defaults): {weights}")
    full = table("FULL set", networks, values, weights)
    depth = [sum(st["depth"] for st in n["structure"]["stages"] if not st["residual"]) for n in networks]
    print(
        f"(for reading the table: Spearman of accuracy vs depth of plain, non-residual stages: "
        f"{spearmanr(depth, [n['mean_acc'] for n in networks]).statistic:.3f})"
    )
    band = [i for i, n in enumerate(networks) if n["group"] == "band"]
    sub = table(
        "PARAMETER-BUDGET subset (+-10% params)",
        [networks[i] for i in band],
        [values[i] for i in band],
        weights,
    )
    for name, res in (("full", full), ("budget", sub)):
        de = res["de_score (cnn defaults, absolute)"]
        print(
            f"{name}: DE-Score {de:.3f} vs params {res['params']:.3f}, synflow {res['synflow']:.3f} -> "
            f"{'beats both' if de > res['params'] and de > res['synflow'] else 'does NOT beat both'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
