"""Authoring commands: `denas validate`, `denas explain`, `denas spaces`."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from denas.job import Job, JobValidationError, explain, load_job


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="path of a DeNASJob or DeNASCampaign manifest (YAML)")
    parser.add_argument(
        "--schema-only",
        action="store_true",
        help="only what the API server checks (skip the engine's checks of searchSpace and score.proxies)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["none", "yaml", "json"],
        default="none",
        help="also print the manifest with every default applied",
    )


def run_validate(args: argparse.Namespace) -> int:
    from denas.campaign.spec import KIND as CAMPAIGN
    from denas.campaign.spec import manifest_kind

    if manifest_kind(args.job) == CAMPAIGN:
        from denas.campaign.command import run_validate as validate_campaign

        return validate_campaign(args)
    try:
        job = load_checked_job(args.job, engine=not args.schema_only)
    except (JobValidationError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.output == "yaml":
        print(job.to_yaml(), end="")
    elif args.output == "json":
        print(json.dumps(job.manifest, indent=2))
    else:
        s = job.spec
        training = (
            "off"
            if not s["training"]["enabled"]
            else (
                f"{s['training']['replicas']}x{s['training']['nprocPerNode']} processes on {s['training']['dataset']['name']}"
            )
        )
        print(
            f"{args.job}: valid DeNASJob '{job.name}' (domain {s['domain']}, strategy {s['search']['strategy']}, "
            f"{s['search']['population']}x{s['search']['generations']} candidates, training {training})"
        )
    return 0


def load_checked_job(path: str, engine: bool = True) -> Job:
    """`load_job`, then (unless `engine` is False) the engine's own checks, as one JobValidationError."""
    job = load_job(path)
    problems = engine_checks(job.spec) if engine else []
    if problems:
        raise JobValidationError(job.name, problems)
    return job


def engine_checks(spec: dict) -> list[str]:
    """What only the engine knows: the space's override keys and the proxy names."""
    errors: list[str] = []
    from denas import spaces

    try:
        spaces.get(spec["domain"], spec.get("searchSpace") or {})
    except spaces.StructureError as exc:
        errors.append(f"spec.{exc}" if str(exc).startswith("searchSpace") else f"spec.searchSpace: {exc}")
    proxies = spec.get("score", {}).get("proxies") or []
    if proxies:
        try:
            from denas.scores import registry
        except ImportError:  # pragma: no cover - the scores package is part of the engine
            return errors
        unknown = [p for p in proxies if p not in registry.names()]
        if unknown:
            errors.append(
                f"spec.score.proxies: Unsupported value: {json.dumps(unknown[0])}: supported values: "
                + ", ".join(registry.names())
            )
    return errors


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "field", nargs="?", default="", help="a field path such as spec.search or spec.training.dataset"
    )


def run_explain(args: argparse.Namespace) -> int:
    try:
        print(explain(args.field), end="")
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0


def add_spaces_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show one space's table of choices and presets")


def run_spaces(args: argparse.Namespace) -> int:
    from denas import spaces

    if not args.name:
        for name in spaces.names():
            space = spaces.get(name)
            print(f"{name:6s} {type(space).__doc__.strip().splitlines()[0] if type(space).__doc__ else ''}")
        return 0
    try:
        space = spaces.get(args.name)
    except spaces.StructureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        yaml.safe_dump({"choices": dict(space.DEFAULTS), "presets": space.presets()}, sort_keys=False), end=""
    )
    return 0
