"""The NAS-Bench-201 ground-truth table shipped with the project (`nb201.csv.gz`, provenance in
`NB201_README.md` beside it): one row per cell with its official accuracies, the 12-epoch CIFAR-10
validation accuracy (the short-training fidelity benchmarks may replay) and four Xeon latencies.

Every test and benchmark reads it through `load_nb201`, so a fresh clone has it and a missing
file is an error (tests fail, they do not skip)."""

from __future__ import annotations

import csv
import functools
import gzip
import io
from pathlib import Path

NB201_TABLE = Path(__file__).with_name("nb201.csv.gz")
ROWS = 15625


@functools.lru_cache(maxsize=1)
def _read() -> tuple[dict[str, str], ...]:
    if not NB201_TABLE.is_file():
        raise FileNotFoundError(
            f"{NB201_TABLE}: the NAS-Bench-201 table is missing from this checkout; restore it with "
            "`git checkout -- denas/data/nb201.csv.gz` (provenance: denas/data/NB201_README.md)"
        )
    with gzip.open(NB201_TABLE, "rb") as f:
        rows = tuple(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))
    if len(rows) != ROWS:
        raise ValueError(f"{NB201_TABLE}: {len(rows)} rows, expected {ROWS} (one per NAS-Bench-201 cell)")
    return rows


def load_nb201() -> list[dict[str, str]]:
    """Every row of the table (a fresh list of fresh dicts: callers may change them), in the
    NAS-Bench-201 API index order; values are strings as in the CSV."""
    return [dict(r) for r in _read()]
