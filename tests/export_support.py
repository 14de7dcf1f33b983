"""Check an export against the model it came from, in a fresh process where DeNAS cannot be imported.

The reference (inputs and the trained model's outputs) is computed here, with DeNAS; the exported
files are loaded by tests/load_exported.py in a fresh interpreter without PYTHONPATH, which first
makes ``denas`` unreachable (the shared venv has an editable install) and proves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from denas.export.formats import TOLERANCE
from denas.export.load import Trained

HERE = Path(__file__).resolve().parent
BF16_TOLERANCE = 0.05  # the IPEX variant runs in bf16: close to fp32, not fp32-exact


def load_in_fresh_process(folder: Path, trained: Trained, tmp_path: Path) -> dict:
    """Load every artifact in ``folder`` without DeNAS; returns the loader's report
    (``diffs``: max abs difference per artifact, ``listed``: the artifacts the card lists)."""
    inputs = trained.sample_inputs(batch_size=5, seed=7)  # neither the trace's nor the check's batch
    kwargs = dict(zip(trained.input_names, inputs))
    arrays = {f"in_{n}": t.numpy() for n, t in kwargs.items()}
    with torch.no_grad():
        expected = trained.wrapped()(*inputs)
        if (folder / "huggingface").is_dir():  # AutoModel gives the encoder's last hidden state
            encoder = trained.model.encoder if trained.task == "qa" else trained.model
            arrays["hidden"] = encoder.forward_features(kwargs).numpy()
    np.savez(tmp_path / "reference.npz", expected=expected.numpy(), **arrays)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # denas is not even on the path
    proc = subprocess.run(
        [sys.executable, str(HERE / "load_exported.py"), str(folder), str(tmp_path / "reference.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["denas_modules"] == [] and report["denas_importable"] is False
    return report


def assert_all_match(report: dict) -> None:
    """Every artifact the card lists was loaded and matches the model within the export's tolerance."""
    diffs = report["diffs"]
    assert set(report["listed"]) <= set(diffs), f"listed but not loaded: {report}"
    for name, diff in diffs.items():
        bound = BF16_TOLERANCE if name == "ipex-bf16" else TOLERANCE
        assert diff <= bound, f"{name}: max abs diff {diff} > {bound} ({diffs})"
