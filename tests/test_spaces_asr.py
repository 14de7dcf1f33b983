"""ASR space specifics: CTC vocabulary and head, front ends, conformer conv module."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

import denas.spaces as spaces
from denas.spaces.asr import BLANK, VOCAB, greedy_decode, text_to_ids
from denas.spaces.base import StructureError, param_count


def _s(**kw):
    base = {"num_layers": 1, "dim": 16, "heads": 1, "ffn_dim": 32, "conv_kernel": 3, "subsampling": "conv1d"}
    return {**base, **kw}


def test_vocabulary_is_blank_space_letters_apostrophe():
    assert VOCAB[BLANK] == "<blank>" and len(VOCAB) == 29
    assert set(VOCAB[1:]) == set(" abcdefghijklmnopqrstuvwxyz'")
    assert spaces.get("asr").num_outputs == 29


def test_text_ids_and_greedy_decoding_round_trip():
    ids = text_to_ids("Don't panic!")
    assert BLANK not in ids and "".join(VOCAB[i] for i in ids) == "don't panic"
    # a best path with repeats and blanks between them
    path = [BLANK, ids[0], ids[0], BLANK] + [i for c in ids[1:] for i in (c, BLANK)]
    log_probs = torch.full((len(path), len(VOCAB)), -10.0)
    log_probs[torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert greedy_decode(log_probs) == "don't panic"


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("kind", ["conv1d", "conv2d", "stack"])
def test_every_front_end_emits_ceil_frames_over_factor(kind, factor):
    space = spaces.get("asr", {"preset": "tiny", "subsampling_factor": factor, "frames": 37})
    s = _s(subsampling=kind)
    model = space.build(s)
    x, targets = space.example_inputs(batch_size=2)
    assert space.output_frames == math.ceil(37 / factor) == targets.shape[1]
    assert model(x).shape == (2, space.output_frames, 29)
    assert param_count(model) == space.count_params(s)


def test_models_accept_other_utterance_lengths():
    space = spaces.get("asr", {"preset": "tiny"})
    model = space.build(_s(subsampling="stack"))
    assert model(torch.randn(1, 101, 16)).shape == (1, 26, 29)


def test_conv_kernel_zero_is_a_plain_transformer_layer():
    space = spaces.get("asr", {"preset": "tiny"})
    plain, conformer = space.build(_s(conv_kernel=0)), space.build(_s(conv_kernel=5))
    assert not hasattr(plain.layers[0], "conv") and conformer.layers[0].conv.depthwise.kernel_size == (5,)
    assert space.count_params(_s(conv_kernel=5)) > space.count_params(_s(conv_kernel=0))


def test_output_trains_with_ctc_loss():
    space = spaces.get("asr", {"preset": "tiny"})
    model = space.build(space.sample(random.Random(0)))
    features, _ = space.example_inputs(batch_size=2)
    log_probs = model(features)
    labels = torch.tensor([text_to_ids("hi there"), text_to_ids("a cat ok")])
    loss = F.ctc_loss(
        log_probs.transpose(0, 1),
        labels,
        torch.full((2,), log_probs.shape[1]),
        torch.full((2,), labels.shape[1]),
        blank=BLANK,
    )
    loss.backward()
    assert torch.isfinite(loss) and model.head.weight.grad is not None


def test_default_space_builds_a_conformer_sized_model():
    space = spaces.get("asr")
    s = {"num_layers": 12, "dim": 144, "heads": 4, "ffn_dim": 640, "conv_kernel": 31, "subsampling": "conv2d"}
    model = space.build(s)
    assert param_count(model) == space.count_params(s)
    features, targets = space.example_inputs(batch_size=1)
    assert features.shape == (1, 400, 80) and targets.shape == (1, 100)


def test_invalid_structures_and_overrides_name_the_key():
    space = spaces.get("asr", {"preset": "tiny"})
    with pytest.raises(StructureError, match=r"subsampling.*conv1d"):
        space.validate(_s(subsampling="lstm"))
    with pytest.raises(StructureError, match=r"conv_kernel.*\[0, 3, 5\]"):
        space.validate(_s(conv_kernel=31))
    for overrides, key in [
        ({"subsampling_factor": 3}, "searchSpace.subsampling_factor"),
        ({"conv_kernel": [0, 4]}, "searchSpace.conv_kernel"),
        ({"subsampling": ["conv1d", "rnn"]}, "searchSpace.subsampling"),
        ({"dim": [15]}, "searchSpace.dim"),
        ({"n_mels": -1}, "searchSpace.n_mels"),
    ]:
        with pytest.raises(StructureError) as err:
            spaces.get("asr", {"preset": "tiny", **overrides})
        assert err.value.key == key
