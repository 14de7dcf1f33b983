"""Plug-in search spaces: installed packages register spaces under the ``denas.spaces`` entry point group.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."denas.spaces"]
    mlp = "denas_space_mlp:MLPSpace"

The entry point's name is the space's name (what ``spec.domain`` says); its object is a
`denas.spaces.base.SearchSpace` subclass. Plug-ins are loaded lazily, the first time a name is
not among the built-in spaces (or when every space is listed), so a broken plug-in never breaks
``cnn`` & co. Each one is loaded once per process and passes a quick self-check of the contract
(`self_check`) before it is registered; a failure is a `PluginError` naming the entry point and
its package, which the CLI reports in one line (exit 2) before any work starts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import torch
from torch import nn

from denas.spaces.base import SearchSpace, StructureError

GROUP = "denas.spaces"
#: the methods a plug-in must implement (the abstract ones of `SearchSpace`)
REQUIRED_METHODS = (
    "sample",
    "mutate",
    "crossover",
    "validate",
    "build",
    "example_inputs",
    "count_params",
    "count_flops",
)


class PluginError(StructureError):
    """A plug-in space failed to import or broke the contract; names the entry point and package."""

    def __init__(self, name: str, package: str, message: str):
        self.name, self.package = name, package
        super().__init__(
            "domain",
            f"plug-in space '{name}' (entry point '{GROUP}' in package '{package}') {message}",
        )


class ContractError(Exception):
    """A plug-in's method returned something the engine cannot use."""


#: name -> package of every plug-in loaded successfully; name -> error of the broken ones
LOADED: dict[str, str] = {}
BROKEN: dict[str, PluginError] = {}
_scanned = False


def package_of(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value.split(":")[0]


def discover() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def load_all(registry: dict[str, Any], builtin: frozenset[str]) -> None:
    """Load and self-check every plug-in once; good ones go into ``registry``, bad ones into BROKEN."""
    global _scanned
    if _scanned:
        return
    _scanned = True
    for ep in discover():
        if ep.name in LOADED or ep.name in BROKEN:
            continue  # the same entry point seen twice (e.g. two paths to one package)
        package = package_of(ep)
        try:
            cls = load_one(ep, package, builtin)
        except PluginError as exc:
            BROKEN[ep.name] = exc
            continue
        registry[ep.name] = cls
        LOADED[ep.name] = package


def load_one(ep: EntryPoint, package: str, builtin: frozenset[str]) -> type[SearchSpace]:
    if ep.name in builtin:
        raise PluginError(ep.name, package, "reuses the name of a built-in space; rename the entry point")
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import-time failure of foreign code is reported
        raise PluginError(
            ep.name, package, f"failed to import {ep.value!r}: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, SearchSpace)):
        raise PluginError(
            ep.name, package, f"{ep.value!r} is not a subclass of denas.spaces.SearchSpace (got {obj!r})"
        )
    missing = [m for m in REQUIRED_METHODS if m in getattr(obj, "__abstractmethods__", ())]
    if missing:
        raise PluginError(ep.name, package, f"does not implement {', '.join(missing)}")
    # a subclass per entry point, so the name (which enters every structure hash) is the entry
    # point's even if the package's class says otherwise, and the package's class is not mutated
    cls = type(obj.__name__, (obj,), {"name": ep.name, "__module__": obj.__module__, "__doc__": obj.__doc__})
    try:
        self_check(cls)
    except (ContractError, StructureError) as exc:
        raise PluginError(ep.name, package, f"fails its self-check: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise PluginError(ep.name, package, f"fails its self-check: {type(exc).__name__}: {exc}") from None
    return cls


def self_check(cls: type[SearchSpace]) -> None:
    """A few cheap calls with the default configuration, checking the types the engine relies on."""

    def fail(message: str) -> ContractError:
        return ContractError(message)

    space = cls({})
    rng = random.Random(0)
    a, b = space.sample(rng), space.sample(rng)
    for what, s in (("sample", a), ("sample", b)):
        if not isinstance(s, dict):
            raise fail(f"{what}() returned {type(s).__name__}, expected a dict")
        space.validate(s)
        space.canonical(s)  # must be JSON-able
    child = space.mutate(a, rng)
    if not isinstance(child, dict):
        raise fail(f"mutate() returned {type(child).__name__}, expected a dict")
    space.validate(child)
    child = space.crossover(a, b, rng)
    if not isinstance(child, dict):
        raise fail(f"crossover() returned {type(child).__name__}, expected a dict")
    space.validate(child)
    pair = space.example_inputs(batch_size=2, seed=0)
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise fail("example_inputs() must return a pair (inputs, targets)")
    for method in ("count_params", "count_flops"):
        value = getattr(space, method)(a)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(f"{method}() returned {value!r}, expected a non-negative int")
    model = space.build(a)
    if not isinstance(model, nn.Module):
        raise fail(f"build() returned {type(model).__name__}, expected a torch.nn.Module")
    model.eval()
    with torch.no_grad():
        out = model(pair[0])
    if not isinstance(out, torch.Tensor) or out.shape[0] != 2:
        raise fail("the built model's forward(inputs) must return a tensor with the batch dimension first")


def origin(name: str) -> str | None:
    """The package a plug-in space comes from (None for a built-in space)."""
    return LOADED.get(name)


def problems() -> Mapping[str, PluginError]:
    return dict(BROKEN)


def reset() -> None:
    """Forget what was scanned (tests install plug-ins at run time)."""
    global _scanned
    _scanned = False
    LOADED.clear()
    BROKEN.clear()
