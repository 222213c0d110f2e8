"""``sugar-xero connect``: walk an operator through connecting a Xero organisation.

It prints what to do and the link to open; it opens nothing itself. With ``--wait`` it then
watches the sync table until the callback has stored a new token set, and prints the
organisations Xero connected.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from shared.config import LOCAL_SECRET_DEFAULTS
from sugar_xero.local.state_file import STATE_FILE_NAME, find_state_file, read_state_file

POLL_SECONDS = 2.0

DESCRIPTION = """\
Connect the connector to a Xero organisation (OAuth2 authorisation code, once per organisation).

Standard (OAuth2) Xero apps:
  1. In Xero's developer portal, open your app and add the redirect URI printed below
     (<API base>/xero/callback) exactly as shown.
  2. Put the app's client id and secret in the connector's secret as XERO_CLIENT_ID and
     XERO_CLIENT_SECRET (local runs: environment variables of those names).
  3. Open the connect link in a browser, sign in to Xero, pick the organisation, and allow
     access, in the same browser (the link sets a cookie that the callback checks). The page
     you land on lists the connected organisations. The link carries the administrator's
     secret (ADMIN_TOKEN), never the CRM token: it replaces the stored Xero connection.

Custom Connections (client-credentials apps, one organisation, AU/NZ/UK/US) need none of
this: set XERO_CLIENT_ID and XERO_CLIENT_SECRET and the connector uses the client-credentials
grant by itself (there is no refresh token to store); the organisation is read from
Xero's /connections on first use.

Webhooks: in the app's Webhooks page, subscribe the webhook URL printed below and put the
webhook key in the connector's secret as XERO_WEBHOOK_KEY; Xero's "Send Intent to Receive"
must then show OK.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sugar-xero connect", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the API's base URL of a deployed stack, e.g. "
                                      "https://abc123.execute-api.eu-west-1.amazonaws.com/prod "
                                      "(default: the running local stack)")
    parser.add_argument("--state-file", type=Path, default=None,
                        help=f"the local stack's state file (default {STATE_FILE_NAME} in the current "
                             "folder or the nearest parent)")
    parser.add_argument("--token", default=None,
                        help="the administrator's secret to put in the link (default $ADMIN_TOKEN; the "
                             "local default for a local stack; otherwise a placeholder you fill in)")
    parser.add_argument("--wait", action="store_true",
                        help="after printing, wait until the connection is stored, then list the "
                             "organisations (reads the sync table)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits (default 600)")
    parser.add_argument("--table", default=None,
                        help="the sync table for --wait on a deployed stack (default $SYNC_TABLE)")
    parser.add_argument("--connection", default=None,
                        help="the connection id (default $CONNECTION_ID, else 'default')")
    return parser


def find_local_state(explicit: Path | None) -> dict[str, Any] | None:
    """The running local stack's state, or None (absent, unreadable, or its process gone)."""
    return read_state_file(explicit or find_state_file())


def run(argv: list[str] | None = None, *, out: TextIO | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    local = None if args.url else find_local_state(args.state_file)
    base = (args.url or ((local or {}).get("urls") or {}).get("gateway") or "").rstrip("/")
    if not base:
        print("No running local stack found (no .sugar-xero-local.json here). Start one with "
              "`sugar-xero local`, or pass --url <API base URL> for a deployed stack.", file=out)
        return 2
    if not base.startswith(("http://", "https://")):
        print(f"--url must start with https:// (or http:// for a local stack), not {base!r}", file=out)
        return 2
    token = args.token or os.environ.get("ADMIN_TOKEN") or (LOCAL_SECRET_DEFAULTS["ADMIN_TOKEN"] if local
                                                             else None)
    link = f"{base}/xero/connect?token={quote(token, safe='') if token else '<ADMIN_TOKEN>'}"
    print(DESCRIPTION, file=out)
    print(f"API base        {base}" + ("  (local stack)" if local else ""), file=out)
    print(f"redirect URI    {base}/xero/callback", file=out)
    print(f"webhook URL     {base}/xero/webhooks", file=out)
    print(f"connect link    {link}", file=out)
    if local:
        print("\nLocal stack: the link goes to Xero's sign-in unless the stack's XERO_AUTHORIZE_URL "
              "points at the emulator, whose sign-in grants a code at once.", file=out)
    if not args.wait:
        return 0
    return _wait(args, local, out=out, sleep=sleep, clock=clock)


def _wait(args: argparse.Namespace, local: dict[str, Any] | None, *, out: TextIO,
          sleep: Callable[[float], None], clock: Callable[[], float]) -> int:
    environment = (local or {}).get("environment") or {}
    table_name = args.table or environment.get("SYNC_TABLE") or os.environ.get("SYNC_TABLE")
    if not table_name:
        print("--wait needs the sync table: pass --table NAME (the stack's SyncTable) or set SYNC_TABLE.",
              file=out)
        return 2
    connection_id = args.connection or environment.get("CONNECTION_ID") or os.environ.get(
        "CONNECTION_ID") or "default"
    table = _sync_table(table_name, environment if local else None)
    try:
        before = table.get_token_status(connection_id)
    except Exception as error:  # no credentials, no table, endpoint down: say so plainly
        print(f"Cannot read the sync table {table_name}: {type(error).__name__}: {error}", file=out)
        return 2
    baseline = (before or {}).get("version")
    print(f"\nWaiting up to {args.timeout:.0f} s for the connection to be stored "
          f"(table {table_name}, connection {connection_id})...", file=out, flush=True)
    deadline = clock() + args.timeout
    while clock() < deadline:
        item = table.get_token_status(connection_id)
        if item and item.get("status") == "connected" and item.get("version") != baseline:
            connection = table.get_connection(connection_id) or {}
            tenants = connection.get("tenants") or ([{"tenant_id": connection["tenant_id"],
                                                      "tenant_name": connection.get("tenant_name", "")}]
                                                    if connection.get("tenant_id") else [])
            print("Connected.", file=out)
            for tenant in tenants:
                used = tenant.get("tenant_id") == connection.get("tenant_id")
                marker = "  (used by this CRM)" if used else ""
                print(f"  {tenant.get('tenant_name') or '?'}  {tenant.get('tenant_id')}{marker}", file=out)
            if not tenants:
                print("  (no organisation recorded yet: it is read from Xero on first use)", file=out)
            return 0
        sleep(POLL_SECONDS)
    print(f"Not connected after {args.timeout:.0f} s. Open the connect link above, or check the "
          "function's log for the callback's answer.", file=out)
    return 1


def _sync_table(table_name: str, local_environment: dict[str, str] | None):
    from shared.state.dynamo import SyncStateTable

    if local_environment is None:
        return SyncStateTable(table_name)
    import boto3  # the local stack's moto endpoint, with its fake credentials

    resource = boto3.resource(
        "dynamodb", endpoint_url=local_environment.get("AWS_ENDPOINT_URL"),
        region_name=local_environment.get("AWS_REGION") or local_environment.get("AWS_DEFAULT_REGION")
        or "eu-west-1",
        aws_access_key_id=local_environment.get("AWS_ACCESS_KEY_ID") or "local",
        aws_secret_access_key="local")
    return SyncStateTable(table_name, resource=resource)


def main() -> None:  # pragma: no cover - the CLI calls run()
    raise SystemExit(run())
