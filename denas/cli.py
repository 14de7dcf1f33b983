"""`denas`: every command takes a DeNASJob manifest, so one file drives everything.

Subcommands import their engine module only when they run: `denas validate` and `denas explain`
stay fast and need no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module holding add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "denas.local.command",
        "search, train, then export, locally (processes instead of pods) -> DIR/status.json + report, DIR/model/",
    ),
    "search": ("denas.search.command", "run the hardware-aware search of a job -> DIR/result.json"),
    "train": (
        "denas.train.command",
        "train a searched structure (under torchrun for several processes) -> DIR/metrics.json",
    ),
    "export": (
        "denas.export.command",
        "(re-)export a finished run's trained model: TorchScript, ONNX, HF folder + model card -> DIR/model/",
    ),
    "score": ("denas.scores.command", "score structures of a job's space with the train-free proxies"),
    "report": (
        "denas.campaign.report_command",
        "redraw a campaign's comparison (report.html, pareto.png, report.json) from its folder or its claim",
    ),
    "validate": (
        "denas.local.authoring",
        "check a manifest exactly as the cluster would (schema, defaults, CEL rules)",
    ),
    "explain": (
        "denas.local.authoring",
        "describe DeNASJob fields from the CRD schema, like `kubectl explain`",
    ),
    "spaces": ("denas.local.authoring", "list the search spaces and their tables of choices"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported (all of them when None)."""
    parser = argparse.ArgumentParser(
        prog="denas",
        description="Hardware-aware, train-free neural architecture search. "
        "Every command takes a DeNASJob manifest (see deploy/samples/).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or command == name:
            module = importlib.import_module(module_name)
            adder = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
            adder(p)
        p.set_defaults(_module=module_name, _command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(chosen or "").parse_args(argv)
    module = importlib.import_module(args._module)
    runner = getattr(module, f"run_{args._command}", None) or module.run
    try:
        return int(runner(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: state is checkpointed; run the same command again to resume", file=sys.stderr)
        return 130


def _version() -> str:
    from denas import __version__

    return __version__


if __name__ == "__main__":
    raise SystemExit(main())
