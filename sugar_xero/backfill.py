"""``sugar-xero backfill``: push the CRM records modified since a date to the connector.

Reads Sugar's filter API (``date_modified >= since``, oldest first) and posts each record to the
connector's API as the body Sugar's Web Logic Hook sends, so the usual jobs do the work. A run
repeated or restarted after an interruption creates no job twice (job ids hash the body).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import requests

from shared.config import LOCAL_SECRET_DEFAULTS
from shared.sugar import DynamoSugarTokenCache, SugarClient, SugarError, SugarTokenCache
from shared.usecases.backfill import (
    MODULES,
    ORDER_BY,
    JobsOutcome,
    ModuleSpec,
    Pushed,
    Tally,
    hook_body,
    keyset_records,
    pages_of,
    parse_since,
    progress_line,
    push_pages,
    summary_lines,
    wait_for_jobs,
)
from sugar_xero.local.state_file import STATE_FILE_NAME, find_state_file, read_state_file

WORKERS = 8
COUNT_PAGE = 1000  # ids only, to size the progress bar; Sugar's default max_record_fetch_size
POST_ATTEMPTS = 4
TIMEOUT_SECONDS = 60

DESCRIPTION = """\
Push existing CRM records (modified on or after --since) to the connector, as if Sugar's logic
hook had just fired for each. Safe to repeat or restart: a record already pushed with the same
content makes no new job (the API answers it as a duplicate). Prints progress, a summary, and
then waits for the jobs. Exit 0 when every record was accepted and every job finished without
failing; 1 otherwise; 2 when the command cannot start.

`sugar-xero backfill --from-xero [--since DATE]` instead imports Xero's invoices, bills and
credit notes into the CRM's Xero Invoices module (see `sugar-xero backfill --from-xero --help`)."""


def _batch(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("a batch is 1 to 1000 records")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("cannot be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sugar-xero backfill", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", required=True, choices=sorted(MODULES),
                        help="the Sugar module to push")
    parser.add_argument("--since", required=True, metavar="DATE",
                        help="records modified on or after this date (YYYY-MM-DD, UTC) or ISO 8601 time")
    parser.add_argument("--url", default=None,
                        help="the connector API's base URL (default: the running local stack)")
    parser.add_argument("--state-file", type=Path, default=None,
                        help=f"the local stack's state file (default {STATE_FILE_NAME} in the current "
                             "folder or the nearest parent)")
    parser.add_argument("--batch", type=_batch, default=200,
                        help="records per Sugar page (default 200)")
    parser.add_argument("--wait", type=_seconds, default=300.0, metavar="SECONDS",
                        help="how long to wait for the jobs afterwards (default 300; 0: do not wait)")
    return parser


class MemorySugarTokenCache:
    """Sugar's token set for this process only (no sync table reachable)."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(key)
            return copy.deepcopy(item) if item else None

    def put(self, key: str, token: dict[str, Any], expected_version: int | None) -> bool:
        with self._lock:
            current = self._items.get(key)
            if (current["version"] if current else None) != expected_version:
                return False
            self._items[key] = {**copy.deepcopy(token), "version": (expected_version or 0) + 1}
            return True


class ConnectorApi:
    """The connector's HTTP API as the backfill uses it: post a hook body, read a job."""

    def __init__(self, base_url: str, crm_token: str, *, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {crm_token}"}
        self._local = threading.local()
        self._sleep = sleep

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _send(self, method: str, path: str, body: Any = None) -> requests.Response:
        """Repeats 429, 5xx and dropped connections: the body is the job's
        identity, so a repeat can only find the first job."""
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                answer = self._session().request(method, self.base_url + path, json=body,
                                                 headers=self._headers, timeout=TIMEOUT_SECONDS)
            except requests.ConnectionError:
                if attempt == POST_ATTEMPTS:
                    raise
            else:
                if not (answer.status_code == 429 or answer.status_code >= 500):
                    return answer
                if attempt == POST_ATTEMPTS:
                    return answer
            self._sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    def push(self, spec: ModuleSpec, record: dict[str, Any]) -> Pushed:
        record_id = str(record.get("id") or "?")
        try:
            answer = self._send("POST", spec.route, hook_body(spec, record))
        except requests.RequestException as error:
            return Pushed(record_id, "refused", error=f"not sent: {type(error).__name__}: {error}")
        if answer.status_code in (200, 202):
            accepted = answer.json()
            return Pushed(record_id, "duplicate" if accepted.get("duplicate") else "new",
                          job_id=accepted.get("job_id"))
        return Pushed(record_id, "refused", error=f"{answer.status_code} {_error_text(answer)}")

    def job(self, job_id: str) -> dict[str, Any]:
        try:
            answer = self._send("GET", f"/jobs/{job_id}")
        except requests.RequestException:
            return {"status": "unknown"}  # asked again on the next poll
        return answer.json() if answer.status_code == 200 else {"status": "unknown"}


def _error_text(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    if isinstance(body, dict):
        text = str(body.get("message") or body.get("error") or body)
        details = body.get("details")
        return f"{text} {details}" if details else text
    return str(body)[:200]


def _setting(name: str) -> str | None:
    return os.environ.get(name) or None


def sugar_client(local: dict[str, Any] | None) -> SugarClient | None:
    """Sugar from SUGAR_* settings, else the local stack's Sugar double and its token store."""
    base = _setting("SUGAR_BASE_URL") or ((local or {}).get("urls") or {}).get("sugar")
    if not base:
        return None
    credentials = {name: _setting(name) or LOCAL_SECRET_DEFAULTS[name]
                   for name in ("SUGAR_USERNAME", "SUGAR_PASSWORD", "SUGAR_PLATFORM")}
    return SugarClient(base, credentials["SUGAR_USERNAME"], credentials["SUGAR_PASSWORD"],
                       credentials["SUGAR_PLATFORM"], token_cache=_token_cache(local))


def _token_cache(local: dict[str, Any] | None) -> SugarTokenCache:
    """Sugar keeps one live token per user and platform: on a local stack, share the workers'
    token item so that this login does not log them out (and theirs not this one)."""
    environment = (local or {}).get("environment") or {}
    if environment.get("SYNC_TABLE"):
        from sugar_xero.connect import _sync_table

        return DynamoSugarTokenCache(_sync_table(environment["SYNC_TABLE"], environment))
    return MemorySugarTokenCache()


def read_records(client: SugarClient, module: str, since: str, until: str, page_size: int,
                 fields: list[str] | None = None) -> Iterator[dict[str, Any]]:
    def fetch(filters: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
        return client.filter(module, filters, fields=fields, max_num=size, order_by=ORDER_BY)[0]

    return keyset_records(fetch, since=since, until=until, page_size=page_size)


def count_records(client: SugarClient, module: str, since: str, until: str) -> int | None:
    """How many records the run will read (ids only), to size the progress bar."""
    try:
        return sum(1 for _ in read_records(client, module, since, until, COUNT_PAGE,
                                           fields=["id", "date_modified"]))
    except SugarError:
        return None


def run(argv: list[str] | None = None, *, out: TextIO | None = None,
        api: ConnectorApi | None = None, sugar: SugarClient | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    out = out or sys.stdout
    if argv is not None and "--from-xero" in argv:  # Xero's history into the Xero Invoices module
        from sugar_xero.xero_history import run as from_xero

        return from_xero([a for a in argv if a != "--from-xero"], out=out)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        since = parse_since(args.since)
    except ValueError as error:
        parser.error(f"--since: {error}")
    spec = MODULES[args.module]
    local = None if (args.url and _setting("SUGAR_BASE_URL")) else read_state_file(
        args.state_file or find_state_file())
    if api is None:
        base = args.url or ((local or {}).get("urls") or {}).get("gateway")
        if not base:
            print("No running local stack found (no .sugar-xero-local.json here). Start one with "
                  "`sugar-xero local`, or pass --url <API base URL>.", file=out)
            return 2
        local_api = bool(local) and base == ((local or {}).get("urls") or {}).get("gateway")
        token = _setting("CRM_TOKEN") or (LOCAL_SECRET_DEFAULTS["CRM_TOKEN"] if local_api else None)
        if not token:
            print("Set CRM_TOKEN to the connector's CRM token.", file=out)
            return 2
        api = ConnectorApi(base, token, sleep=sleep)
    sugar = sugar or sugar_client(local)
    if sugar is None:
        print("Set SUGAR_BASE_URL (and SUGAR_USERNAME, SUGAR_PASSWORD, SUGAR_PLATFORM), or start a "
              "local stack.", file=out)
        return 2
    return backfill(spec, since, api=api, sugar=sugar, batch=args.batch, wait_seconds=args.wait, out=out,
                    sleep=sleep, clock=clock)


def backfill(spec: ModuleSpec, since: str, *, api: ConnectorApi, sugar: SugarClient, batch: int,
             wait_seconds: float, out: TextIO, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> int:
    print(f"Backfilling {spec.module} modified since {since} from {sugar.base_url} to "
          f"{api.base_url}{spec.route}", file=out, flush=True)
    try:
        until = datetime.now(UTC).replace(microsecond=0).isoformat()
        total = count_records(sugar, spec.module, since, until)
        records = read_records(sugar, spec.module, since, until, batch)
        tty = out.isatty()

        def show(tally: Tally) -> None:
            line = progress_line(tally, total, spec.noun)
            print(f"\r{line}" if tty else line, end="" if tty else "\n", file=out, flush=True)

        tally = push_pages(pages_of(records, batch), lambda record: api.push(spec, record),
                           workers=WORKERS, on_page=show)
        if tty:
            print(file=out)
    except SugarError as error:
        print(f"\nReading {spec.module} from Sugar failed: {error}", file=out)
        return 1
    for line in summary_lines(tally, spec.noun):
        print(line, file=out)
    outcome = JobsOutcome()
    if tally.job_ids and wait_seconds > 0:
        print(f"waiting up to {wait_seconds:g} s for {len(tally.job_ids)} jobs...", file=out, flush=True)
        outcome = wait_for_jobs(tally.job_ids, api.job, wait_seconds=wait_seconds, workers=WORKERS,
                                clock=clock, sleep=sleep)
        for line in outcome.lines():
            print(line, file=out)
    problems = bool(tally.refused) or outcome.failed > 0 or outcome.unfinished > 0
    return 1 if problems else 0
