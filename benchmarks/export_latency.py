"""Latency of the exported variants vs eager PyTorch, per domain, as ratios measured in one run.

For each domain a model of a sampled structure (``--preset``, default ``tiny``) is exported the way
`denas export` does it (traced + frozen TorchScript, ONNX opset 17 run in onnxruntime, and the IPEX
bf16 traced variant when IPEX is installed, here always built so its ratio is visible even when the
export would not keep it). All variants are timed round-robin (`measure_interleaved`), so load
drifting on a shared machine hits each of them alike; the ratios are the figures, not the ms.

    nice -n 5 python benchmarks/export_latency.py [--batch 1] [--threads 1] [--rounds 30] [--json] [cnn vit bert asr nb201]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from denas.export.formats import onnx_session, trace
from denas.export.ipex import available as ipex_available
from denas.export.ipex import ipex_traced
from denas.export.load import initialised
from denas.export.timing import hardware, measure_interleaved

DOMAINS = ("cnn", "vit", "bert", "asr", "nb201")


def bench(domain: str, preset: str, batch_size: int, rounds: int, folder: Path) -> dict:
    trained = initialised(domain, {"preset": preset})
    batch = trained.sample_inputs(batch_size=batch_size, seed=2)
    eager = trained.wrapped()
    ts = trace(trained)
    onnx_path = folder / f"{domain}.onnx"
    from denas.export.formats import export_onnx

    with torch.no_grad():
        expected = eager(*batch)
    export_onnx(trained, folder, batch, expected)
    (folder / "model.onnx").rename(onnx_path)
    session = onnx_session(onnx_path)
    feed = {n: t.numpy() for n, t in zip(trained.input_names, batch)}
    fns = {
        "eager": lambda: eager(*batch),
        "torchscript": lambda: ts(*batch),
        "onnxruntime": lambda: session.run(None, feed),
    }
    if ipex_available():
        variant = ipex_traced(trained)
        fns["ipex_bf16"] = lambda: variant(*batch)
    ms = measure_interleaved(fns, rounds=rounds)
    return {
        "domain": domain,
        "preset": preset,
        "params": sum(p.numel() for p in trained.model.parameters()),
        "ms": {k: round(v, 4) for k, v in ms.items()},
        "speedup_vs_eager": {k: round(ms["eager"] / v, 2) for k, v in ms.items() if k != "eager"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domains", nargs="*", default=list(DOMAINS))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch/onnxruntime threads (1: stable under load)"
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for domain in args.domains:
            start = time.time()
            rows.append(bench(domain, args.preset, args.batch, args.rounds, Path(tmp)))
            print(f"{domain}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    report = {
        "hardware": hardware(),
        "batch_size": args.batch,
        "rounds": args.rounds,
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "results": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    hw = report["hardware"]
    print(
        f"{hw['cpu']} ({', '.join(hw['cpu_flags'])}), {hw['threads']} threads, batch {args.batch}, "
        f"median of {args.rounds} interleaved rounds, 1-min load {report['load_average_1m']}"
    )
    variants = ["torchscript", "onnxruntime", "ipex_bf16"]
    print("| domain | eager ms | " + " | ".join(f"{v} (x eager)" for v in variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    for r in rows:
        cells = [
            f"{r['speedup_vs_eager'][v]:.2f}x" if v in r["speedup_vs_eager"] else "n/a" for v in variants
        ]
        print(f"| {r['domain']} | {r['ms']['eager']:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
