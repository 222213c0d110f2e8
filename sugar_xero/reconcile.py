"""``sugar-xero reconcile``: one reconciliation pass now, and what it repaired.

Against the running local stack (its state file) or the environment the functions use, the pass
runs in this process with the stack's own settings (its moto, emulator and Sugar double; work it
queues is picked up by the stack's pollers). Against a deployed stack (``--stack NAME``, with the
usual AWS settings) the stack's ReconcileFunction is invoked and its answer printed, so the pass
runs with the function's own role and secrets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from sugar_xero.local.state_file import STATE_FILE_NAME, find_state_file, read_state_file
from sugar_xero.status import StackNotFound

EXIT_OK, EXIT_PROBLEMS, EXIT_NO_STACK = 0, 1, 2
FUNCTION_LOGICAL_ID = "ReconcileFunction"
INVOKE_TIMEOUT_SECONDS = 330  # the function's Timeout (300 s) and some
LOCAL_PASS_SECONDS = 280.0

DESCRIPTION = """\
Run one reconciliation pass now and print what it repaired: Xero invoices, credit notes and
payments changed since the last pass applied to the CRM; CRM records saved without reaching the
connector queued; stuck jobs re-driven; and the drift found between the CRM, the sync state and
Xero. The same pass the schedule runs every 15 minutes; its report is what `sugar-xero status`
shows as "last reconcile".

Which stack: --stack NAME invokes a deployed stack's ReconcileFunction (usual AWS settings);
otherwise the running local stack (its state file); otherwise the environment variables the
functions use (SYNC_TABLE, *_QUEUE_URL, XERO_*, SUGAR_BASE_URL).

Exit status: 0 the pass ran without errors; 1 it had errors (or no Xero connection yet);
2 no stack found, or the pass could not be started.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sugar-xero reconcile", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenant", metavar="ID", default=None,
                        help="only this Xero organisation (default: every one the connection reaches)")
    parser.add_argument("--stack", metavar="NAME", default=None,
                        help="a deployed CloudFormation stack's name: invokes its ReconcileFunction")
    parser.add_argument("--state-file", type=Path, default=None,
                        help=f"the local stack's state file (default {STATE_FILE_NAME} in the current "
                             "folder or the nearest parent)")
    parser.add_argument("--deep", action="store_true",
                        help="also run the drift audit now (normally about nightly)")
    parser.add_argument("--json", action="store_true", help="print the pass's reports as JSON")
    return parser


# ---- running ---------------------------------------------------------------------------------------
def _event(args: argparse.Namespace) -> dict[str, Any]:
    from functions.reconcile.app import CLI_SOURCE

    event: dict[str, Any] = {"source": CLI_SOURCE, "deep": bool(args.deep)}
    if args.tenant:
        event["tenant_id"] = args.tenant
    return event


class _Deadline:
    """What the handler reads of a Lambda context: time left."""

    def __init__(self, seconds: float):
        self._until = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._until - time.monotonic()) * 1000))


def run_in_process(environment: Mapping[str, str], event: dict[str, Any], *, local: bool) -> dict[str, Any]:
    """The pass here, with ``environment`` as the functions' settings. Logs go to stderr, so the
    report on stdout stays clean."""
    from sugar_xero.local.aws_resources import act_as_local_functions

    act_as_local_functions(environment, local=local)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from shared import wiring
    from shared.mapping.settings import mapping_file
    from shared.observability import logger, metrics

    logger.registered_handler.setStream(sys.stderr)
    logger.setLevel(os.environ.get("LOG_LEVEL") or "WARNING")
    wiring.reset()
    mapping_file.cache_clear()
    from functions.reconcile.app import scheduled

    try:
        return scheduled(event, _Deadline(LOCAL_PASS_SECONDS))
    finally:
        metrics.clear_metrics()


def invoke_deployed(stack: str, event: dict[str, Any], *, session: Any = None) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    session = session or boto3.session.Session()
    cloudformation = session.client("cloudformation")
    try:
        resource = cloudformation.describe_stack_resource(StackName=stack, LogicalResourceId=FUNCTION_LOGICAL_ID)
    except Exception as error:
        raise StackNotFound(f"stack {stack!r} has no {FUNCTION_LOGICAL_ID}: {type(error).__name__}: {error}") from error
    function = resource["StackResourceDetail"]["PhysicalResourceId"]
    client = session.client("lambda", config=Config(read_timeout=INVOKE_TIMEOUT_SECONDS, retries={"max_attempts": 0}))
    answer = client.invoke(FunctionName=function, InvocationType="RequestResponse",
                           Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError"):
        return {"status": "failed", "error": payload.get("errorMessage") or str(payload), "tenants": []}
    return payload


# ---- output ----------------------------------------------------------------------------------------
def _counts(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in values.items() if n) or "nothing"


def render(summary: Mapping[str, Any], where: str) -> str:
    lines = [f"sugar-xero reconcile: {where}"]
    status = summary.get("status")
    if status == "not_connected":
        lines.append(f"No usable Xero connection: {summary.get('error')}. Run `sugar-xero connect`.")
        return "\n".join(lines)
    if status == "failed":
        lines.append(f"The pass failed: {summary.get('error')}")
        return "\n".join(lines)
    if status == "fanned_out":
        lines.append(f"Queued a pass for each of {len(summary.get('tenants') or [])} organisations.")
        return "\n".join(lines)
    for tenant in summary.get("tenants") or []:
        calls = tenant.get("xero_calls")
        lines += ["", f"Organisation {tenant['tenant_id']}: "
                  + ("complete" if tenant.get("complete") else "NOT complete (the next pass goes on)")
                  + (f", {calls} Xero calls" if calls is not None else "")]
        lines.append(f"  repaired: {_counts(tenant.get('repaired') or {})}")
        samples = (tenant.get("jobs") or {}).get("queued_samples") or []
        if samples:
            lines.append(f"    queued: {', '.join(samples)}")
        lines.append(f"  drift found: {_counts(tenant.get('drift') or {})}")
        for kind, ids in (tenant.get("drift_samples") or {}).items():
            if ids:
                lines.append(f"    {kind.replace('_', ' ')}: {', '.join(ids)}")
        checked = {k: v for k, v in (tenant.get("checked") or {}).items() if v}
        if checked:
            lines.append(f"  read: {_counts(checked)}")
        meta = tenant.get("metadata") or {}
        if meta.get("refreshed"):
            lines.append("  organisation settings (accounts, tax rates, tracking, currencies) refreshed")
        for problem in meta.get("problems") or []:
            lines.append(f"  mapping problem: {problem}")
        if tenant.get("token"):
            lines.append(f"  Xero refresh token: {tenant['token']}")
        for note in tenant.get("notes") or []:
            lines.append(f"  note: {note}")
        for error in tenant.get("errors") or []:
            lines.append(f"  ERROR {error}")
    lines += ["", f"Repaired {summary.get('repaired', 0)}, drift found {summary.get('drift', 0)}"
              + ("; errors: see above." if status == "errors" else ".")]
    return "\n".join(lines)


def run(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
        environ: Mapping[str, str] | None = None, session: Any = None,
        in_process: Callable[..., dict[str, Any]] | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    event = _event(args)
    try:
        if args.stack:
            where = f"stack {args.stack} (its {FUNCTION_LOGICAL_ID})"
            summary = invoke_deployed(args.stack, event, session=session)
        else:
            path = args.state_file or find_state_file()
            state = read_state_file(path)
            if state:
                where = f"local stack (pid {state.get('pid')}, state file {path})"
                summary = (in_process or run_in_process)(dict(state.get("environment") or {}), event, local=True)
            elif environ.get("SYNC_TABLE"):
                where = "the environment (SYNC_TABLE, *_QUEUE_URL, ...)"
                summary = (in_process or run_in_process)(environ, event, local=False)
            else:
                raise StackNotFound(f"No running local stack found (no live {STATE_FILE_NAME} at {path}) and no "
                                    "SYNC_TABLE in the environment. Start one with `sugar-xero local`, or pass "
                                    "--stack NAME for a deployed stack.")
    except StackNotFound as error:
        print(str(error), file=err)
        return EXIT_NO_STACK
    except Exception as error:  # no credentials, endpoint down, ...: say so plainly
        print(f"The reconcile pass could not run: {type(error).__name__}: {error}", file=err)
        return EXIT_NO_STACK
    if args.json:
        print(json.dumps({"where": where, **summary}, indent=2, default=str), file=out)
    else:
        print(render(summary, where), file=out)
    return EXIT_OK if summary.get("status") in ("ok", "fanned_out") else EXIT_PROBLEMS
