"""`sugar-xero sugar-check [--config MAPPING] [--rules BILLING] [--api-url URL]`: does the live
Sugar instance have every field and Web Logic Hook the configuration needs?

Logs in as the connector's integration user (SUGAR_BASE_URL, SUGAR_USERNAME, SUGAR_PASSWORD,
SUGAR_PLATFORM; from the running local stack when there is one, else the environment), sharing
the connector's token cache when it can reach the sync table (so the check does not log the
connector out: Sugar keeps one live token per user and platform). Prints a table, stores the
result for `sugar-xero status`, and exits 1 when anything is missing or wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from shared.billing.rules import BillingRulesError, load_rules_file
from shared.mapping.settings import MappingConfigError, load_mapping_file
from shared.sugar.schema import required_fields
from shared.usecases.sugar_check import CrmCheck, check_crm, expected_hooks, render_table
from sugar_xero.local.state_file import STATE_FILE_NAME, find_state_file, read_state_file

EXIT_OK, EXIT_PROBLEMS, EXIT_NO_CRM = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sugar-xero sugar-check",
        description="Compare the live Sugar instance with what the configuration needs: each custom "
                    "field (GET /rest/v11/metadata) and each Web Logic Hook (the WebLogicHooks records). "
                    "Exit 0 when everything is there, 1 when something is missing or wrong, 2 when Sugar "
                    "cannot be reached.")
    parser.add_argument("--config", default=None, help="mapping configuration (default $MAPPING_CONFIG)")
    parser.add_argument("--rules", default=None, help="billing rules (default $BILLING_RULES)")
    parser.add_argument("--api-url", default=None,
                        help="the connector's API root the hooks must call (default: the local stack's "
                             "gateway, else $PUBLIC_BASE_URL); without one, hooks are not checked")
    parser.add_argument("--state-file", type=Path, default=None,
                        help=f"the local stack's state file (default {STATE_FILE_NAME} nearby)")
    parser.add_argument("--json", action="store_true", help="print the check as JSON")
    return parser


class _MemoryTokens:
    """A token cache for one run, when the sync table is out of reach."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._items.get(key)

    def put(self, key: str, token: dict[str, Any], expected_version: int | None) -> bool:
        stored = (self._items.get(key) or {}).get("version")
        if stored != expected_version:
            return False
        self._items[key] = {**token, "version": (expected_version or 0) + 1}
        return True


def _environment(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[dict[str, str], bool, str | None]:
    """(environment, is a local stack, the API URL the stack's gateway answers on)."""
    path = args.state_file or find_state_file()
    state = read_state_file(path)
    if state:
        return dict(state.get("environment") or {}), True, (state.get("urls") or {}).get("gateway")
    return dict(environ), False, environ.get("PUBLIC_BASE_URL") or None


def run_check(env: Mapping[str, str], *, local: bool, api_url: str | None, config: Any, rules: Any,
              store_result: bool = True) -> CrmCheck:
    """The check with ``env`` as the connector's settings (as the functions read them)."""
    from sugar_xero.local.aws_resources import act_as_local_functions

    act_as_local_functions(env, local=local)
    from shared import wiring
    from shared.config import settings
    from shared.secrets import get_secret
    from shared.state.crm_check import CrmCheckTable
    from shared.sugar import SugarClient

    wiring.reset()  # clears the settings too: they are read again from the environment above
    base_url = settings().sugar_base_url
    if not base_url:
        raise LookupError("SUGAR_BASE_URL is not set and no local stack is running: say where Sugar is")
    table_reachable = bool(env.get("SYNC_TABLE"))
    if table_reachable:
        crm = wiring.sugar_client()
    else:
        crm = SugarClient(base_url, get_secret("SUGAR_USERNAME"), get_secret("SUGAR_PASSWORD"),
                          get_secret("SUGAR_PLATFORM"), _MemoryTokens())
    token = get_secret("CRM_TOKEN") if api_url else None
    hooks = expected_hooks(api_url, token) if api_url else None
    check = check_crm(crm, required_fields(config, rules), hooks=hooks, token_known=bool(token))
    if store_result and table_reachable:
        CrmCheckTable(settings().sync_table, resource=wiring._boto3().resource("dynamodb")).put_crm_check(
            check.as_dict())
    return check


def run(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
        environ: Mapping[str, str] | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        config = load_mapping_file(args.config)
        rules = load_rules_file(args.rules)
    except (MappingConfigError, BillingRulesError) as error:
        print(f"cannot check: {error}", file=err)
        return EXIT_PROBLEMS
    env, local, stack_api = _environment(args, os.environ if environ is None else environ)
    api_url = args.api_url or stack_api
    try:
        check = run_check(env, local=local, api_url=api_url, config=config, rules=rules)
    except Exception as error:  # noqa: BLE001 - any failure to reach Sugar is the operator's to see
        print(f"cannot check: {type(error).__name__}: {error}", file=err)
        return EXIT_NO_CRM
    if args.json:
        print(json.dumps(check.as_dict(), indent=2), file=out)
    else:
        print(f"sugar-xero sugar-check: {env.get('SUGAR_BASE_URL')}"
              + ("" if api_url else " (no --api-url: hooks not checked)"), file=out)
        print(render_table(check), file=out)
    return EXIT_OK if check.ok else EXIT_PROBLEMS
