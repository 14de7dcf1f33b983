"""`denas score JOB.yaml [--structure JSON | --random N] [--proxies a,b] [--json]`.

Scores structures of the job's space through the search's own scorer (`denas.search.evaluator`:
the same per-structure seed, scoring batch — the job's training data with the training loss when
it trains, else a synthetic batch (`denas.search.score_inputs`) —, weights, calibration and
domain key), so a structure gets exactly the DE-Score the search gave it. Prints a table with human-readable
numbers (89.8k params, 3.21 MFLOPs), or JSON lines with the raw values (``--json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="DeNASJob manifest (YAML or JSON)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--structure", help="one structure as JSON text, or a result.json whose 'best' to score"
    )
    which.add_argument(
        "--random", type=int, metavar="N", help="score N structures sampled from the space (default 5)"
    )
    parser.add_argument(
        "--proxies",
        help="comma-separated proxies to show besides the DE-Score (default: the job's spec.score.proxies)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="search seed: sampling, the scoring batch and each structure's weights (default: the job's "
        "spec.search.seed, so scores equal the search's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads while scoring (default: the search's, from the result.json given to "
        "--structure, else OMP_NUM_THREADS or every CPU); float32 sums depend on it in the last digits",
    )
    parser.add_argument(
        "--no-latency", action="store_true", help="skip the latency measurement (faster; no latency column)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON lines (raw values) instead of a table"
    )


class ScoreArgError(ValueError):
    """A bad command-line value; the message names the flag."""


def _given_structures(args: argparse.Namespace) -> tuple[list[dict] | None, int | None]:
    """The structures of --structure (None with --random) and the threads of the search that
    scored them (a result.json's ``threads``); checks the flags without torch."""
    if args.threads is not None and args.threads < 1:
        raise ScoreArgError(f"--threads: Invalid value: {args.threads}: must be >= 1")
    if not args.structure:
        if args.random is not None and args.random < 1:
            raise ScoreArgError(f"--random: Invalid value: {args.random}: must be >= 1")
        return None, None
    text = args.structure
    if not text.lstrip().startswith(("{", "[")):
        if not Path(text).is_file():
            raise ScoreArgError(
                f"--structure {text}: no such file; pass a structure as JSON text or a result.json"
            )
        text = Path(text).read_text()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScoreArgError(
            f"--structure: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(obj, dict):
        raise ScoreArgError("--structure: expected a JSON object (a structure or a result.json)")
    best = obj.get("best")
    if best is not None and not all(
        isinstance(b, dict) and isinstance(b.get("structure"), dict) for b in best
    ):
        raise ScoreArgError("--structure: the result's 'best' entries hold no 'structure'")
    if best is None:
        return [obj], None
    threads = obj.get("threads")
    return [b["structure"] for b in best], threads if isinstance(threads, int) and threads > 0 else None


def _structures(space: Any, given: list[dict] | None, n: int | None, seed: int) -> list[dict]:
    if given is not None:
        for s in given:
            space.validate(s)
        return given
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(5 if n is None else n)]


def _config(spec: dict[str, Any], args: argparse.Namespace):
    """The search's view of the job, with --proxies / --seed applied."""
    from denas import preflight
    from denas.search.config import SearchConfig

    spec = copy.deepcopy(spec)
    if args.proxies:
        proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
        problems = preflight.score_problems({"proxies": proxies})
        if problems:
            raise ScoreArgError("--proxies: " + problems[0].split(": ", 1)[1])
        spec.setdefault("score", {})["proxies"] = proxies
    if args.seed is not None:
        if args.seed < 0:
            raise ScoreArgError(f"--seed: Invalid value: {args.seed}: must be >= 0")
        spec.setdefault("search", {})["seed"] = args.seed
    return SearchConfig.from_spec(spec)


def run(args: argparse.Namespace) -> int:
    from denas import preflight
    from denas.job import JobValidationError
    from denas.search.config import SearchError

    try:  # the manifest and the flags first: a mistake is reported before torch is imported
        job = preflight.load_checked_job(args.job, local=False, engine=False)
        config = _config(job.spec, args)
        given, search_threads = _given_structures(args)
    except (JobValidationError, SearchError, ScoreArgError, OSError) as e:
        print(f"denas score: error: {e}", file=sys.stderr)
        return 2
    import torch

    from denas import spaces
    from denas.scores import ScoreInputError, UnknownProxyError, WeightError
    from denas.search.distributed import default_threads
    from denas.search.evaluator import DeNASScorer, Evaluator
    from denas.search.runner import load_space

    torch.set_num_threads(args.threads or search_threads or default_threads())

    try:
        space = load_space(config)
        structures = _structures(space, given, args.random, config.seed)
        # the search's scorer, seeds and batch: the same structure gets the same DE-Score
        evaluator = Evaluator(space, config, DeNASScorer(measure=not args.no_latency))
        evaluator.prepare()  # the job's data loads, or one error naming spec.training.dataset
        inputs = evaluator.inputs_label()
        if not args.json:
            print(f"scored on: {inputs}", file=sys.stderr)
        rows = []
        for structure in structures:
            record = evaluator.evaluate(structure)
            row = {
                "hash": record["hash"],
                "params": record["params"],
                "flops": record["flops"],
                "latency_ms": record["latency_ms"],
                **record["scores"],
                "fitness": record["fitness"],
                "structure": structure,
            }
            if args.no_latency:
                row.pop("latency_ms")
            rows.append(row)
            if args.json:
                print(json.dumps({**row, "scoreInputs": inputs}), flush=True)
    except (
        JobValidationError,
        SearchError,
        ScoreArgError,
        spaces.StructureError,
        UnknownProxyError,
        WeightError,
        ScoreInputError,
        OSError,
    ) as e:
        print(f"denas score: error: {e}", file=sys.stderr)
        return 2
    if not args.json:
        print(format_table(rows))
    return 0


def format_table(rows: list[dict]) -> str:
    """Rows best first, with human-readable numbers (`denas.units`)."""
    from denas import units

    formats = {
        "params": units.count,
        "flops": units.flops,
        "latency_ms": units.milliseconds,
    }
    headers = {"latency_ms": "latency", "de_score": "DE-Score"}
    keys = [k for k in rows[0] if k not in ("structure", "hash", "fitness")]
    keys = [k for k in keys if k != "de_score"] + ["de_score"]
    if any(r["fitness"] != r.get("de_score") for r in rows):  # a latency weight: show what ranks
        keys.append("fitness")
    table = [["hash", *(headers.get(k, k) for k in keys)]]
    for row in sorted(rows, key=lambda r: -(r["fitness"] if r["fitness"] is not None else float("-inf"))):
        table.append([row["hash"], *(formats.get(k, units.score)(row.get(k)) for k in keys)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in table
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
