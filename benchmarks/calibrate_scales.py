"""Per-domain (median, spread) of the transformed DE-Score components (`descore.CALIBRATION`).

Scores N random structures of each space (default configuration, or the named preset) on the
CRD's default synthetic batch (16) and prints the median and robust spread (IQR/1.349) of every
transformed component: the absolute DE-Score turns each component into its estimated percentile
Phi((t - median) / spread), so that a weight means the same thing for every component.

    OMP_NUM_THREADS=1 python benchmarks/calibrate_scales.py [--n 8] [--preset P] [--proxies a,b] [cnn nb201 vit bert asr]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import numpy as np
import torch

import denas.scores as scores
from denas import spaces


def calibrate(
    domain: str, n: int, preset: str | None, proxies: tuple[str, ...] = scores.COMPONENTS
) -> dict[str, tuple[float, float]]:
    space = spaces.get(domain, {"preset": preset} if preset else None)
    rng = random.Random(7)
    x, y = space.example_inputs(16, seed=0)
    rows = []
    start = time.time()
    for i in range(n):
        torch.manual_seed(i)
        values = scores.score_model(space.build(space.sample(rng)), x, y, proxies=proxies)
        rows.append({c: scores.transform(c, values[c]) for c in proxies})
        print(
            f"{domain}: {i + 1}/{n} ({(time.time() - start) / (i + 1):.1f} s each)",
            file=sys.stderr,
            flush=True,
        )
    # robust spread (IQR / 1.349 = std for a Gaussian): degenerate structures (a disconnected
    # cell, zero gradient) sit at log(1e-300) and would otherwise dominate a plain std
    out = {}
    for c in proxies:
        v = [r[c] for r in rows]
        out[c] = (
            round(float(np.median(v)), 3),
            round(float(np.subtract(*np.percentile(v, [75, 25]))) / 1.349, 3),
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("domains", nargs="*", default=["cnn", "nb201", "vit", "bert", "asr"])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--preset", help="a preset of every listed space")
    parser.add_argument(
        "--proxies",
        default=",".join(scores.COMPONENTS),
        help="comma-separated proxies to calibrate (default: the four DE-Score components)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    for domain in args.domains:
        key = f"{domain}/{args.preset}" if args.preset else domain
        print(
            json.dumps({key: calibrate(domain, args.n, args.preset, tuple(args.proxies.split(",")))}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
