"""Hugging Face config spaces (`domain: huggingface`, `searchSpace.huggingface: {config, choices}`):
checked before the search. The tiny job end to end, exported as a folder that
`transformers.AutoModel` loads in a fresh process without DeNAS: tests/test_export_domains.py."""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


def bad_choice_job(tmp_path: Path, field: str, values: list) -> Path:
    """The tiny job with ``choices[field] = values``, written to tmp_path/bad.yaml."""
    manifest = job_manifest()
    manifest["spec"]["searchSpace"]["huggingface"]["choices"][field] = values
    job = tmp_path / "bad.yaml"
    job.write_text(yaml.safe_dump(manifest))
    return job


def denas(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "denas", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_cli_refuses_an_unknown_field_before_any_work(tmp_path):
    job = bad_choice_job(tmp_path, "num_heads", [2])
    proc = denas("run", str(job), "--out", str(tmp_path / "out"), timeout=300)
    assert proc.returncode == 2
    assert "spec.searchSpace.huggingface.choices.num_heads: not a field of BertConfig" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


BAD_CHOICES = [
    # (field, choices, what the one error line says after the field path); before these checks:
    ("num_attention_heads", [0], "[0]: Invalid value: 0: must be an integer >= 1"),  # ZeroDivisionError
    (
        "num_hidden_layers",
        ["two"],
        '[0]: Invalid value: "two": must be an integer >= 1',
    ),  # failed in the search
    ("intermediate_size", [32, -5], "[1]: Invalid value: -5: must be an integer >= 1"),  # failed in build
    ("hidden_size", [0], "[0]: Invalid value: 0: must be an integer >= 1"),  # failed in build
    ("num_hidden_layers", [-1], "[0]: Invalid value: -1: must be an integer >= 1"),  # no encoder layers
    ("max_position_embeddings", [8], "[0]: Invalid value: 8: must be >= searchSpace.seq_len (16)"),  # forward
]


@pytest.mark.parametrize(("field", "values", "message"), BAD_CHOICES, ids=[c[0] for c in BAD_CHOICES])
def test_validate_refuses_a_bad_choice_value_naming_it(tmp_path, field, values, message):
    job = bad_choice_job(tmp_path, field, values)
    proc = denas("validate", str(job), timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    assert f"spec.searchSpace.huggingface.choices.{field}{message}" in output
    assert "Traceback" not in output


def test_run_refuses_positions_shorter_than_the_sequences_before_any_work(tmp_path):
    job = bad_choice_job(tmp_path, "max_position_embeddings", [8, 32])
    proc = denas("run", str(job), "--out", str(tmp_path / "out"), timeout=300)
    assert proc.returncode == 2
    assert "spec.searchSpace.huggingface.choices.max_position_embeddings[0]: Invalid value: 8" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (
            {"hidden_dropout_prob": [0.1, 1.5]},
            "hidden_dropout_prob[1]: Invalid value: 1.5: must be a number in [0, 1]",
        ),
        ({"layer_norm_eps": [0.0]}, "layer_norm_eps[0]: Invalid value: 0.0: must be a number > 0"),
        ({"hidden_act": ["gelu", "gelo"]}, 'hidden_act[1]: Invalid value: "gelo": not an activation'),
        ({"num_hidden_layers": [True]}, "num_hidden_layers[0]: Invalid value: true: must be an integer >= 1"),
        ({"num_hidden_layers": {"min": 0, "max": 2}}, "num_hidden_layers: Invalid value: 0: must be"),
        ({"num_hidden_layers": [[1, 2]]}, "num_hidden_layers[0]: Invalid value: [1, 2]: must be"),
    ],
)
def test_choice_values_have_the_type_and_range_of_their_field(choices, message):
    with pytest.raises(spaces.StructureError) as info:
        space(CONFIG, {**CHOICES, **choices})
    assert f"searchSpace.huggingface.choices.{message}" in str(info.value)


def test_legal_choices_of_other_types_are_kept():
    sp = space(
        CONFIG,
        {
            **CHOICES,
            "hidden_dropout_prob": [0, 0.1, 0.1],
            "hidden_act": ["relu", "gelu"],
            "max_position_embeddings": [16, 32],
        },
    )
    assert sp.choices["hidden_dropout_prob"] == [0, 0.1]
    assert sp.choices["hidden_act"] == ["gelu", "relu"]
    s = {**sp.sample(random.Random(0)), "hidden_act": "relu", "max_position_embeddings": 16}
    inputs, _ = sp.example_inputs(2)
    assert sp.build(s)(inputs).shape == (2, 2)


def test_qa_heads_read_the_width_from_the_model_when_the_choices_omit_hidden_size(tmp_path):
    import torch

    from denas.export.load import load_trained
    from denas.train.taskdata import TaskData
    from denas.train.tasks import QATask, SpanQA

    config = {**CONFIG, "hidden_size": 16, "intermediate_size": 32}
    sp = space(config, {"num_hidden_layers": [1, 2], "num_attention_heads": [2, 4]})
    structure = sp.sample(random.Random(0))
    assert "hidden_size" not in structure
    qa = TaskData(space=sp, data=SimpleNamespace(task="qa"), dataset={"name": "squad"}).build(structure)
    assert isinstance(qa, SpanQA) and qa.span.in_features == 16
    inputs, _ = sp.example_inputs(3)
    logits = qa(inputs)
    assert logits.shape == (3, 16, 2)
    # DDP rejects trainable parameters without a gradient: the unused pooler and classifier are frozen
    targets = {"start_positions": torch.tensor([1, 2, 3]), "end_positions": torch.tensor([2, 3, 4])}
    QATask().loss(logits, targets).backward()
    trainable = [n for n, p in qa.named_parameters() if p.requires_grad]
    assert trainable and [n for n, p in qa.named_parameters() if p.requires_grad and p.grad is None] == []
    assert not any(".pooler." in n or ".classifier." in n for n in trainable)
    # the loader rebuilds the heads the same way (a model.pt as `denas train` saves it)
    saved = {"domain": "huggingface", "structure": structure, "space_config": sp.config}
    torch.save({**saved, "state_dict": qa.state_dict()}, tmp_path / "model.pt")
    trained = load_trained(tmp_path / "model.pt")
    assert trained.task == "qa"
    with torch.no_grad():
        assert torch.allclose(trained.model(inputs), qa.eval()(inputs), atol=1e-6)


def test_scored_with_the_transformer_defaults():
    from denas.scores import descore

    # without its own entry the space would get `default` (the CNN family's weights)
    assert descore.default_weights("huggingface") == descore.default_weights("bert")
    assert descore.default_weights("huggingface") != descore.default_weights("default")
