"""The ``sugar-xero`` command (``design/api-contract.md``, "Command line")."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Commands with options of their own: the module's run(argv) parses the rest of the line.
PASS_THROUGH = {
    "connect": ("sugar_xero.connect", "walks an operator through Xero OAuth2 onboarding"),
    "status": ("sugar_xero.status", "connections, jobs by state, failures, queue and DLQ depth, "
                                    "rate-limit headroom; exits 1 on a problem"),
    "backfill": ("sugar_xero.backfill", "pushes existing CRM records modified since a date, in batches"),
    "config-check": ("sugar_xero.config_check", "validates a mapping configuration file"),
    "replay": ("sugar_xero.replay", "re-drives dead-lettered work or one job, duplicating nothing"),
    "reconcile": ("sugar_xero.reconcile", "runs one reconciliation pass now and prints what it repaired"),
    "rules-check": ("sugar_xero.rules_check", "validates a billing rules file; --dry-run shows what it would do"),
    "sugar-package": ("sugar_xero.sugar_package.command",
                      "builds the Sugar Module Loadable Package: every field, hook and module the CRM needs"),
    "sugar-check": ("sugar_xero.sugar_check",
                    "compares the live Sugar instance with the fields and hooks the configuration needs"),
    "openapi": ("sugar_xero.openapi", "prints the connector's own OpenAPI document (JSON)"),
}



def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0 (pick a free one) to 65535")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sugar-xero", description="SugarCRM ⇄ Xero connector tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    local = commands.add_parser(
        "local",
        help="start the whole stack on 127.0.0.1 until interrupted",
        description="Start moto (tables, queues, secret from infra/template.yaml), the "
        "Xero emulator, the Sugar double, the API gateway, the queue pollers "
        "and the schedule timer, all on 127.0.0.1. Ctrl-C stops everything. "
        "Port 0 picks a free port; the printed URLs and the state file say "
        "which.",
    )
    local.add_argument("--port", type=_port, default=3000, help="the API gateway's port (default 3000)")
    local.add_argument(
        "--xero-port", type=_port, default=5001, help="the Xero emulator's port (default 5001)"
    )
    local.add_argument(
        "--sugar-port", type=_port, default=5002, help="the Sugar double's port (default 5002)"
    )
    local.add_argument(
        "--template", type=Path, default=None, help="the SAM template (default infra/template.yaml)"
    )
    local.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="where to write the running stack's URLs (default .sugar-xero-local.json in the project folder)",
    )
    local.add_argument(
        "--reconcile-every",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="fire the scheduled functions this often (default: the template's schedule rate)",
    )
    local.add_argument("--log-file", type=Path, default=None, metavar="PATH",
                       help="write the functions' JSON logs, metric lines and warnings here instead of the "
                            "terminal (make run: .sugar-xero-local.log)")
    local.add_argument("--verbose", action="store_true", help="log every server's requests")
    local.add_argument("--demo", action="store_true",
                       help="once ready, run `sugar-xero demo` against the stack (what `make run` does)")

    demo = commands.add_parser(
        "demo",
        help="send sample Sugar callouts to a running local stack",
        description="Post sample Account and Contact callouts, wait for their jobs, "
        "print what landed in Xero and in the CRM.",
    )
    demo.add_argument(
        "--url", default=None, help="the API's URL (default: from the running stack's state file)"
    )
    demo.add_argument("--state-file", type=Path, default=None, help="the running stack's state file")
    demo.add_argument(
        "--wait",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the jobs (default 30)",
    )

    for name, (_, does) in PASS_THROUGH.items():
        commands.add_parser(name, add_help=False, help=f"{does} (`{name} --help`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in PASS_THROUGH:
        module = importlib.import_module(PASS_THROUGH[args.command][0])
        return module.run(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "local":
        from sugar_xero.local.stack import StackOptions, run

        return run(
            StackOptions(
                port=args.port,
                xero_port=args.xero_port,
                sugar_port=args.sugar_port,
                template=args.template,
                state_file=args.state_file,
                reconcile_every=args.reconcile_every,
                verbose=args.verbose,
                demo=args.demo,
                log_file=args.log_file,
            )
        )
    if args.command == "demo":
        from sugar_xero.local.demo import run_demo

        return run_demo(args.url, state_file=args.state_file, wait_seconds=args.wait)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
