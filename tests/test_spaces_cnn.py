"""CNN space specifics: presets for small images, per-stage choices, shortcuts, budgets."""

from __future__ import annotations

import random

import pytest
import torch

import denas.spaces as spaces
from denas.spaces.base import StructureError, param_count


def _stage(**kw):
    base = {"block": "basic", "kernel": 3, "expansion": 1.0, "channels": 16, "depth": 1, "residual": True}
    return {**base, **kw}


def test_default_space_spans_hundreds_of_thousands_to_tens_of_millions_of_params():
    space = spaces.get("cnn")
    rng = random.Random(0)
    counts = [space.count_params(space.sample(rng)) for _ in range(400)]
    assert min(counts) < 1_000_000 and max(counts) > 10_000_000


def test_a_few_default_candidates_build_with_exact_param_counts():
    space = spaces.get("cnn")
    rng = random.Random(1)
    x, _ = space.example_inputs(batch_size=1)
    for _ in range(3):
        s = space.sample(rng)
        model = space.build(s)
        assert param_count(model) == space.count_params(s)
    with torch.no_grad():
        assert model(x).shape == (1, 10)


def test_digits_preset_fits_8x8_grey_images_with_small_models():
    space = spaces.get("cnn", {"preset": "digits"})
    rng = random.Random(2)
    counts = [space.count_params(space.sample(rng)) for _ in range(300)]
    assert 1_000 < min(counts) and max(counts) < 400_000
    x, y = space.example_inputs(batch_size=4)
    assert x.shape == (4, 1, 8, 8) and y.max() < 10
    model = space.build(space.sample(rng))
    assert model(x).shape == (4, 10)


def test_plain_blocks_have_no_shortcut_and_residual_blocks_reshape_theirs():
    space = spaces.get("cnn", {"preset": "tiny"})
    plain = {
        "stem_channels": 8,
        "stages": [_stage(channels=8, residual=False), _stage(channels=16, residual=False)],
    }
    resid = {"stem_channels": 8, "stages": [_stage(channels=8), _stage(channels=16)]}
    # a strided stage with more channels needs a 1x1 conv + BN shortcut: 8*16 weights + 2*16 BN
    assert space.count_params(resid) - space.count_params(plain) == 8 * 16 + 2 * 16
    assert param_count(space.build(resid)) - param_count(space.build(plain)) == 8 * 16 + 2 * 16


def test_bottleneck_inner_width_follows_expansion():
    space = spaces.get("cnn", {"preset": "tiny"})
    s = {"stem_channels": 16, "stages": [_stage(block="bottleneck", expansion=0.5), _stage(channels=32)]}
    model = space.build(s)
    inner = model.blocks[0].body[1][0]
    assert inner.in_channels == inner.out_channels == 8 and inner.kernel_size == (3, 3)


def test_forward_features_is_the_last_stage_map():
    space = spaces.get("cnn", {"preset": "tiny"})
    s = {"stem_channels": 8, "stages": [_stage(), _stage(channels=24)]}
    x, _ = space.example_inputs(batch_size=2)
    assert space.build(s).forward_features(x).shape == (2, 24, 8, 8)


def test_invalid_stage_values_name_the_stage_key_and_choices():
    space = spaces.get("cnn", {"preset": "tiny"})
    s = {"stem_channels": 8, "stages": [_stage(channels=8), _stage(channels=16, kernel=9)]}
    with pytest.raises(StructureError, match=r"stages\[1\]\.kernel.*\[3, 5\]"):
        space.validate(s)
    with pytest.raises(StructureError, match=r"stages\[0\]\.channels"):
        space.validate({"stem_channels": 8, "stages": [_stage(channels=12), _stage()]})
    with pytest.raises(StructureError, match="stages"):
        space.validate({"stem_channels": 8, "stages": [_stage()]})
    with pytest.raises(StructureError, match=r"stages\[0\]"):
        space.validate({"stem_channels": 8, "stages": [{"kernel": 3}, _stage()]})
    with pytest.raises(StructureError, match="stem_channels: 8.0 must be of type int"):
        space.validate({"stem_channels": 8.0, "stages": [_stage(channels=8), _stage()]})
    with pytest.raises(StructureError, match=r"stages\[0\]\.expansion: 1 must be of type float"):
        space.validate({"stem_channels": 8, "stages": [_stage(expansion=1), _stage()]})


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"channels": [[8, 16]]}, "searchSpace.channels"),
        ({"channels": [[8, 12], [16]], "stage_strides": [1, 2]}, "searchSpace.channels[0]"),
        ({"kernel": [3, 4]}, "searchSpace.kernel"),
        ({"block": ["basic", "inverted"]}, "searchSpace.block"),
        ({"depth": {"min": 3, "max": 1}}, "searchSpace.depth"),
        ({"stage_strides": [1, 3]}, "searchSpace.stage_strides"),
        ({"expansion": [0]}, "searchSpace.expansion"),
        ({"image_size": 0}, "searchSpace.image_size"),
    ],
)
def test_invalid_overrides_name_the_key(overrides, key):
    with pytest.raises(StructureError) as err:
        spaces.get("cnn", {"preset": "tiny", **overrides})
    assert err.value.key == key


def test_overrides_narrow_the_space_with_fixed_values_and_ranges():
    space = spaces.get(
        "cnn",
        {"preset": "tiny", "depth": 2, "kernel": [7], "channels": [16, {"min": 32, "max": 48, "step": 8}]},
    )
    rng = random.Random(3)
    for _ in range(50):
        s = space.sample(rng)
        assert all(st["depth"] == 2 and st["kernel"] == 7 for st in s["stages"])
        assert s["stages"][0]["channels"] == 16 and s["stages"][1]["channels"] in (32, 40, 48)
        space.validate(space.mutate(s, rng, 0.5))
