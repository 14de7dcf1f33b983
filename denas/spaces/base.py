"""The search-space interface every domain implements, and the registry behind `denas.spaces.get`.

A *structure* is a plain JSON-able dict. Spaces never keep per-candidate state: every method is a
pure function of its arguments and the space's (immutable) configuration, so a candidate's score
can never depend on what was built or scored before it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

Structure = dict[str, Any]


class StructureError(ValueError):
    """A structure (or a space override) is invalid. The message names the key and the allowed values."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class SearchSpace(ABC):
    """One domain's search space.

    Subclasses declare their choices as data (a class-level ``DEFAULTS`` mapping) and accept
    ``overrides`` with the same keys (what a DeNASJob's ``spec.searchSpace`` carries).
    """

    name: str = ""
    #: "classification" (logits vs int labels), "ctc" (log-probs vs label sequences), ...
    task: str = "classification"
    #: the declarative table of choices and fixed dimensions; overrides may change any key
    DEFAULTS: Mapping[str, Any] = {}

    def __init__(self, overrides: Mapping[str, Any] | None = None):
        self.config = self._merge_config(dict(overrides or {}))

    # ----- configuration -------------------------------------------------------------------
    def _merge_config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(self.DEFAULTS) - {"preset"})
        if unknown:
            raise StructureError(
                f"searchSpace.{unknown[0]}",
                f"unknown key for space '{self.name}'; allowed keys: {sorted(self.DEFAULTS)}",
            )
        config = copy.deepcopy(dict(self.DEFAULTS))
        config.update(self.presets().get(overrides.pop("preset", None) or "", {}))
        config.update(copy.deepcopy(overrides))
        return config

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """Named bundles of overrides (e.g. ``tiny``); ``{"preset": name}`` selects one."""
        return {}

    # ----- sampling and variation --------------------------------------------------------
    @abstractmethod
    def sample(self, rng: random.Random) -> Structure: ...

    @abstractmethod
    def mutate(self, structure: Structure, rng: random.Random, prob: float = 0.3) -> Structure:
        """Return a new, valid structure; the input is not modified."""

    @abstractmethod
    def crossover(self, a: Structure, b: Structure, rng: random.Random) -> Structure:
        """Return a new, valid structure mixing ``a`` and ``b``."""

    @abstractmethod
    def validate(self, structure: Structure) -> None:
        """Raise StructureError naming the offending key and its allowed values."""

    # ----- models ------------------------------------------------------------------------
    @abstractmethod
    def build(self, structure: Structure) -> nn.Module: ...

    @abstractmethod
    def example_inputs(self, batch_size: int = 8, seed: int = 0) -> tuple[Any, Any]:
        """Synthetic (inputs, targets) of the right shape and dtype for this space's models."""

    @abstractmethod
    def count_params(self, structure: Structure) -> int:
        """Analytic parameter count; equals the built module's exactly."""

    @abstractmethod
    def count_flops(self, structure: Structure, batch_size: int = 1) -> int:
        """Analytic multiply-accumulate count of one forward pass."""

    def encode(self, structure: Structure) -> list[float]:
        """A fixed-length numeric vector (for surrogates and Bayesian samplers)."""
        raise NotImplementedError(f"space '{self.name}' has no numeric encoding")

    # ----- identity ----------------------------------------------------------------------
    def canonical(self, structure: Structure) -> str:
        """The canonical JSON text of a structure: sorted keys, no whitespace."""
        return json.dumps(structure, sort_keys=True, separators=(",", ":"))

    def hash(self, structure: Structure) -> str:
        """A stable 16-hex-digit id of the structure within this space."""
        text = f"{self.name}:{self.canonical(structure)}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def from_json(self, text: str) -> Structure:
        structure = json.loads(text)
        self.validate(structure)
        return structure


_REGISTRY: dict[str, Callable[..., SearchSpace]] = {}


def register(name: str) -> Callable[[type[SearchSpace]], type[SearchSpace]]:
    def decorator(cls: type[SearchSpace]) -> type[SearchSpace]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def get(name: str, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """The space registered as ``name`` (``cnn``, ``vit``, ``bert``, ``asr``, ``nb201``)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise StructureError("domain", f"unknown space '{name}'; choose one of {sorted(_REGISTRY)}") from None
    return factory(overrides)


def names() -> list[str]:
    return sorted(_REGISTRY)


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

