"""The job's data as training and scoring both see it: one code path for the two stages.

`load_task_data` loads ``spec.training.dataset`` shaped for a space, fits the space to it (the
head follows the data: 10 digit classes, SQuAD's vocabulary), and knows the task: its model
(span heads on the encoder for extractive QA) and its loss (`denas.train.tasks`: classification,
CTC, start/end spans). `denas train` trains on it; the search scores candidates on
`TaskData.scoring_batch`, one seeded batch of its training split, with that same loss, so a
train-free score sees the task the network will be trained for instead of a synthetic stand-in
(a frame-level cross-entropy for a CTC model, a classifier for a span model).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from denas.data import DataBundle, DataError, load_dataset
from denas.train.tasks import ClassificationTask, CTCTask, QATask, task_for

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    space: Any  # the space fitted to the data (its head and vocabulary follow the data)
    data: DataBundle
    dataset: dict[str, Any]

    @property
    def task(self) -> ClassificationTask | CTCTask | QATask:
        return task_for(self.data.task, self.data.info)

    @property
    def label(self) -> str:
        """How result.json names these inputs: ``dataset:<name>``."""
        return f"dataset:{self.dataset['name']}"

    def build(self, structure: dict[str, Any]) -> nn.Module:
        """The network the task trains: the space's model, with span heads for extractive QA."""
        return self.wrap(self.space.build(structure), structure)

    def wrap(self, model: nn.Module, structure: dict[str, Any]) -> nn.Module:
        if self.data.task == "qa":  # extractive QA needs per-token start/end heads on the encoder
            from denas.train.tasks import SpanQA

            return SpanQA(model)  # as wide as the built model (a structure may not hold hidden_size)
        return model

    def scoring_batch(self, batch_size: int, seed: int) -> tuple[Any, Any]:
        """``batch_size`` training samples drawn by ``seed`` and collated as training collates
        them: the same batch on every rank, for every candidate and after a resume. Never from
        the test split."""
        train = self.data.train
        n = len(train)  # type: ignore[arg-type]
        if n == 0:
            raise DataError(
                f"spec.training.dataset: data set {self.dataset['name']!r} has no training samples"
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        items = [train[int(i)] for i in order[: min(batch_size, n)]]
        collate = self.data.collate
        if collate is None:
            from torch.utils.data import default_collate

            collate = default_collate
        return collate(items)


def load_task_data(
    domain: str, overrides: Mapping[str, Any] | None, dataset: Mapping[str, Any], seed: int
) -> TaskData:
    """Load ``dataset`` (``spec.training.dataset``) for ``domain``'s space with ``overrides``
    (``spec.searchSpace``), the space fitted to it. Raises DataError when it cannot be loaded."""
    import denas.spaces

    overrides = dict(overrides or {})
    space = denas.spaces.get(domain, overrides)
    data = load_dataset(
        dataset["name"],
        path=dataset.get("path"),
        config=space.config,
        tokenizer=dataset.get("tokenizer"),
        limit=dataset.get("limit"),
        seed=seed,
    )
    fitted = {k: v for k, v in data.space_overrides.items() if k in space.config and space.config[k] != v}
    if fitted:
        log.info("fitting space configuration to the data: %s", fitted)
        space = denas.spaces.get(domain, {**overrides, **fitted})
    return TaskData(space=space, data=data, dataset=dict(dataset))
