"""ViT space specifics: per-layer choices, depth changes, AutoFormer-sized presets."""

from __future__ import annotations

import random

import pytest
import torch

import denas.spaces as spaces
from denas.spaces.base import StructureError, param_count


def test_per_layer_lists_follow_depth_through_mutation_and_crossover():
    space = spaces.get("vit", {"preset": "tiny"})
    rng = random.Random(0)
    depths = set()
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        for child in (space.mutate(a, rng, 0.5), space.crossover(a, b, rng)):
            space.validate(child)
            assert len(child["num_heads"]) == len(child["mlp_ratio"]) == child["depth"]
            depths.add(child["depth"])
    assert depths == set(space.choices["depth"])


def test_crossover_takes_each_layer_from_a_parent_that_has_it():
    space = spaces.get("vit", {"preset": "tiny"})
    a = {"embed_dim": 32, "depth": 1, "num_heads": [1], "mlp_ratio": [2.0]}
    b = {"embed_dim": 64, "depth": 3, "num_heads": [2, 2, 2], "mlp_ratio": [4.0, 4.0, 4.0]}
    rng = random.Random(1)
    for _ in range(30):
        c = space.crossover(a, b, rng)
        if c["depth"] == 3:
            assert c["num_heads"][1:] == [2, 2] and c["mlp_ratio"][1:] == [4.0, 4.0]


def test_autoformer_preset_spans_the_published_table():
    space = spaces.get("vit", {"preset": "autoformer"})
    assert min(space.choices["embed_dim"]) == 192 and max(space.choices["embed_dim"]) == 624
    assert space.choices["depth"] == [12, 13, 14, 15, 16] and space.choices["num_heads"] == list(range(3, 11))
    assert space.choices["mlp_ratio"] == [3.0, 3.5, 4.0]
    smallest = {"embed_dim": 192, "depth": 12, "num_heads": [3] * 12, "mlp_ratio": [3.0] * 12}
    assert param_count(space.build(smallest)) == space.count_params(smallest)
    rng = random.Random(2)
    counts = [space.count_params(space.sample(rng)) for _ in range(300)]
    assert min(counts) > 4_000_000 and max(counts) > 40_000_000


def test_forward_features_is_the_token_sequence_and_logits_come_from_the_class_token():
    space = spaces.get("vit", {"preset": "digits"})
    s = space.sample(random.Random(3))
    model = space.build(s).eval()
    x, _ = space.example_inputs(batch_size=2)
    assert x.shape == (2, 1, 8, 8)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 17, s["embed_dim"])
        # same math, but oneDNN may pick other kernels per call: equal up to float rounding
        assert torch.allclose(model(x), model.head(feats[:, 0]), rtol=1e-4, atol=1e-5)


def test_encoding_pads_to_the_deepest_choice():
    space = spaces.get("vit", {"preset": "tiny"})
    s = {"embed_dim": 48, "depth": 1, "num_heads": [2], "mlp_ratio": [4.0]}
    assert space.encode(s) == [48.0, 1.0, 2.0, 4.0, 0.0, 0.0, 0.0, 0.0]


def test_invalid_structures_name_the_layer():
    space = spaces.get("vit", {"preset": "tiny"})
    with pytest.raises(StructureError, match=r"num_heads\[1\].*\[1, 2\]"):
        space.validate({"embed_dim": 32, "depth": 2, "num_heads": [1, 8], "mlp_ratio": [2.0, 2.0]})
    with pytest.raises(StructureError, match="mlp_ratio"):
        space.validate({"embed_dim": 32, "depth": 2, "num_heads": [1, 1], "mlp_ratio": [2.0]})
    with pytest.raises(StructureError, match="embed_dim"):
        space.validate({"embed_dim": 33, "depth": 1, "num_heads": [1], "mlp_ratio": [2.0]})


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"patch_size": 5}, "searchSpace.patch_size"),
        ({"mlp_ratio": [2.0, -1]}, "searchSpace.mlp_ratio"),
        ({"depth": []}, "searchSpace.depth"),
        ({"num_heads": {"min": 1, "max": 4, "stride": 2}}, "searchSpace.num_heads"),
        ({"embed_dim": [32, "wide"]}, "searchSpace.embed_dim"),
    ],
)
def test_invalid_overrides_name_the_key(overrides, key):
    with pytest.raises(StructureError) as err:
        spaces.get("vit", {"preset": "tiny", **overrides})
    assert err.value.key == key
