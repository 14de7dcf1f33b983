"""BERT space specifics: transformers' classes from a config, calling conventions, heads | hidden."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import BertModel, PreTrainedModel

import denas.spaces as spaces
from denas.spaces.base import StructureError, param_count


@pytest.fixture
def tiny():
    return spaces.get("bert", {"preset": "tiny"})


def test_building_never_loads_pretrained_weights(tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained must never be called")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny.build(tiny.sample(random.Random(0)))
    assert isinstance(model.bert, BertModel)


def test_dict_kwargs_and_bare_input_ids_give_the_same_logits(tiny):
    model = tiny.build(tiny.sample(random.Random(1))).eval()
    inputs, targets = tiny.example_inputs(batch_size=3)
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(v.dtype == torch.long and v.shape == (3, 32) for v in inputs.values())
    assert targets.shape == (3,)
    with torch.no_grad():
        from_dict = model(inputs)
        from_kwargs = model(**inputs)
        only_ids = model(inputs["input_ids"], token_type_ids=inputs["token_type_ids"])
    assert isinstance(from_dict, torch.Tensor) and from_dict.shape == (3, 2)
    assert torch.equal(from_dict, from_kwargs) and torch.allclose(from_dict, only_ids)


def test_features_are_the_last_hidden_states(tiny):
    s = {"num_layers": 1, "hidden_size": 48, "num_heads": 2, "intermediate_size": 128}
    inputs, _ = tiny.example_inputs(batch_size=2)
    assert tiny.build(s).forward_features(inputs).shape == (2, 32, 48)


def test_cheap_init_matches_bert_scale_and_restores_buffers(tiny):
    s = {"num_layers": 2, "hidden_size": 64, "num_heads": 4, "intermediate_size": 256}
    torch.manual_seed(0)
    model = tiny.build(s)
    reference = BertModel(tiny.bert_config(s))
    for name, buf in reference.named_buffers():
        assert torch.equal(dict(model.bert.named_buffers())[name], buf), name
    weight = model.bert.encoder.layer[0].intermediate.dense.weight
    assert weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.bert.embeddings.word_embeddings.weight[0].abs().sum() == 0  # padding row
    assert torch.all(model.bert.encoder.layer[0].output.LayerNorm.weight == 1)


def test_heads_always_divide_hidden_size_through_variation():
    space = spaces.get("bert")
    rng = random.Random(2)
    for _ in range(300):
        a, b = space.sample(rng), space.sample(rng)
        for s in (a, space.mutate(a, rng, 0.5), space.crossover(a, b, rng)):
            assert s["hidden_size"] % s["num_heads"] == 0


def test_default_space_has_the_issue_ranges():
    space = spaces.get("bert")
    assert space.choices["num_layers"] == list(range(4, 13))
    assert space.choices["hidden_size"] == list(range(128, 769, 16))
    assert min(space.choices["intermediate_size"]) == 128 and max(space.choices["intermediate_size"]) == 3072
    base = {"num_layers": 12, "hidden_size": 768, "num_heads": 12, "intermediate_size": 3072}
    with torch.device("meta"):
        assert param_count(space.build(base)) == space.count_params(base)


def test_invalid_heads_name_the_key_and_the_divisors():
    space = spaces.get("bert", {"preset": "tiny", "num_heads": [1, 2, 4, 12]})
    space.validate({"num_layers": 1, "hidden_size": 48, "num_heads": 12, "intermediate_size": 64})
    with pytest.raises(StructureError, match=r"num_heads.*\[1, 2, 4\]"):
        space.validate({"num_layers": 1, "hidden_size": 32, "num_heads": 12, "intermediate_size": 64})


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"seq_len": 1000}, "searchSpace.seq_len"),
        ({"num_heads": [5]}, "searchSpace.num_heads"),
        ({"dropout": 1.5}, "searchSpace.dropout"),
        ({"vocab_size": 0}, "searchSpace.vocab_size"),
        ({"hidden_size": {"min": 64}}, "searchSpace.hidden_size"),
    ],
)
def test_invalid_overrides_name_the_key(overrides, key):
    with pytest.raises(StructureError) as err:
        spaces.get("bert", {"preset": "tiny", **overrides})
    assert err.value.key == key
