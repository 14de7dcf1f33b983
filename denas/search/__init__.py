"""Hardware-aware, train-free search: strategies over any space, scoring over torch.distributed ranks.

    from denas.search import SearchConfig, run_search
    result = run_search(SearchConfig.from_spec(job.spec), "runs/x")

``result`` is what ``result.json`` holds (best first); see `denas.search.runner`.
"""

from denas.search.config import Constraints, SearchConfig, SearchError
from denas.search.runner import run_search
from denas.search.strategies import STRATEGIES

__all__ = ["STRATEGIES", "Constraints", "SearchConfig", "SearchError", "run_search"]
