"""`denas train JOB.yaml --structure RESULT.json --out DIR`: train a searched structure.

Run it directly for one process or under torchrun for several (the PyTorchJob contract, see
`denas.train.envvars`). Writes DIR/metrics.json, DIR/model.pt and DIR/checkpoint.pt.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from denas.data import DataError
from denas.train.distributed import RendezvousError
from denas.train.envvars import DEFAULT_RENDEZVOUS_TIMEOUT
from denas.train.loop import TrainConfig, TrainingDiverged, train
from denas.train.progress import kube_reporter
from denas.train.taskdata import load_task_data

log = logging.getLogger("denas.train")

# Transformers train with AdamW; convolutional spaces with SGD + momentum.
OPTIMIZER_BY_DOMAIN = {"cnn": "sgd", "nb201": "sgd", "vit": "adamw", "bert": "adamw", "asr": "adamw"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="DeNASJob manifest (YAML); spec.training drives the run")
    parser.add_argument(
        "--structure",
        required=True,
        help="a search's result.json (trains best[spec.training.structureRank]), a JSON file holding one structure, or inline JSON",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output directory: metrics.json, model.pt, checkpoint.pt"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="where checkpoints live (default: --out); a restarted group resumes from it",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics (denas_train_*) on this port (rank 0)"
    )
    parser.add_argument("--epochs", type=int, help="override spec.training.epochs")
    parser.add_argument("--batch-size", type=int, help="override spec.training.batchSize (global)")
    parser.add_argument("--lr", type=float, help="override spec.training.learningRate")
    parser.add_argument(
        "--optimizer",
        choices=["auto", "sgd", "adamw"],
        default="auto",
        help="auto: sgd for cnn/nb201, adamw for vit/bert/asr",
    )
    parser.add_argument("--ipex", choices=["auto", "on", "off"], help="override spec.hardware.ipex")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], help="override spec.hardware.bf16")
    parser.add_argument(
        "--backend",
        choices=["gloo", "ccl"],
        default="gloo",
        help="torch.distributed backend (ccl needs oneCCL bindings)",
    )
    parser.add_argument(
        "--rendezvous-timeout",
        type=float,
        default=DEFAULT_RENDEZVOUS_TIMEOUT,
        help="seconds to wait for the master before failing",
    )
    parser.add_argument("--seed", type=int, help="default: spec.search.seed")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        spec, job_name = _load_spec(args.job)
        metrics = train_spec(spec, args, job_name=job_name)
        if metrics.get("metric") is not None:  # in an operator pod, rank 0 exports next (denas.export.pod)
            from denas.export.pod import export_in_pod

            result = Path(args.structure) if not args.structure.lstrip().startswith("{") else None
            export_in_pod(spec, job_name, args.out, result)
    except TrainingDiverged as exc:
        print(f"denas train: error: {exc}", file=sys.stderr)
        return 1
    except (DataError, RendezvousError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"denas train: error: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, RendezvousError) else 3
    return 0 if metrics.get("metric") is not None else 1


def train_spec(spec: dict[str, Any], args: argparse.Namespace, job_name: str = "") -> dict[str, Any]:
    """Train the structure named by ``args.structure`` under a defaulted DeNASJob ``spec``."""
    training, hardware = spec.get("training", {}), spec.get("hardware", {})
    domain = spec["domain"]
    structure, source = resolve_structure(args.structure, training.get("structureRank", 0))
    dataset = training.get("dataset", {"name": "digits"})
    overrides = dict(spec.get("searchSpace") or {})
    seed = args.seed if args.seed is not None else spec.get("search", {}).get("seed", 0)

    # the data, the space fitted to it and the task's model: the same path the search scores on
    task_data = load_task_data(domain, overrides, dataset, seed)
    space, data = task_data.space, task_data.data
    space.validate(structure)

    optimizer = args.optimizer if args.optimizer != "auto" else OPTIMIZER_BY_DOMAIN.get(domain, "sgd")
    lr = args.lr if args.lr is not None else training.get("learningRate", 0.05)
    if optimizer == "adamw" and lr > 0.01:
        log.warning("learning rate %g is high for AdamW (domain %s); 1e-3..5e-4 is typical", lr, domain)
    reporter = kube_reporter()
    cfg = TrainConfig(
        out_dir=args.out,
        epochs=args.epochs or training.get("epochs", 3),
        batch_size=args.batch_size or training.get("batchSize", 64),
        learning_rate=lr,
        optimizer=optimizer,
        weight_decay=5e-4 if optimizer == "sgd" else 0.01,
        target_metric=training.get("targetMetric"),
        seed=seed,
        ipex=args.ipex or hardware.get("ipex", "auto"),
        bf16=args.bf16 or hardware.get("bf16", "auto"),
        domain=domain,
        backend=args.backend,
        rendezvous_timeout=args.rendezvous_timeout,
        checkpoint_dir=args.checkpoint_dir,
        metrics_port=args.metrics_port,
        callbacks=[reporter.progress] if reporter else [],
    )
    meta = {
        "job": job_name,
        "domain": domain,
        "structure": structure,
        "structure_hash": space.hash(structure),
        "structure_source": source,
        "space_config": space.config,
    }
    try:
        metrics = train(lambda: task_data.build(structure), data, cfg, meta)
        if reporter and os.environ.get("RANK", "0") == "0":
            reporter.result(metrics)
    finally:
        if reporter:
            reporter.close()
    return metrics


def resolve_structure(value: str, rank: int = 0) -> tuple[dict[str, Any], str]:
    """A structure from a result.json (``best[rank]``), a structure JSON file, or inline JSON."""
    text, source = value, "inline"
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(
                f"--structure: {path}: no such file; pass a result.json, a structure JSON file or inline JSON"
            )
        text, source = path.read_text(), str(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--structure: {source} is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"--structure: {source} must hold a JSON object")
    if "best" in obj:
        best = obj["best"]
        if not isinstance(best, list) or not best:
            raise ValueError(f"--structure: {source} has no structures under 'best'; did the search finish?")
        if rank >= len(best):
            raise ValueError(
                f"spec.training.structureRank: Invalid value: {rank}: {source} holds only {len(best)} structures (0..{len(best) - 1})"
            )
        return best[rank]["structure"], f"{source}#best[{rank}]"
    return obj.get("structure", obj), source


def _load_spec(path: str) -> tuple[dict[str, Any], str]:
    from denas.job import load_job

    job = load_job(path)
    return job.spec, job.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="denas train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
