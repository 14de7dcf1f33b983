"""Hugging Face config spaces (`domain: huggingface`, `searchSpace.huggingface: {config, choices}`):
checked before the search, searched and trained end to end, exported as a folder that
`transformers.AutoModel` loads in a fresh process without DeNAS."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from denas import spaces
from denas.export.load import load_trained

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CONFIG = {"model_type": "bert", "vocab_size": 1000, "max_position_embeddings": 32}
CHOICES = {
    "num_hidden_layers": [1, 2],
    "num_attention_heads": [2, 4, 8],
    "hidden_size": [12, 16, 32],
    "intermediate_size": [32, 64],
}


def space(config=CONFIG, choices=CHOICES, **extra):
    return spaces.get(
        "huggingface", {"seq_len": 16, "huggingface": {"config": config, "choices": choices}, **extra}
    )


@pytest.mark.parametrize(
    ("config", "choices", "message"),
    [
        (
            CONFIG,
            {"num_layerz": [1, 2]},
            "searchSpace.huggingface.choices.num_layerz: not a field of BertConfig",
        ),
        (
            CONFIG,
            {"hidden_size": [30, 32], "num_attention_heads": [4, 8]},
            "searchSpace.huggingface.choices.num_attention_heads: no choice in [4, 8] divides hidden_size 30",
        ),
        ({"vocab_size": 10}, CHOICES, "searchSpace.huggingface.config.model_type: required"),
        (
            {"model_type": "no-such-model"},
            CHOICES,
            "searchSpace.huggingface.config.model_type: 'no-such-model'",
        ),
        ("/nonexistent/config.json", CHOICES, "searchSpace.huggingface.config: /nonexistent/config.json"),
        (CONFIG, {"hidden_size": []}, "searchSpace.huggingface.choices.hidden_size"),
    ],
)
def test_bad_configs_and_choices_name_the_field(config, choices, message):
    with pytest.raises(spaces.StructureError) as info:
        space(config, choices)
    assert message in str(info.value)


def test_config_from_a_local_path_and_only_legal_structures(tmp_path):
    from transformers import BertConfig

    BertConfig(vocab_size=500, max_position_embeddings=32).save_pretrained(tmp_path)  # config.json only
    sp = space(str(tmp_path))
    assert sp.config["vocab_size"] == 500
    rng = random.Random(0)
    seen = [sp.sample(rng) for _ in range(30)]
    seen += [sp.mutate(s, rng) for s in seen] + [sp.crossover(a, b, rng) for a, b in zip(seen, seen[1:])]
    for s in seen:
        assert s["hidden_size"] % s["num_attention_heads"] == 0  # 12 never pairs with 8 heads
        sp.validate(s)
    s = seen[0]
    model = sp.build(s)
    assert sp.count_params(s) == sum(p.numel() for p in model.parameters())
    inputs, _ = sp.example_inputs(3)
    assert model(inputs).shape == (3, 2)
    with pytest.raises(spaces.StructureError, match="num_attention_heads"):
        sp.validate({**s, "hidden_size": 12, "num_attention_heads": 8})


def job_manifest() -> dict:
    return {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "hf-tiny"},
        "spec": {
            "domain": "huggingface",
            "searchSpace": {
                "seq_len": 16,
                "huggingface": copy.deepcopy({"config": CONFIG, "choices": CHOICES}),
            },
            "search": {"strategy": "ea", "population": 4, "generations": 1, "seed": 0, "topK": 1},
            "training": {
                "enabled": True,
                "replicas": 1,
                "epochs": 1,
                "batchSize": 16,
                "learningRate": 0.001,
                "dataset": {"name": "synthetic-text", "limit": 64},
            },
        },
    }


def denas(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "denas", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_cli_refuses_an_unknown_field_before_any_work(tmp_path):
    manifest = job_manifest()
    manifest["spec"]["searchSpace"]["huggingface"]["choices"]["num_heads"] = [2]
    job = tmp_path / "bad.yaml"
    job.write_text(yaml.safe_dump(manifest))
    proc = denas("run", str(job), "--out", str(tmp_path / "out"), timeout=300)
    assert proc.returncode == 2
    assert "spec.searchSpace.huggingface.choices.num_heads: not a field of BertConfig" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_tiny_job_end_to_end_and_the_hf_folder_loads_without_denas(tmp_path):
    job = tmp_path / "hf.yaml"
    job.write_text(yaml.safe_dump(job_manifest()))
    out = tmp_path / "out"
    proc = denas("run", str(job), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((out / "model" / "card.json").read_text())
    assert card["ok"], card["problems"]
    assert card["artifacts"]["huggingface"]["class"] == "BertForSequenceClassification"
    # the trained model (rebuilt from the run's checkpoint) is the reference
    trained = load_trained(out / "train" / "model.pt")
    inputs = trained.sample_inputs(batch_size=5, seed=7)
    kwargs = dict(zip(trained.input_names, inputs))
    with torch.no_grad():
        expected = trained.wrapped()(*inputs)
        hidden = trained.model.forward_features(kwargs)
    arrays = {f"in_{n}": t.numpy() for n, t in kwargs.items()}
    np.savez(tmp_path / "reference.npz", expected=expected.numpy(), hidden=hidden.numpy(), **arrays)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # denas is not even on the path
    loaded = subprocess.run(
        [sys.executable, str(HERE / "load_exported.py"), str(out / "model"), str(tmp_path / "reference.npz")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    report = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert report["denas_modules"] == []
    assert {"huggingface", "huggingface_automodel", "torchscript", "onnx"} <= set(report["diffs"])
    assert max(report["diffs"].values()) <= 1e-4


def test_scored_with_the_transformer_defaults():
    from denas.scores import descore

    # without its own entry the space would get `default` (the CNN family's weights)
    assert descore.default_weights("huggingface") == descore.default_weights("bert")
    assert descore.default_weights("huggingface") != descore.default_weights("default")
