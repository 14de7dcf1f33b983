"""Training throughput and accuracy: searched-like structures vs hand-made baselines, bf16/IPEX vs fp32.

    python benchmarks/train_throughput.py [--result RUN/search/result.json] [--epochs 5] [--threads N] [--json out.json]

1. cnn on digits: a searched-like structure (best of a result.json, or a mid-size sampled one)
   vs a ResNet-18-like baseline (stem 64, four stages of two residual 3x3 basic blocks, 64-512
   channels), same recipe (SGD, lr 0.05, global batch 64, cosine schedule, same epochs).
2. bert on synthetic-text: a mid-size sampled structure no larger than the baseline vs a BERT-small-like baseline
   (4 layers, hidden 512, 8 heads, FFN 2048), same recipe (AdamW, lr 1e-3, batch 32, seq 64).
3. compute paths on the two baselines: stock fp32 vs stock bf16 autocast vs IPEX fp32 vs IPEX bf16.

Every configuration runs in its own process (so IPEX's import cannot change the stock runs) with
all CPUs of this machine; ratios are taken between runs of this same invocation. Throughput is the
last epoch's training samples/s (evaluation and checkpointing excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RESNET18_LIKE = {
    "stem_channels": 64,
    "stages": [
        {"block": "basic", "kernel": 3, "expansion": 1.0, "channels": c, "depth": 2, "residual": True}
        for c in (64, 128, 256, 512)
    ],
}
BERT_SMALL_LIKE = {"num_layers": 4, "hidden_size": 512, "num_heads": 8, "intermediate_size": 2048}
CNN_BASELINE_SPACE = {"in_channels": 1, "image_size": 8}  # the default cnn space, fitted to digits' 1x8x8
BERT_SPACE = {"seq_len": 64}


def mid_size(
    domain: str, overrides: dict[str, Any], n: int = 9, seed: int = 0, max_params: int | None = None
) -> dict[str, Any]:
    """The median-parameter structure of ``n`` samples within ``max_params``: a typical search winner."""
    import denas.spaces

    space = denas.spaces.get(domain, overrides)
    rng = random.Random(seed)
    samples: list[dict[str, Any]] = []
    for _ in range(1000 * n):
        s = space.sample(rng)
        if max_params is None or space.count_params(s) <= max_params:
            samples.append(s)
        if len(samples) == n:
            break
    samples.sort(key=space.count_params)
    return samples[len(samples) // 2]


def param_count(domain: str, overrides: dict[str, Any], structure: dict[str, Any]) -> int:
    import denas.spaces

    return denas.spaces.get(domain, overrides).count_params(structure)


def run_one(cfg: dict[str, Any]) -> dict[str, Any]:
    """One training run in this process; returns its metrics (called in a child process)."""
    import denas.spaces
    from denas.data import load_dataset
    from denas.train.loop import TrainConfig, train

    space = denas.spaces.get(cfg["domain"], cfg["overrides"])
    data = load_dataset(cfg["dataset"], config=space.config, limit=cfg.get("limit"), seed=0)
    fitted = {k: v for k, v in data.space_overrides.items() if k in space.config}
    space = denas.spaces.get(cfg["domain"], {**cfg["overrides"], **fitted})
    with tempfile.TemporaryDirectory() as out:
        tc = TrainConfig(
            out_dir=Path(out),
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            learning_rate=cfg["lr"],
            optimizer=cfg["optimizer"],
            weight_decay=5e-4 if cfg["optimizer"] == "sgd" else 0.01,
            ipex=cfg["ipex"],
            bf16=cfg["bf16"],
        )
        metrics = train(lambda: space.build(cfg["structure"]), data, tc)
    return {
        k: metrics[k]
        for k in ("metric", "metric_name", "samples_per_s", "params", "path", "threads_per_process")
    }


def spawn(cfg: dict[str, Any], threads: int | None) -> dict[str, Any]:
    env = dict(os.environ) | ({"DENAS_THREADS": str(threads)} if threads else {})
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"run {cfg['name']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--result", type=Path, help="a cnn search's result.json (digits preset); best[0] is trained"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the accuracy comparisons")
    parser.add_argument("--bert-limit", type=int, default=1000, help="synthetic-text training samples")
    parser.add_argument("--path-epochs", type=int, default=1, help="epochs of each compute-path run")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cnn", "bert", "paths"])
    parser.add_argument(
        "--threads", type=int, help="threads per run (default: every CPU this process may use)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0

    if args.result:
        searched, searched_space = (
            json.loads(args.result.read_text())["best"][0]["structure"],
            {"preset": "digits"},
        )
    else:
        searched, searched_space = mid_size("cnn", {"preset": "digits"}), {"preset": "digits"}
    # a search runs under a budget: candidates no larger than the baseline (DE-NAS's usual setting)
    bert_searched = mid_size("bert", BERT_SPACE, max_params=param_count("bert", BERT_SPACE, BERT_SMALL_LIKE))
    stock = {"ipex": "off", "bf16": "off"}
    cnn = {
        "domain": "cnn",
        "dataset": "digits",
        "epochs": args.epochs,
        "batch_size": 64,
        "lr": 0.05,
        "optimizer": "sgd",
    }
    bert = {"domain": "bert", "dataset": "synthetic-text", "limit": args.bert_limit, "epochs": args.epochs}
    bert |= {"batch_size": 32, "lr": 1e-3, "optimizer": "adamw", "overrides": BERT_SPACE}
    runs: dict[str, dict[str, Any]] = {}
    comparisons: list[tuple[str, str, str]] = []

    if "cnn" not in args.skip:
        runs["cnn searched"] = cnn | stock | {"overrides": searched_space, "structure": searched}
        runs["cnn resnet18-like"] = (
            cnn | stock | {"overrides": CNN_BASELINE_SPACE, "structure": RESNET18_LIKE}
        )
        comparisons.append(("cnn: searched vs ResNet-18-like", "cnn searched", "cnn resnet18-like"))
    if "bert" not in args.skip:
        runs["bert searched"] = bert | stock | {"structure": bert_searched}
        runs["bert bert-small-like"] = bert | stock | {"structure": BERT_SMALL_LIKE}
        comparisons.append(("bert: searched vs BERT-small-like", "bert searched", "bert bert-small-like"))
    if "paths" not in args.skip:
        for label, base in (
            ("resnet18-like", cnn | {"overrides": CNN_BASELINE_SPACE, "structure": RESNET18_LIKE}),
            ("bert-small-like", bert | {"structure": BERT_SMALL_LIKE}),
        ):
            for ipex in ("off", "on"):
                for bf16 in ("off", "on"):
                    name = f"path {label} {'ipex' if ipex == 'on' else 'stock'}-{'bf16' if bf16 == 'on' else 'fp32'}"
                    runs[name] = base | {"epochs": args.path_epochs, "ipex": ipex, "bf16": bf16}
            for other in ("stock-bf16", "ipex-fp32", "ipex-bf16"):
                comparisons.append(
                    (f"{label}: {other} vs stock-fp32", f"path {label} {other}", f"path {label} stock-fp32")
                )

    results = {}
    for name, cfg in runs.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = spawn(cfg | {"name": name}, args.threads)
        r = results[name]
        print(
            f"{name:38s} params {r['params']:>10,d}  {r['samples_per_s']:8.1f} samples/s  "
            f"{r['metric_name']} {r['metric']:.4f}  ({r['path']}, {r['threads_per_process']} threads)",
            flush=True,
        )
    print()
    ratios = {}
    for title, a, b in comparisons:
        ra, rb = results[a], results[b]
        ratios[title] = {
            "throughput_ratio": ra["samples_per_s"] / rb["samples_per_s"],
            "params_ratio": ra["params"] / rb["params"],
            "metric": [ra["metric"], rb["metric"]],
        }
        print(
            f"{title:44s} throughput x{ratios[title]['throughput_ratio']:.2f}  params x{ratios[title]['params_ratio']:.3f}  "
            f"{ra['metric_name']} {ra['metric']:.3f} vs {rb['metric']:.3f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"runs": results, "ratios": ratios, "structures": {"cnn": searched, "bert": bert_searched}},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
