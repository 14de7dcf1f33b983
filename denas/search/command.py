"""`denas search JOB.yaml --out DIR [--resume]`: the search a search pod (or `denas run`) runs."""

from __future__ import annotations

import argparse
import sys

from denas.search.config import SearchConfig, SearchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="DeNASJob manifest (YAML or JSON)")
    parser.add_argument(
        "--out", required=True, help="result directory (result.json, history.jsonl, plots, checkpoint)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the search checkpointed in --out (starts fresh when there is no checkpoint yet)",
    )
    parser.add_argument(
        "--progress-file", help="JSON file replaced atomically with the latest progress event"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of this rank (default: OMP_NUM_THREADS, else CPUs available / LOCAL_WORLD_SIZE)",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="seconds any rank waits for the others (joining, or one generation's scoring) before failing",
    )
    parser.add_argument(
        "--score-cache",
        help="score cache file shared between searches (default: OUT/score_cache.jsonl); entries only "
        "match the same space, score settings, hardware, scorer and scoring code",
    )
    parser.add_argument(
        "--score-store",
        help="directory of hardware-free scores shared by the jobs of a campaign (DE-Score and its "
        "components, computed once per structure; latency is still measured here)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics (candidates scored, score time, best score)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument(
        "--scorer",
        help="score with 'package.module:callable' instead of denas.scores (tests and benchmarks)",
    )


def run(args: argparse.Namespace) -> int:
    from denas.search.progress import startup

    # first, before torch is imported (seconds): say what start-up is doing
    startup("imports", "importing torch and the search space")
    from denas import preflight
    from denas.job import JobValidationError
    from denas.search.evaluator import load_scorer
    from denas.search.metrics import SearchMetrics
    from denas.search.runner import run_search

    try:
        out_problem = preflight.out_dir_problem(args.out)
        if out_problem:
            raise SearchError(out_problem)
        # the data set is checked here too when the job runs on this machine (in a pod its path
        # is the pod's, and the training pods report a missing data set themselves)
        job = preflight.load_checked_job(args.job, local=not preflight.in_pod(), engine=False)
        config = SearchConfig.from_spec(job.spec)
        if args.threads is not None and args.threads < 1:
            raise SearchError(f"--threads: Invalid value: {args.threads}: must be >= 1")
        if args.dist_timeout <= 0:
            raise SearchError(f"--dist-timeout: Invalid value: {args.dist_timeout}: must be > 0")
        run_search(
            config,
            args.out,
            resume=args.resume,
            scorer=load_scorer(args.scorer),
            threads=args.threads,
            dist_timeout_s=args.dist_timeout,
            progress_file=args.progress_file,
            plots=not args.no_plots,
            score_cache=args.score_cache,
            score_store=args.score_store,
            metrics=SearchMetrics(args.metrics_port) if args.metrics_port else None,
        )
    except (JobValidationError, SearchError, FileNotFoundError) as e:
        print(f"denas search: error: {e}", file=sys.stderr)
        return 2
    return 0
