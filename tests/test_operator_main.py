"""`denas-operator` argument handling: peering priorities must differ between replicas."""

from __future__ import annotations

from unittest import mock

import pytest
from denas_operator.__main__ import build_parser, main, peering_priority


def _priority(*argv: str) -> int:
    return peering_priority(build_parser().parse_args(["-A", *argv]))


def test_peering_without_priority_picks_a_random_positive_one_per_replica():
    # A Deployment gives every replica the same args; equal priorities make kopf pause them all.
    priorities = {_priority("--peering", "denas-operator") for _ in range(20)}
    assert len(priorities) > 1
    assert all(1 <= p <= 2**31 - 1 for p in priorities)


@pytest.mark.parametrize("argv", [("--peering", "ha", "--priority", "10"), ("--priority", "10")])
def test_an_explicit_priority_is_kept(argv):
    assert _priority(*argv) == 10


def test_standalone_keeps_priority_zero():
    assert _priority() == 0
    assert _priority("--standalone") == 0


def test_main_hands_the_chosen_priority_to_kopf():
    with mock.patch("kopf.run") as run:
        assert main(["-A", "--peering", "ha", "--metrics-port", "0", "--liveness", ""]) == 0
    kwargs = run.call_args.kwargs
    assert kwargs["peering_name"] == "ha" and not kwargs["standalone"]
    assert kwargs["priority"] > 0
