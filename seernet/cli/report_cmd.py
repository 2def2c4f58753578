"""``seernet report``: report/pareto.png and report/summary.md of the workspace."""

from __future__ import annotations

import argparse

HELP = "plot measured, solved and compressed policies (report/pareto.png) and summarize them (report/summary.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from seernet.cli.common import add_json_argument, add_workdir_argument

    add_workdir_argument(p)
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    from seernet.cli.common import print_json
    from seernet.steps.report import write_report, write_report_data
    from seernet.workspace.folder import Workspace

    ws = Workspace(args.workdir)
    ws.read()  # a clear error when this is not a workspace
    if args.json:
        print_json(write_report_data(ws))
        return 0
    print(write_report(ws))
    print(f"wrote {ws.path('report', 'pareto.png')} and {ws.path('report', 'summary.md')}")
    return 0
