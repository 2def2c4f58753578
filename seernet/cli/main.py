"""The ``seernet`` console script: argparse subcommands, user errors as one line + exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from seernet import __version__

# Only commands that work are listed; each module has HELP, add_arguments(p) and run(args).
COMMANDS = {
    "pretrain": "seernet.cli.pretrain_cmd",
    "evaluate": "seernet.cli.evaluate_cmd",
    "collect": "seernet.cli.collect_cmd",
    "fit-predictor": "seernet.cli.fit_predictor_cmd",
    "solve": "seernet.cli.solve_cmd",
    "compress": "seernet.cli.compress_cmd",
    "report": "seernet.cli.report_cmd",
    "profile-latency": "seernet.cli.profile_latency_cmd",
    "dynamic-scores": "seernet.cli.dynamic_scores_cmd",
    "legr": "seernet.cli.legr_cmd",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, the other commands get their name and help but no options, so
    ``seernet --help`` (``only`` None and no command) imports none of their settings (nor torch)."""
    parser = argparse.ArgumentParser(
        prog="seernet",
        description=(
            "Predictor-guided automated compression of CNNs. FLOPs are multiply-accumulates "
            "(MACs, the compression literature's convention); BitOPs = MACs x weight bits x activation bits."
        ),
    )
    parser.add_argument("--version", action="version", version=f"seernet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        if only in (None, name):
            module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from seernet.errors import UserError

    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(only=command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"seernet {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"seernet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
