"""``sugar-xero backfill --from-xero [--since DATE]``: every Xero invoice, bill and credit note
(dated on or after DATE) into the CRM's Xero Invoices module, once, with a progress bar.

Runs in this process with the connector's settings: the running local stack's (its state file),
else the environment the functions use (SYNC_TABLE, XERO_*, SUGAR_BASE_URL). Pages already
written by an earlier run (checkpointed in the sync table) are not read again: an interrupted
import resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from sugar_xero.local.state_file import STATE_FILE_NAME, find_state_file, read_state_file

BAR_WIDTH = 30


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sugar-xero backfill --from-xero",
        description="Import Xero's invoices, bills and credit notes into the CRM's Xero Invoices module "
                    "(install the package first: `sugar-xero sugar-package`). Safe to repeat or restart.")
    parser.add_argument("--since", type=date.fromisoformat, default=None, metavar="DATE",
                        help="only documents dated on or after this day (YYYY-MM-DD); default: all")
    parser.add_argument("--tenant", default=None, help="the Xero organisation (default: the CRM's)")
    parser.add_argument("--writes-per-minute", type=int, default=1000,
                        help="Sugar writes a minute, at most (default 1000)")
    parser.add_argument("--page-size", type=int, default=100, help="Xero documents a page (default 100)")
    parser.add_argument("--state-file", type=Path, default=None,
                        help=f"the local stack's state file (default {STATE_FILE_NAME} nearby)")
    return parser


def progress(out: TextIO):
    def show(step: Any) -> None:
        total = step.page_count
        bar = ""
        if total:
            filled = min(BAR_WIDTH, BAR_WIDTH * step.page // total)
            bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
        print(f"\r{bar}{step.resource} page {step.page}" + (f"/{total}" if total else "")
              + f": {step.written} written", end="", file=out, flush=True)
    return show


def _environment(state_file: Path | None) -> bool:
    state = read_state_file(state_file or find_state_file())
    if not state:
        return False
    from sugar_xero.local.aws_resources import act_as_local_functions

    act_as_local_functions(state.get("environment") or {}, local=True)
    return True


def run(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    _environment(args.state_file)
    from shared import wiring
    from shared.config import settings
    from shared.mapping.settings import mapping_file
    from shared.state.history import HistoryCheckpointTable
    from shared.usecases.invoice_history import HistoryStopped, WritePacer, import_history

    wiring.reset()
    mapping_file.cache_clear()
    if not settings().sugar_base_url or not os.environ.get("SYNC_TABLE"):
        print("No running local stack found and SYNC_TABLE / SUGAR_BASE_URL are not set.", file=out)
        return 2
    try:
        tenant_id = args.tenant or wiring.tenant_id()
    except Exception as error:  # noqa: BLE001 - said plainly to the operator
        print(f"No Xero organisation: {error}. Run `sugar-xero connect`.", file=out)
        return 2
    config = mapping_file().for_tenant(tenant_id)
    if not config.xero_invoices.enabled:
        print("note: xero_invoices.enabled is false in the mapping configuration: the history is imported, "
              "but new documents will not be kept up to date until it is true", file=out)
    checkpoints = HistoryCheckpointTable(settings().sync_table, resource=wiring._boto3().resource("dynamodb"))
    try:
        report = import_history(wiring.xero_client_for(tenant_id), wiring.sugar_client(), tenant_id=tenant_id,
                                mappings=wiring.job_store(), config=config, checkpoints=checkpoints,
                                since=args.since, page_size=args.page_size,
                                pacer=WritePacer(args.writes_per_minute), on_page=progress(out))
    except HistoryStopped as error:
        print(f"\nstopped: {error}", file=out)
        return 1
    skipped = ", ".join(f"{n} {r} page(s)" for r, n in report.skipped_pages.items() if n)
    print(f"\nimported {report.written} document(s) in {report.pages} page(s) into "
          f"{config.xero_invoices.module}" + (f"; already done by an earlier run: {skipped}" if skipped else ""),
          file=out)
    for xero_id, why in list(report.failed.items())[:10]:
        print(f"  refused {xero_id}: {why}", file=out)
    return 1 if report.failed else 0
