"""Hugging Face config spaces (`domain: huggingface`, `searchSpace.huggingface: {config, choices}`):
checked before the search. The tiny job end to end, exported as a folder that
`transformers.AutoModel` loads in a fresh process without DeNAS: tests/test_export_domains.py."""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from denas import spaces

ROOT = Path(__file__).resolve().parents[1]
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


def test_scored_with_the_transformer_defaults():
    from denas.scores import descore

    # without its own entry the space would get `default` (the CNN family's weights)
    assert descore.default_weights("huggingface") == descore.default_weights("bert")
    assert descore.default_weights("huggingface") != descore.default_weights("default")
