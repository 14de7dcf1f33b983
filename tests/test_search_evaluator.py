"""The real scorer scores a candidate with its space's calibration and the user's weights."""

from __future__ import annotations

import random

import pytest
import torch

from denas import spaces
from denas.scores import resolve_weights, score_model
from denas.search.config import SearchConfig
from denas.search.evaluator import DeNASScorer


def _config(search_space: dict, weights: dict | None = None) -> SearchConfig:
    spec = {"domain": "cnn", "searchSpace": search_space, "score": {"batchSize": 4, "weights": weights or {}}}
    return SearchConfig.from_spec(spec)


def _reference(space, structure, seed, config, domain, weights=None):
    torch.manual_seed(seed)
    model = space.build(structure)
    inputs, targets = space.example_inputs(4, seed=config.seed)
    return score_model(model, inputs, targets, weights=weights, domain=domain, seed=seed)["de_score"]


def test_a_preset_is_scored_with_its_own_calibration():
    config = _config({"preset": "digits"})
    space = spaces.get("cnn", {"preset": "digits"})
    structure = space.sample(random.Random(1))
    scores, _ = DeNASScorer(measure=False)(space, structure, 7, config)
    assert scores["de_score"] == pytest.approx(_reference(space, structure, 7, config, "cnn/digits"))
    # the full space's calibration puts the same network elsewhere: the key matters
    assert scores["de_score"] != pytest.approx(_reference(space, structure, 7, config, "cnn"))


def test_user_weights_update_the_domain_defaults_instead_of_replacing_them():
    config = _config({"preset": "digits"}, weights={"diversity": 1.0})
    space = spaces.get("cnn", {"preset": "digits"})
    structure = space.sample(random.Random(2))
    scores, _ = DeNASScorer(measure=False)(space, structure, 3, config)
    expected = _reference(space, structure, 3, config, "cnn/digits", weights={"diversity": 1.0})
    assert scores["de_score"] == pytest.approx(expected)
    # the domain's default proxies are still computed beside the user's
    assert {*resolve_weights("cnn"), "diversity"} <= set(scores)
