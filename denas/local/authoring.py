"""Authoring commands: `denas validate`, `denas explain`, `denas spaces`."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from denas import preflight
from denas.job import Job, JobValidationError, explain


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="path of a DeNASJob or DeNASCampaign manifest (YAML)")
    parser.add_argument(
        "--schema-only",
        action="store_true",
        help="only what the API server checks (skip DeNAS's checks of searchSpace, score and the data set)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the manifest is for the operator: data set paths are inside the pods, so only check that "
        "they are given (without it they must exist here, readable and in the data set's layout)",
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
        if args.schema_only:
            job = preflight.load_job(args.job)
        else:
            job = load_checked_job(args.job, local=not args.cluster)
    except (JobValidationError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2
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


def load_checked_job(path: str, engine: bool = True, local: bool = True) -> Job:
    """`denas.preflight.load_checked_job`: the schema, then every check DeNAS can make up front."""
    return preflight.load_checked_job(path, local=local, engine=engine)


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "field", nargs="?", default="", help="a field path such as spec.search or spec.training.dataset"
    )


def run_explain(args: argparse.Namespace) -> int:
    try:
        print(explain(args.field), end="")
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


def add_spaces_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show one space's table of choices and presets")


def run_spaces(args: argparse.Namespace) -> int:
    from denas import spaces
    from denas.spaces import plugins

    if not args.name:
        width = max(6, *map(len, spaces.names()))
        for name in spaces.names():
            space = spaces.get(name)
            line = type(space).__doc__.strip().splitlines()[0] if type(space).__doc__ else ""
            package = plugins.origin(name)
            print(f"{name:{width}s} {line}" + (f"  [plug-in from {package}]" if package else ""))
        for error in plugins.problems().values():  # the built-ins above still work
            print(f"error: {error}", file=sys.stderr)
        return 2 if plugins.problems() else 0
    try:
        space = spaces.get(args.name)
    except spaces.StructureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        yaml.safe_dump({"choices": dict(space.DEFAULTS), "presets": space.presets()}, sort_keys=False), end=""
    )
    return 0
