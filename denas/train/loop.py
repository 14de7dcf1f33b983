"""The training loop: DDP on CPU, IPEX/bf16 when available, checkpoint every epoch, resume.

Read `train` top to bottom: set up the process group and threads, build the model, resume if a
checkpoint exists, then epochs of (train, evaluate, checkpoint, report) until done or the target
metric is reached. Rank 0 writes every file.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from denas.data.common import DataBundle
from denas.train import accel, checkpoint
from denas.train.distributed import (
    ProcessInfo,
    all_reduce_sum,
    barrier,
    init_distributed,
    set_threads,
    shutdown,
)
from denas.train.progress import Progress, ProgressCallback
from denas.train.tasks import task_for

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says what to change."""


@dataclass
class TrainConfig:
    out_dir: Path
    epochs: int = 3
    batch_size: int = 64  # global: split across all processes
    learning_rate: float = 0.05
    optimizer: str = "sgd"  # sgd (momentum 0.9, nesterov) | adamw
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05  # of all steps, linear warm-up before the cosine decay
    grad_clip: float = 5.0
    target_metric: float | None = None
    seed: int = 0
    ipex: str = "auto"
    bf16: str = "auto"
    domain: str | None = None  # lets the `auto` compute path follow what helps this kind of model
    backend: str = "gloo"
    rendezvous_timeout: float = 300.0
    checkpoint_dir: Path | None = None  # default: out_dir
    metrics_port: int | None = None
    callbacks: list[ProgressCallback] = field(default_factory=list)


def train(
    build_model: Callable[[], nn.Module],
    data: DataBundle,
    cfg: TrainConfig,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``build_model()`` on ``data``; return (and on rank 0 write) the metrics dict."""
    info = init_distributed(cfg.backend, cfg.rendezvous_timeout)
    try:
        return _train(build_model, data, cfg, info, dict(meta or {}))
    finally:
        shutdown(info)


def _train(
    build_model: Callable[[], nn.Module],
    data: DataBundle,
    cfg: TrainConfig,
    info: ProcessInfo,
    meta: dict[str, Any],
) -> dict[str, Any]:
    threads = set_threads(info.local_world_size)
    out_dir, ckpt_dir = Path(cfg.out_dir), Path(cfg.checkpoint_dir or cfg.out_dir)
    task = task_for(data.task, data.info)
    progress = Progress(info.is_master, cfg.epochs, cfg.metrics_port, cfg.callbacks)

    # ---- data: each rank sees a disjoint shard of one global permutation --------------------
    if cfg.batch_size < info.world_size:
        raise ValueError(
            f"spec.training.batchSize: {cfg.batch_size} is smaller than the {info.world_size} processes; raise it"
        )
    local_batch = cfg.batch_size // info.world_size
    sampler = DistributedSampler(
        data.train, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    train_loader = DataLoader(data.train, batch_size=local_batch, sampler=sampler, collate_fn=data.collate)
    test_shard = Subset(data.test, range(info.rank, len(data.test), info.world_size))  # type: ignore[arg-type]
    test_loader = DataLoader(test_shard, batch_size=max(local_batch, 32), collate_fn=data.collate)

    # ---- model, optimizer, schedule (same seed on every rank: identical initial weights) ----
    torch.manual_seed(cfg.seed)
    model = build_model()
    params = sum(p.numel() for p in model.parameters())
    optimizer = _optimizer(model, cfg)
    path = accel.choose_compute_path(cfg.ipex, cfg.bf16, cfg.domain)
    if info.is_master:
        log.info("compute path %s (%s); %d thread(s) per process", path.name, path.reason, threads)
    model, optimizer = accel.optimize(model, optimizer, path)  # before DDP and the scheduler, as IPEX wants
    total_steps = max(1, cfg.epochs * len(train_loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total_steps, cfg.warmup_fraction))

    # ---- resume -------------------------------------------------------------------------------
    start_epoch, history, resumed_from = 0, [], None
    state = checkpoint.load_checkpoint(ckpt_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history, resumed_from = state["epoch"], state["history"], state["epoch"]
        rng = state["rng"]
        if len(rng) == info.world_size:
            checkpoint.set_rng_state(rng[info.rank])
        else:  # group size changed: fresh, but still deterministic, per-rank streams
            torch.manual_seed(cfg.seed + 1000 * start_epoch + info.rank)
        progress.emit(
            {
                "event": "resumed",
                "epoch": start_epoch,
                "checkpoint": str(ckpt_dir / checkpoint.CHECKPOINT_NAME),
            }
        )
    else:
        torch.manual_seed(cfg.seed + info.rank)  # per-rank dropout / augmentation streams
    ddp_model = DistributedDataParallel(model) if info.backend else model

    progress.emit(
        {
            "event": "start",
            "world_size": info.world_size,
            "nnodes": info.nnodes,
            "threads_per_process": threads,
            "path": path.name,
            "path_reason": path.reason,
            "params": params,
            "local_batch": local_batch,
            "train_size": len(data.train),  # type: ignore[arg-type]
            "test_size": len(data.test),  # type: ignore[arg-type]
        }
    )

    # ---- epochs -------------------------------------------------------------------------------
    reached = (
        _target_reached(history[-1]["metric"], cfg.target_metric, task.higher_is_better) if history else False
    )
    for epoch in range(start_epoch, cfg.epochs):
        if reached:
            break
        sampler.set_epoch(epoch)
        ddp_model.train()
        progress.start_epoch(epoch, len(train_loader))
        loss_sum, seen, started = 0.0, 0, time.perf_counter()
        for inputs, targets in train_loader:
            with accel.autocast(path):
                loss = task.loss(ddp_model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            n = _batch_len(targets)
            loss_value = float(loss.detach())
            loss_sum, seen = loss_sum + loss_value * n, seen + n
            progress.step(loss_value, n)
        elapsed = time.perf_counter() - started
        progress.end_epoch()
        loss_sum, seen = all_reduce_sum([loss_sum, seen], info)
        if not math.isfinite(loss_sum):  # every rank sees the same reduced sum: all stop together
            raise TrainingDiverged(
                f"training diverged: the loss is {loss_sum / max(seen, 1)} in epoch {epoch + 1} on compute path "
                f"{path.name}; lower spec.training.learningRate (now {cfg.learning_rate:g})"
                + (" or set spec.hardware.ipex/bf16 to off" if path.ipex or path.bf16 else "")
                + f". The last good checkpoint (epoch {epoch}) is kept in {ckpt_dir}."
            )

        # the bare model: shards may differ by a batch, and DDP's forward would wait for the others
        metric, test_loss = evaluate(model, test_loader, task, path, info)
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(seen, 1),
            "test_loss": test_loss,
            "metric": metric,
            "samples_per_s": seen / max(elapsed, 1e-9),
            "lr": scheduler.get_last_lr()[0],
        }
        history.append(record)
        _save_checkpoint(ckpt_dir, epoch + 1, model, optimizer, scheduler, history, info)
        progress.emit({"phase": "training", "epochs": cfg.epochs, "metric_name": task.metric_name, **record})
        reached = _target_reached(metric, cfg.target_metric, task.higher_is_better)

    # ---- results ------------------------------------------------------------------------------
    last = history[-1] if history else {}
    metrics = {
        "metric": last.get("metric"),
        "metric_name": task.metric_name,
        "higher_is_better": task.higher_is_better,
        "loss": last.get("loss"),
        "test_loss": last.get("test_loss"),
        "samples_per_s": last.get("samples_per_s"),
        "epochs": len(history),
        "epochs_planned": cfg.epochs,
        "early_stopped": bool(reached and len(history) < cfg.epochs),
        "target_metric": cfg.target_metric,
        "resumed_from_epoch": resumed_from,
        "path": path.name,
        "path_reason": path.reason,
        "ipex": path.ipex,
        "bf16": path.bf16,
        "world_size": info.world_size,
        "nnodes": info.nnodes,
        "threads_per_process": threads,
        "global_batch_size": local_batch * info.world_size,
        "learning_rate": cfg.learning_rate,
        "optimizer": cfg.optimizer,
        "params": params,
        "dataset": {
            "name": data.name,
            **{k: v for k, v in data.info.items() if k not in ("classes", "alphabet")},
        },
        "history": history,
        **meta,
    }
    if info.is_master:
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_save(
            {"state_dict": checkpoint.fp32_state_dict(model), **meta, "metrics": metrics},
            out_dir / "model.pt",
        )
        _write_json(out_dir / "metrics.json", metrics)
        progress.emit(
            {
                "event": "done",
                "metric": metrics["metric"],
                "metric_name": task.metric_name,
                "out": str(out_dir),
            }
        )
    barrier(info)
    return metrics


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, task: Any, path: accel.ComputePath, info: ProcessInfo
) -> tuple[float, float]:
    """The task metric and mean loss over the whole test split (each rank evaluates its shard)."""
    model.eval()
    counts: list[float] = []
    loss_sum = seen = 0.0
    for inputs, targets in loader:
        with accel.autocast(path):
            outputs = model(inputs)
        n = _batch_len(targets)
        loss_sum += float(task.loss(outputs, targets)) * n
        seen += n
        batch_counts = task.counts(outputs, targets)
        counts = [a + b for a, b in zip(counts, batch_counts)] if counts else batch_counts
    totals = all_reduce_sum([loss_sum, seen, *(counts or [0.0, 0.0])], info)
    return task.metric(totals[2:]), totals[0] / max(totals[1], 1.0)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm scales (1-d tensors): the usual recipe for both families.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)
    raise ValueError(f"--optimizer: unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")


def _warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _save_checkpoint(
    directory: Path,
    epoch: int,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    history: list,
    info: ProcessInfo,
) -> None:
    """Every rank's RNG state goes in (gathered to rank 0), so a resumed group continues exactly."""
    rng = [checkpoint.rng_state()]
    if info.backend:
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    if info.is_master:
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": history,
            "rng": rng,
            # the sampler is a pure function of (seed, epoch): the next epoch's order is restored exactly
            "sampler": {"epoch": epoch},
        }
        checkpoint.atomic_save(state, directory / checkpoint.CHECKPOINT_NAME)
    barrier(info)


def _target_reached(metric: float, target: float | None, higher_is_better: bool) -> bool:
    if target is None:
        return False
    return metric >= target if higher_is_better else metric <= target


def _batch_len(targets: Any) -> int:
    if isinstance(targets, torch.Tensor):
        return int(targets.shape[0])
    return (
        int(targets["label_lengths"].shape[0])
        if "label_lengths" in targets
        else len(next(iter(targets.values())))
    )


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    import json
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)
