"""`denas score JOB.yaml [--structure JSON | --random N] [--proxies a,b] [--json]`.

Scores structures of the job's space exactly as the search does (the job's batch size and
weights, seeded weights, and the search's scoring batch: the job's training data with the
training loss when it trains, else a synthetic batch; `denas.search.score_inputs`) and prints a
table, or JSON with ``--json`` (each line names its ``scoreInputs``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
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
        "--proxies", help="comma-separated proxies (default: the job's, else the DE-Score components)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling and scoring seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def _structures(space: Any, args: argparse.Namespace) -> list[dict]:
    if args.structure:
        text = args.structure
        if not text.lstrip().startswith("{"):
            with open(text) as f:
                text = f.read()
        obj = json.loads(text)
        found = [b["structure"] for b in obj["best"]] if "best" in obj else [obj]
        for s in found:
            space.validate(s)
        return found
    n = 5 if args.random is None else args.random
    if n < 1:
        raise ValueError(f"--random: Invalid value: {n}: must be >= 1")
    rng = random.Random(args.seed)
    return [space.sample(rng) for _ in range(n)]


def run(args: argparse.Namespace) -> int:
    import torch

    from denas import spaces
    from denas.job import JobValidationError, load_job
    from denas.scores import ScoreInputError, UnknownProxyError, WeightError, score_model
    from denas.scores.descore import domain_key
    from denas.search.config import SearchConfig
    from denas.search.score_inputs import score_inputs

    try:
        spec = load_job(args.job).spec
        space = spaces.get(spec["domain"], spec.get("searchSpace") or {})
        structures = _structures(space, args)
        score_cfg = spec.get("score") or {}
        proxies = args.proxies.split(",") if args.proxies else (score_cfg.get("proxies") or None)
        config = SearchConfig.from_spec(spec)
        config.seed = args.seed  # the batch a search with this seed scores on
        batch = score_inputs(space, config)
        if not args.json:
            print(f"scored on: {batch.label}", file=sys.stderr)
        rows = []
        for structure in structures:
            torch.manual_seed(args.seed)
            values = score_model(
                batch.build(structure)[0],
                batch.inputs,
                batch.targets,
                loss_fn=batch.loss_fn,
                proxies=proxies,
                weights=score_cfg.get("weights") or None,
                domain=domain_key(spec["domain"], spec.get("searchSpace")),
                seed=args.seed,
            )
            row = {"hash": space.hash(structure), "params": space.count_params(structure), **values}
            rows.append({**row, "structure": structure})
            if args.json:
                print(json.dumps({**rows[-1], "scoreInputs": batch.label}), flush=True)
    except (
        JobValidationError,
        spaces.StructureError,
        UnknownProxyError,
        WeightError,
        ScoreInputError,
        ValueError,
        OSError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.json:
        _print_table(rows)
    return 0


def _print_table(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k not in ("structure", "hash")]
    print(f"{'hash':18s}" + "".join(f"{k:>14s}" for k in keys))
    for row in sorted(rows, key=lambda r: -r["de_score"]):
        print(f"{row['hash']:18s}" + "".join(f"{row[k]:14.4g}" for k in keys))
