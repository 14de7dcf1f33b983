"""How long does building a candidate take, relative to one training step on its example batch?

For every space (default configuration) this picks the smallest and the largest of a few hundred
seeded samples (by analytic parameter count), then prints the median build time, the median time
of one forward + backward pass on ``example_inputs(batch_size)``, and their ratio.  Building must
stay well below one forward + backward so that materialisation never dominates scoring.

For ``bert`` it also times the same large model through transformers' own initialisation path
(``BertForSequenceClassification(config)``) as the baseline our meta-device build avoids.

    python benchmarks/materialize.py [--batch-size 8] [--repeats 3] [--spaces cnn,vit,...]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import denas.spaces as spaces


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loss_of(space: spaces.SearchSpace, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if space.task == "ctc":  # frame-level targets against per-frame log-probabilities
        return F.nll_loss(out.flatten(0, 1), targets.flatten())
    return F.cross_entropy(out, targets)


def extremes(space: spaces.SearchSpace, samples: int = 300) -> dict[str, dict[str, Any]]:
    rng = random.Random(0)
    pool = [space.sample(rng) for _ in range(samples)]
    pool.sort(key=space.count_params)
    return {"small": pool[0], "large": pool[-1]}


def measure(
    space: spaces.SearchSpace, structure: dict[str, Any], batch_size: int, repeats: int
) -> dict[str, float]:
    inputs, targets = space.example_inputs(batch_size=batch_size, seed=0)
    build = median_seconds(lambda: space.build(structure), repeats)
    model = space.build(structure)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_of(space, model(inputs), targets).backward()

    step()  # warm-up: first-call allocations and kernel selection
    train_step = median_seconds(step, repeats)
    return {"build": build, "step": train_step}


def bert_baseline(space: spaces.SearchSpace, structure: dict[str, Any], repeats: int) -> float:
    from transformers import BertForSequenceClassification

    config = space.bert_config(structure)
    return median_seconds(lambda: BertForSequenceClassification(config), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spaces", default="nb201,cnn,vit,bert,asr")
    args = parser.parse_args()
    torch.manual_seed(0)

    header = f"{'space':<7} {'candidate':<10} {'params':>12} {'build ms':>10} {'fwd+bwd ms':>11} {'build/step':>10}"
    print(f"batch size {args.batch_size}, median of {args.repeats}, {torch.get_num_threads()} threads")
    print(header)
    print("-" * len(header))
    for name in args.spaces.split(","):
        space = spaces.get(name)
        for label, structure in extremes(space).items():
            t = measure(space, structure, args.batch_size, args.repeats)
            print(
                f"{name:<7} {label:<10} {space.count_params(structure):>12,} {t['build'] * 1e3:>10.1f} "
                f"{t['step'] * 1e3:>11.1f} {t['build'] / t['step']:>10.3f}",
                flush=True,
            )
            if name == "bert" and label == "large":
                hf = bert_baseline(space, structure, args.repeats)
                print(
                    f"{'':<7} {'(HF init)':<10} {'':>12} {hf * 1e3:>10.1f} {'':>11} {hf / t['step']:>10.3f}"
                    f"   transformers' own init: {hf / t['build']:.1f}x our build",
                    flush=True,
                )


if __name__ == "__main__":
    main()
