"""Latency predictor vs measured Xeon latencies of every NAS-Bench-201 cell (nb201.csv, HELP's data).

For each of the four Xeon CPUs: the Spearman rank correlation over all 15,625 cells of
  * FLOPs alone (our space's analytic MAC count; no measurement),
  * the log-log FLOPs regression (same ranking as FLOPs by construction, so not repeated),
  * `denas.scores.predictor.LatencyPredictor` (additive form: ms = a + b MFLOPs + c . op counts,
    op counts = the space's one-hot encoding summed per op type), and the same with the raw
    30-dim one-hot encoding,
fitted on 10 / 20 / 50 measured cells, mean +- std over 20 seeded draws of the fitting cells.
Published: FLOPs ranking 0.89-0.95; HELP 0.99 from 10 samples (meta-learned on other devices).

    python benchmarks/latency_predictor.py
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import spearmanr

from denas import spaces
from denas.data.nb201_table import load_nb201
from denas.scores.predictor import LatencyPredictor

DRAWS = 20


def main() -> int:
    rows = load_nb201()
    space = spaces.get("nb201")
    structures = [{"ops": r["ops"].split()} for r in rows]
    flops = np.array([space.count_flops(s) for s in structures], dtype=float)
    onehot = np.array([space.encode(s) for s in structures])
    counts = onehot.reshape(len(rows), 6, -1).sum(1)  # bag of ops: how many edges use each op
    devices = [k for k in rows[0] if k.startswith("latency_ms_")]
    for name, enc in (("op counts", counts), ("one-hot edges", onehot)):
        print(f"\nencoding: {name}")
        print(f"{'device':26s}{'FLOPs':>8s}" + "".join(f"{'n=' + str(n):>16s}" for n in (10, 20, 50)))
        for dev in devices:
            truth = np.array([float(r[dev]) for r in rows])
            line = f"{dev.removeprefix('latency_ms_'):26s}{spearmanr(flops, truth).statistic:8.3f}"
            for n in (10, 20, 50):
                rhos = []
                for draw in range(DRAWS):
                    idx = np.random.default_rng(draw).choice(len(rows), n, replace=False)
                    model = LatencyPredictor().fit(flops[idx], truth[idx], enc[idx])
                    rhos.append(spearmanr(model.predict(flops, enc), truth).statistic)
                line += f"{np.mean(rhos):10.3f}+-{np.std(rhos):.3f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
