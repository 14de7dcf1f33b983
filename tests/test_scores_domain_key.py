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


def test_a_preset_without_its_own_calibration_warns_once_naming_the_fallback(caplog, monkeypatch):
    monkeypatch.setattr(descore, "_WARNED", set())
    assert "vit/wide" not in descore.CALIBRATION  # a preset nobody measured
    with caplog.at_level(logging.WARNING, logger="denas.scores.descore"):
        assert descore.calibration("vit/wide") == descore.calibration("vit")
        descore.percentile("complexity", 0.5, "vit/wide")
    warnings = [r.getMessage() for r in caplog.records if "no DE-Score calibration" in r.getMessage()]
    assert len(warnings) == 1
    assert "'vit/wide'" in warnings[0] and "the 'vit' calibration" in warnings[0]
    assert "calibrate_scales.py --preset wide vit" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="denas.scores.descore"):
        descore.calibration("vit/digits")  # measured: no warning
        descore.calibration("cnn/digits")
    assert "no DE-Score calibration" not in caplog.text


@pytest.mark.parametrize(
    "key", [f"{d}/{p}" for d in ("cnn", "vit", "bert", "asr", "nb201") for p in spaces.get(d).presets()]
)
def test_every_shipped_preset_has_its_own_calibration_or_warns(key, caplog, monkeypatch):
    monkeypatch.setattr(descore, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="denas.scores.descore"):
        descore.calibration(key)
    assert (key in descore.CALIBRATION) != ("no DE-Score calibration" in caplog.text)
