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
    #: named bundles of overrides, selected with ``{"preset": name}``
    PRESETS: Mapping[str, Mapping[str, Any]] = {}

    def __init__(self, overrides: Mapping[str, Any] | None = None):
        self.config = self._merge_config(dict(overrides or {}))
        self.check_config()

    # ----- configuration -------------------------------------------------------------------
    def _merge_config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(self.DEFAULTS) - {"preset"})
        if unknown:
            raise StructureError(
                f"searchSpace.{unknown[0]}",
                f"unknown key for space '{self.name}'; allowed keys: {sorted(self.DEFAULTS)}",
            )
        config = copy.deepcopy(dict(self.DEFAULTS))
        preset = overrides.pop("preset", None)
        if preset is not None:
            if preset not in self.presets():
                raise StructureError(
                    "searchSpace.preset",
                    f"unknown preset {preset!r} for space '{self.name}'; choose one of {sorted(self.presets())}",
                )
            config.update(copy.deepcopy(self.presets()[preset]))
        config.update(copy.deepcopy(overrides))
        return config

    @property
    def num_outputs(self) -> int:
        """Width of the logits' last dimension: classes, labels, or the CTC vocabulary."""
        return int(self.config["num_classes"])

    def check_config(self) -> None:
        """Raise StructureError(``searchSpace.<key>``, ...) if the merged configuration is unusable."""
        return None

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """Named bundles of overrides (e.g. ``tiny``); ``{"preset": name}`` selects one."""
        return copy.deepcopy(dict(cls.PRESETS))

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

    # ----- models ----
    # Every built module returns logits (or log-probs for ``task == "ctc"``) from ``forward`` and
    # exposes ``forward_features(inputs)``: the feature map before pooling / the head.  ``inputs``
    # is whatever ``example_inputs`` returns first: one tensor, or for ``bert`` a dict of tensors
    # (``input_ids``, ``attention_mask``, ``token_type_ids``).  Calling convention for every
    # space: ``model(inputs)`` -- one positional argument, a tensor or that dict.  (The bert
    # wrapper also accepts ``model(**inputs)`` and a bare ``input_ids`` tensor.)--------------------------------------------------------------------
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
        """Analytic multiply-accumulates (MACs) of one forward pass of ``batch_size`` examples.

        Convolutions and matmuls (attention's QK^T and weights @ V included) count; norms,
        activations, pooling and additions do not.  This equals half of what
        ``torch.utils.flop_counter.FlopCounterMode`` reports for the built module.
        """

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


# ----- helpers shared by the spaces' declarative choice tables ---------------------------------
def expand_choices(value: Any, key: str) -> list[Any]:
    """A choice table entry: a list of values, an inclusive ``{"min", "max", "step"}`` range, or one
    fixed value."""
    if isinstance(value, (int, float, str)):
        return [value]
    if isinstance(value, Mapping):
        if set(value) - {"min", "max", "step"} or not {"min", "max"} <= set(value):
            raise StructureError(
                f"searchSpace.{key}",
                f"a range needs integer 'min' and 'max' (and optional 'step'), got {dict(value)}",
            )
        lo, hi, step = value["min"], value["max"], value.get("step", 1)
        if not all(_is_int(v) for v in (lo, hi, step)) or step <= 0 or lo > hi:
            raise StructureError(
                f"searchSpace.{key}", f"range needs integers with min <= max and step > 0, got {dict(value)}"
            )
        return list(range(lo, hi + 1, step))
    if isinstance(value, (list, tuple)) and value:
        return list(value)
    raise StructureError(
        f"searchSpace.{key}", f"expected a non-empty list of choices or a range, got {value!r}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(config: Mapping[str, Any], key: str, lo: int = 1, hi: int | None = None) -> int:
    """The fixed integer ``config[key]``, checked to lie in ``[lo, hi]``."""
    value = config[key]
    if not _is_int(value) or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise StructureError(f"searchSpace.{key}", f"must be an integer {bound}, got {value!r}")
    return value


def check_int_choices(
    config: Mapping[str, Any], key: str, lo: int = 1, hi: int | None = None, multiple_of: int = 1
) -> list[int]:
    """The expanded integer choices of ``config[key]``, each checked to lie in ``[lo, hi]``."""
    values = expand_choices(config[key], key)
    for v in values:
        if not _is_int(v) or v < lo or (hi is not None and v > hi) or v % multiple_of:
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            extra = f" and a multiple of {multiple_of}" if multiple_of > 1 else ""
            raise StructureError(
                f"searchSpace.{key}", f"every choice must be an integer {bound}{extra}, got {v!r}"
            )
    return sorted(set(values))


def check_choice(key: str, value: Any, allowed: list[Any]) -> None:
    """Raise a StructureError naming ``key`` unless ``value`` is one of ``allowed`` (same type too)."""
    same_type = any(type(value) is type(a) for a in allowed)
    if not same_type and value in allowed:
        # 1 vs 1.0 would hash differently, so a structure must use the table's own type
        kind = type(allowed[0]).__name__
        raise StructureError(key, f"{value!r} must be of type {kind}; choose one of {allowed}")
    if not same_type or value not in allowed:
        raise StructureError(key, f"{value!r} is not allowed; choose one of {allowed}")


_REGISTRY: dict[str, Callable[..., SearchSpace]] = {}


def register(name: str) -> Callable[[type[SearchSpace]], type[SearchSpace]]:
    def decorator(cls: type[SearchSpace]) -> type[SearchSpace]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


#: the spaces registered by denas itself (frozen at the first plug-in scan)
_BUILTIN: frozenset[str] | None = None


def _load_plugins() -> None:
    """Register the ``denas.spaces`` entry points (once; see `denas.spaces.plugins`)."""
    global _BUILTIN
    from denas.spaces import plugins

    if _BUILTIN is None:
        _BUILTIN = frozenset(_REGISTRY)
    plugins.load_all(_REGISTRY, _BUILTIN)


def get(name: str, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """The space registered as ``name`` (``cnn``, ``vit``, ``bert``, ``asr``, ``nb201``, or a plug-in's)."""
    if name not in _REGISTRY:  # built-ins never wait for (or trip over) plug-ins
        _load_plugins()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        from denas.spaces import plugins

        if name in plugins.BROKEN:
            raise plugins.BROKEN[name] from None
        raise StructureError(
            "domain",
            f"unknown space '{name}'; choose one of {sorted(_REGISTRY)} "
            f"(or install a package declaring it under the '{plugins.GROUP}' entry point group)",
        ) from None
    return factory(overrides)


def names() -> list[str]:
    """Every usable space: the built-ins and the plug-ins that loaded and passed their self-check."""
    _load_plugins()
    return sorted(_REGISTRY)


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def step_genes(
    structure: Structure,
    rng: random.Random,
    prob: float,
    genes: list[str],
    choices_of: Callable[[str, Structure], list[Any]],
) -> Structure:
    """A copy of a flat structure with each of ``genes`` stepped with probability ``prob``.

    One gene, drawn first, always changes, so a mutant differs from its parent whenever any gene
    can. ``choices_of(gene, partial)`` gives a gene's allowed values, which may depend on genes
    already stepped (e.g. BERT heads must divide the hidden size).
    """
    out = dict(structure)
    if not genes:
        return out
    forced = rng.choice(genes)
    for k in genes:
        if k == forced or rng.random() < prob:
            out[k] = step_choice(rng, out[k], choices_of(k, out))
    return out


def step_choice(rng: random.Random, value: Any, choices: list[Any]) -> Any:
    """A different value from ``choices``: a nearby one for ordered numbers, any other otherwise.

    Local steps keep evolutionary search from jumping across a wide range (a 16..512 channel
    range has 63 values) while still reaching every value over a few generations.
    """
    others = [c for c in choices if c != value]
    if not others:
        return value
    numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
    if not numeric or value not in choices:
        return rng.choice(others)
    ordered = sorted(choices)
    i = ordered.index(value)
    j = min(max(i + rng.choice([-2, -1, 1, 2]), 0), len(ordered) - 1)
    return ordered[j] if j != i else rng.choice(others)
