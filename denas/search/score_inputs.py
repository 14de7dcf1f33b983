"""What a search scores its candidates on: a batch of the job's data with the training loss, or
a synthetic batch when the job has no data.

With ``spec.training.dataset`` (the job trains), every candidate is built as training builds it
(the space fitted to the data, span heads for QA) and scored on one seeded batch of the data's
training split with the task's loss (`denas.train.taskdata`: CTC for speech, start/end spans
for SQuAD, cross-entropy for classification). Without it, the space's synthetic batch and the
default loss (seeded labels) stand in. result.json names which under ``scoreInputs``.

The batch depends only on the data set, the space, ``spec.score.batchSize`` and the search
seed, so every rank, every candidate and a resumed search see the same one. Loaded once per
process and setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from denas.search.config import SearchConfig, SearchError

SYNTHETIC = "synthetic"


@dataclass
class ScoreInputs:
    label: str  # "dataset:<name>" or "synthetic"
    inputs: Any
    targets: Any
    loss_fn: Callable[[Any, Any], Any] | None  # None: score_model's default loss
    plain: Callable[[dict], Any]  # structure -> the space's module (latency measures it)
    wrap: Callable[[Any, dict], Any]  # (that module, structure) -> the module the task trains

    def build(self, structure: dict) -> tuple[Any, Any]:
        """(the module that is scored, the space's module inside it)."""
        model = self.plain(structure)
        return self.wrap(model, structure), model


_CACHE: dict[str, ScoreInputs] = {}


def label(config: SearchConfig) -> str:
    return f"dataset:{config.dataset['name']}" if config.dataset else SYNTHETIC


def score_inputs(space: Any, config: SearchConfig) -> ScoreInputs:
    """The inputs, targets, loss and model builder every candidate of this search is scored with.
    Raises SearchError naming ``spec.training.dataset`` when the data cannot be loaded."""
    batch_size = int(config.score.get("batchSize", 16))
    key = json.dumps(
        [config.domain, config.search_space, config.dataset, batch_size, config.seed],
        sort_keys=True,
        default=str,
    )
    if key in _CACHE:
        return _CACHE[key]
    if not config.dataset:
        inputs, targets = space.example_inputs(batch_size, seed=config.seed)
        result = ScoreInputs(SYNTHETIC, inputs, targets, None, space.build, lambda model, _s: model)
    else:
        from denas.data import DataError
        from denas.train.taskdata import load_task_data

        try:
            task_data = load_task_data(config.domain, config.search_space, config.dataset, config.seed)
            inputs, targets = task_data.scoring_batch(batch_size, config.seed)
        except DataError as e:
            raise SearchError(
                f"spec.training.dataset: candidates are scored on the job's data, which cannot be loaded: {e}"
            ) from None
        result = ScoreInputs(
            task_data.label, inputs, targets, task_data.task.loss, task_data.space.build, task_data.wrap
        )
    _CACHE[key] = result
    return result
