"""One registry of search strategies: ``STRATEGIES[name](config)``; importing a module registers it."""

from denas.search.strategies import evolution, optuna_search  # noqa: E402,F401  (registration)
from denas.search.strategies.base import (
    STRATEGIES,
    Context,
    Strategy,
    create,
    fitness_key,
    rank_records,
    register,
)

__all__ = ["STRATEGIES", "Context", "Strategy", "create", "fitness_key", "rank_records", "register"]
