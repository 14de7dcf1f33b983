"""Helpers shared by the denas.train tests: tiny DeNASJob manifests and a small cnn structure."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# A ~10k-parameter cnn (digits preset): trains to >90% on digits in a few seconds.
SMALL_CNN = {
    "stem_channels": 8,
    "stages": [
        {"block": "basic", "kernel": 3, "expansion": 1.0, "channels": 16, "depth": 1, "residual": True},
        {"block": "basic", "kernel": 3, "expansion": 0.5, "channels": 16, "depth": 1, "residual": True},
        {"block": "basic", "kernel": 3, "expansion": 0.5, "channels": 16, "depth": 1, "residual": True},
    ],
}


def write_job(directory: Path, domain: str = "cnn", overrides: dict | None = None, **training: Any) -> Path:
    spec: dict[str, Any] = {
        "domain": domain,
        "searchSpace": overrides if overrides is not None else {"preset": "digits"},
        "hardware": {"ipex": "off", "bf16": "off"},
        "training": {"epochs": 2, "batchSize": 32, "learningRate": 0.05, "dataset": {"name": "digits"}}
        | training,
    }
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "t"},
        "spec": spec,
    }
    path = directory / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env["DENAS_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    root = str(Path(__file__).resolve().parents[1])  # so scripts under tests/ can import tests.*
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """In-process training uses one thread (the 2 cores are shared); torch's setting is restored after."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("DENAS_THREADS", "1")
    yield
    torch.set_num_threads(before)
