"""Behaviour every search space shares, checked on seeded samples of each registered space."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import denas.spaces as spaces
from denas.spaces.base import StructureError, param_count

# (space, overrides for fast builds, samples checked analytically, samples built and run)
CASES = [
    ("nb201", {"preset": "tiny"}, 300, 24),
    ("cnn", {"preset": "tiny"}, 300, 24),
    ("vit", {"preset": "tiny"}, 300, 24),
    ("bert", {"preset": "tiny"}, 300, 10),
    ("asr", {"preset": "tiny"}, 300, 16),
    ("huggingface", {"preset": "tiny"}, 40, 6),
]
SPACES = [case[0] for case in CASES]


def _forward(model: torch.nn.Module, inputs):
    return model(inputs)


@pytest.fixture(params=CASES, ids=SPACES)
def case(request):
    name, overrides, n_analytic, n_build = request.param
    return spaces.get(name, overrides), n_analytic, n_build


def test_every_space_is_registered():
    assert set(SPACES) <= set(spaces.names())


def test_samples_are_valid_and_round_trip_through_json_with_the_same_hash(case):
    space, n, _ = case
    rng = random.Random(0)
    lengths = set()
    for _ in range(n):
        s = space.sample(rng)
        space.validate(s)
        text = space.canonical(s)
        back = space.from_json(text)
        assert back == s and space.hash(back) == space.hash(s)
        assert json.loads(json.dumps(s)) == s
        lengths.add(len(space.encode(s)))
        assert space.count_params(s) > 0 and space.count_flops(s) > 0
    assert len(lengths) == 1


def test_mutation_and_crossover_stay_valid_and_leave_parents_untouched(case):
    space, n, _ = case
    rng = random.Random(1)
    changed = 0
    for _ in range(n // 2):
        a, b = space.sample(rng), space.sample(rng)
        a_text, b_text = space.canonical(a), space.canonical(b)
        m = space.mutate(a, rng, 0.3)
        c = space.crossover(a, b, rng)
        space.validate(m)
        space.validate(c)
        changed += space.hash(m) != space.hash(a)
        assert space.canonical(a) == a_text and space.canonical(b) == b_text
    assert changed >= n // 4  # mutation actually moves through the space


def test_meta_built_default_models_match_analytic_params(case):
    # shapes only, so the default (full-size) configuration can be checked for many samples
    space, n, _ = case
    space = spaces.get(space.name)
    rng = random.Random(6)
    for _ in range(n // 6):
        s = space.sample(rng)
        with torch.device("meta"):
            model = space.build(s)
        assert param_count(model) == space.count_params(s), s


def test_built_models_match_analytic_params_and_produce_outputs(case):
    space, _, n = case
    rng = random.Random(2)
    inputs, targets = space.example_inputs(batch_size=2, seed=0)
    for _ in range(n):
        s = space.sample(rng)
        model = space.build(s)
        assert param_count(model) == space.count_params(s), s
        with torch.no_grad():
            out = _forward(model, inputs)
            feats = model.forward_features(inputs)
        assert out.shape[0] == 2 and torch.isfinite(out).all()
        assert isinstance(feats, torch.Tensor) and feats.shape[0] == 2
        if space.task == "classification":
            assert out.shape == (2, space.num_outputs)
            assert targets.shape == (2,) and targets.dtype == torch.long
        else:  # ctc: per-frame log-probabilities, frame-level targets of the same length
            assert out.shape == (2, space.output_frames, space.num_outputs)
            assert torch.allclose(out.exp().sum(-1), torch.ones(out.shape[:2]), atol=1e-5)
            assert targets.shape == out.shape[:2] and targets.dtype == torch.long


def test_analytic_flops_agree_with_torch_flop_counter(case):
    space, _, n = case
    rng = random.Random(3)
    inputs, _ = space.example_inputs(batch_size=1, seed=0)
    for _ in range(min(n, 10)):
        s = space.sample(rng)
        model = space.build(s).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            _forward(model, inputs)
        measured = counter.get_total_flops() / 2
        assert space.count_flops(s) == pytest.approx(measured, rel=1e-6), s


def test_a_build_does_not_depend_on_what_was_built_before(case):
    space, _, _ = case
    rng = random.Random(4)
    a, b = space.sample(rng), space.sample(rng)
    inputs, _ = space.example_inputs(batch_size=2, seed=0)
    torch.manual_seed(0)
    first = space.build(a).eval()
    space.build(b)
    torch.manual_seed(0)
    again = space.build(a).eval()
    with torch.no_grad():
        assert torch.equal(_forward(first, inputs), _forward(again, inputs))


def test_example_inputs_are_seeded(case):
    space, _, _ = case
    x1, y1 = space.example_inputs(batch_size=3, seed=5)
    x2, y2 = space.example_inputs(batch_size=3, seed=5)
    flat1 = x1.values() if isinstance(x1, dict) else [x1]
    flat2 = x2.values() if isinstance(x2, dict) else [x2]
    assert all(torch.equal(u, v) for u, v in zip(flat1, flat2)) and torch.equal(y1, y2)


@pytest.mark.parametrize("name", SPACES)
def test_unknown_override_key_is_named(name):
    with pytest.raises(StructureError, match=r"searchSpace\.no_such_key"):
        spaces.get(name, {"no_such_key": 1})


@pytest.mark.parametrize("name", SPACES)
def test_unknown_preset_is_named(name):
    with pytest.raises(StructureError, match=r"searchSpace\.preset.*tiny"):
        spaces.get(name, {"preset": "huge-nonexistent"})


@pytest.mark.parametrize("name", SPACES)
def test_structures_with_missing_or_extra_keys_are_rejected(name):
    space = spaces.get(name, {"preset": "tiny"})
    s = space.sample(random.Random(0))
    with pytest.raises(StructureError):
        space.validate({**s, "bogus": 1})
    key = sorted(s)[0]
    with pytest.raises(StructureError):
        space.validate({k: v for k, v in s.items() if k != key})
    with pytest.raises(StructureError):
        space.validate([1, 2, 3])


def test_unknown_space_lists_the_choices():
    with pytest.raises(StructureError, match="nb201"):
        spaces.get("resnet-9000")
