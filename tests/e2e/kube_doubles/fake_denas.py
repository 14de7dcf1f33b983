"""A fast stand-in for the worker image's commands, for lifecycle tests (not for results).

The test kubelet runs `python tests/e2e/kube_doubles/fake_denas.py <the pod's command>` for pods
of the fake image. It honours the same contract as the real commands: reads the mounted job.yaml,
checkpoints every generation/epoch under --out and resumes from it (`--resume`), reports through
`denas.kube_report`, and writes result.json / metrics.json. Knobs come from the job's
`spec.searchSpace.fake` (the space's overrides are free-form): generationSeconds, epochSeconds.
`denas report` (a campaign's report Pod) is the real command: it only reads result files and
draws, in a few seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

from denas.kube_report import reporter_from_env


def _arg(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _write(path: Path, value: dict) -> None:
    """Atomic, as real checkpoints must be: a SIGKILL mid-write leaves the old file intact."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _job(argv: list[str], verb: str) -> dict:
    path = argv[argv.index(verb) + 1]
    return yaml.safe_load(Path(path).read_text())["spec"]


def search(argv: list[str]) -> int:
    spec = _job(argv, "search")
    knobs = (spec.get("searchSpace") or {}).get("fake") or {}
    out = Path(_arg(argv, "--out") or "out")
    out.mkdir(parents=True, exist_ok=True)
    gens, pop = spec["search"]["generations"], spec["search"]["population"]
    rank = int(os.environ.get("RANK", "0"))
    ckpt = out / f"checkpoint-{rank}.json"
    start = json.loads(ckpt.read_text())["generation"] if "--resume" in argv and ckpt.exists() else 0
    print(f"fake search rank {rank}: generations {start + 1}..{gens}", flush=True)
    reporter = reporter_from_env(role="search", rank=rank)
    for gen in range(start + 1, gens + 1):
        time.sleep(float(knobs.get("generationSeconds", 0.2)))
        _write(ckpt, {"generation": gen})
        if reporter:
            reporter.progress(
                {
                    "generation": gen,
                    "generations": gens,
                    "evaluated": gen * pop,
                    "best_score": 1.0 + gen,
                    "resumed_from": start,
                }
            )
    if rank == 0:
        best = [
            {
                "structure": {"id": i},
                "hash": f"h{i}",
                "params": 1000 - i,
                "flops": 10_000,
                "latency_ms": 0.5,
                "scores": {"de_score": 1.0 + gens - i},
            }
            for i in range(spec["search"].get("topK", 5))
        ]
        result = {"best": best, "generations": gens}
        (out / "result.json").write_text(json.dumps(result))
        if reporter:
            reporter.result(result)
    elif reporter:
        reporter.close()
    return 0


def train(argv: list[str]) -> int:
    spec = _job(argv, "train")
    knobs = (spec.get("searchSpace") or {}).get("fake") or {}
    structure = json.loads(Path(_arg(argv, "--structure")).read_text())  # the mounted result must be readable
    assert structure["best"], "result.json has no structures"
    out = Path(_arg(argv, "--out") or "out")
    out.mkdir(parents=True, exist_ok=True)
    node_rank = int(os.environ.get("PET_NODE_RANK", "0"))
    epochs = spec["training"]["epochs"]
    ckpt = out / f"train-{node_rank}.json"
    start = json.loads(ckpt.read_text())["epoch"] if ckpt.exists() else 0
    print(f"fake train node {node_rank}: epochs {start + 1}..{epochs}", flush=True)
    reporter = reporter_from_env(role="train", rank=node_rank)
    for epoch in range(start + 1, epochs + 1):
        time.sleep(float(knobs.get("epochSeconds", 0.2)))
        _write(ckpt, {"epoch": epoch})
        if reporter:
            reporter.progress(
                {
                    "epoch": epoch,
                    "epochs": epochs,
                    "metric": 0.5 + 0.1 * epoch,
                    "metric_name": "accuracy",
                    "resumed_from": start,
                }
            )
    metrics = {"metric": 0.5 + 0.1 * epochs, "metric_name": "accuracy", "epoch": epochs}
    if node_rank == 0:
        (out / "metrics.json").write_text(json.dumps(metrics))
        if reporter:
            reporter.result(metrics)
    elif reporter:
        reporter.close()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[1] == "-c":  # init containers: `python -c SCRIPT`
        exec(compile(argv[2], "<init>", "exec"), {"__name__": "__main__"})
        return 0
    if argv[1:2] == ["report"]:  # the campaign report Pod: the real engine command
        from denas.cli import main as denas_main

        return denas_main(argv[1:])
    if "search" in argv:
        return search(argv)
    if "train" in argv:
        return train(argv)
    print(f"fake_denas: unknown command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
