"""Which calibration a job's space gets: its preset's, also when the overrides spell one out."""

from __future__ import annotations

import logging

import pytest

from denas import spaces
from denas.scores import descore
from denas.scores.descore import domain_key

TINY = spaces.get("nb201").presets()["tiny"]


def test_a_preset_named_or_spelled_out_gets_the_preset_calibration():
    assert domain_key("nb201", {"preset": "tiny"}) == "nb201/tiny"
    assert domain_key("nb201", dict(TINY)) == "nb201/tiny"  # the same networks, written key by key
    assert domain_key("cnn", {"preset": "digits"}) == "cnn/digits"
    assert descore.calibration(domain_key("nb201", dict(TINY))) == descore.calibration("nb201/tiny")


def test_defaults_written_out_are_the_domain_and_unknown_configurations_warn(caplog):
    assert domain_key("nb201") == "nb201"
    default_channels = spaces.get("nb201").config["channels"]
    assert domain_key("nb201", {"channels": default_channels}) == "nb201"
    with caplog.at_level(logging.WARNING, logger="denas.scores.descore"):
        assert domain_key("nb201", {"channels": 24, "image_size": 16}) == "nb201"
    assert "match no calibrated configuration" in caplog.text and "choose a preset" in caplog.text


@pytest.mark.parametrize("bad", [{"no_such_key": 1}, {"preset": None, "channels": -3}])
def test_invalid_overrides_fall_back_to_the_domain_and_fail_where_the_space_is_built(bad):
    assert domain_key("nb201", bad) == "nb201"
    with pytest.raises(ValueError):
        spaces.get("nb201", bad)
