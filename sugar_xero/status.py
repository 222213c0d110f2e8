"""``sugar-xero status``: is the connector healthy, and if not, what to do.

It finds the stack by itself: ``--stack NAME`` reads a deployed CloudFormation stack's outputs
(the usual AWS settings: AWS_PROFILE, AWS_REGION, ...); otherwise the running local stack's
state file; otherwise the environment the functions use (SYNC_TABLE, CONTACT_QUEUE_URL,
CONTACT_DLQ_URL, ...). The report itself comes from ``shared.usecases.status``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from shared.config import Settings
from shared.usecases.status import JOB_STATES, QueueSpec, StatusReport, gather
from sugar_xero.local.state_file import STATE_FILE_NAME, find_state_file, read_state_file

# CloudFormation logical ids (infra/template.yaml) → the short names the functions' variables use.
QUEUE_NAMES = {"ContactSync": "contact", "InvoicePush": "invoice", "PaymentWebhook": "webhook",
               "Reconcile": "reconcile"}
_QUEUE_DEPTH_ATTRIBUTES = {"visible": "ApproximateNumberOfMessages",
                           "in_flight": "ApproximateNumberOfMessagesNotVisible",
                           "delayed": "ApproximateNumberOfMessagesDelayed"}

EXIT_HEALTHY, EXIT_PROBLEMS, EXIT_NO_STACK = 0, 1, 2

DESCRIPTION = """\
Show the connector's health: each Xero (and Sugar) connection, jobs by state with the latest
failures and their errors, the depth of every work queue and its dead-letter queue, and each
Xero organisation's rate-limit headroom (calls this minute / 60, today / the day limit, in
flight / 5, and any block after a 429), and each organisation's last reconcile: what it
repaired and the drift it found. Tokens and secrets are never shown.

Which stack: --stack NAME reads a deployed stack's outputs with the usual AWS settings;
otherwise the running local stack (its state file); otherwise the environment variables the
functions use (SYNC_TABLE, CONTACT_QUEUE_URL, CONTACT_DLQ_URL, INVOICE_..., WEBHOOK_...,
RECONCILE_...).

Exit status, for scripts that alert:
  0  healthy
  1  a problem: a connection is disconnected (fix: run `sugar-xero connect`), a Sugar login
     is refused, a dead-letter queue holds messages, a queue could not be read, the last
     reconcile had errors or is over 2 hours old, or the mapping names an account code, tax
     type or tracking category the Xero organisation lacks
  2  no stack found, or its sync table could not be read
"""


@dataclass(frozen=True)
class StackTarget:
    """Where a stack's state lives and how to reach it."""

    where: str
    sync_table: str
    queues: tuple[QueueSpec, ...] = ()
    tenant_ids: tuple[str, ...] = ()
    day_limit: int = 5000
    endpoint_url: str | None = None  # a local stack's moto server
    region: str | None = None
    local: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where, "sync_table": self.sync_table, "endpoint_url": self.endpoint_url,
                "region": self.region, "local": self.local, **self.details}


class StackNotFound(Exception):
    """No stack to report on; the message says how to name one."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sugar-xero status", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for machines)")
    parser.add_argument("--stack", metavar="NAME", default=None,
                        help="a deployed CloudFormation stack's name (reads its outputs)")
    parser.add_argument("--state-file", type=Path, default=None,
                        help=f"the local stack's state file (default {STATE_FILE_NAME} in the current "
                             "folder or the nearest parent)")
    parser.add_argument("--day-limit", type=int, default=None,
                        help="Xero calls a day per organisation (default $XERO_DAY_LIMIT, else 5000; "
                             "1000 on Xero's free developer tier)")
    parser.add_argument("--failures", type=int, default=10, metavar="N",
                        help="how many of the latest failed jobs to list (default 10)")
    return parser


# ---- finding the stack -------------------------------------------------------------------------
def _queue_base(logical_id: str) -> tuple[str, str]:
    """``ContactSyncDLQUrl`` → (``ContactSync``, ``dlq``); ``ContactSyncQueue`` → (…, ``queue``)."""
    name = logical_id.removesuffix("Url")
    if name.endswith("DLQ"):
        return name[:-3], "dlq"
    return name.removesuffix("Queue"), "queue"


def _queue_specs(urls_by_logical_id: Mapping[str, str]) -> tuple[QueueSpec, ...]:
    pairs: dict[str, dict[str, str]] = {}
    for logical_id, url in urls_by_logical_id.items():
        base, role = _queue_base(logical_id)
        pairs.setdefault(base, {})[role] = url
    ordered = sorted(pairs, key=lambda b: (list(QUEUE_NAMES).index(b) if b in QUEUE_NAMES else len(QUEUE_NAMES), b))
    return tuple(QueueSpec(name=QUEUE_NAMES.get(base, base.lower()), url=pairs[base].get("queue"),
                           dlq_url=pairs[base].get("dlq")) for base in ordered)


def _settings(environ: Mapping[str, str]) -> Settings:
    return Settings.from_env(dict(environ))


def _organisations(environ: Mapping[str, str]) -> dict[str, str]:
    """Name → tenant id of the organisations the mapping configuration routes documents to
    (``MAPPING_CONFIG`` as the functions read it); {} for one organisation or an unreadable file."""
    from shared.mapping.settings import MappingConfigError, load_mapping_file

    try:
        organisations = load_mapping_file(environ.get("MAPPING_CONFIG") or None).organisations
    except MappingConfigError:
        return {}
    return dict(organisations.names) if organisations else {}


def _tenants(settings: Settings, environ: Mapping[str, str]) -> tuple[str, ...]:
    """Every organisation status reports on: the configured tenant and each routed organisation."""
    return tuple(dict.fromkeys([*(t for t in [settings.xero_tenant_id] if t), *_organisations(environ).values()]))


def target_from_state(state: Mapping[str, Any], path: Path) -> StackTarget:
    """A running local stack, from the state file ``sugar-xero local`` writes."""
    environment = dict(state.get("environment") or {})
    settings = _settings(environment)
    queues = {lid: q["url"] for lid, q in (state.get("queues") or {}).items() if isinstance(q, dict) and q.get("url")}
    tables = state.get("tables") or {}
    endpoint = environment.get("AWS_ENDPOINT_URL") or (state.get("urls") or {}).get("moto")
    return StackTarget(
        where=f"local stack (pid {state.get('pid')}, state file {path})",
        sync_table=environment.get("SYNC_TABLE") or tables.get("SyncTable") or settings.sync_table,
        queues=_queue_specs(queues) if queues else target_from_environment(environment).queues,
        tenant_ids=_tenants(settings, environment), day_limit=settings.xero_day_limit,
        endpoint_url=endpoint, region=state.get("region") or environment.get("AWS_REGION"), local=True,
        details={"state_file": str(path), "pid": state.get("pid"), "organisations": _organisations(environment)})


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs, OutputKey → OutputValue."""
    stacks = cloudformation.describe_stacks(StackName=stack_name).get("Stacks") or []
    if not stacks:
        raise StackNotFound(f"CloudFormation has no stack named {stack_name!r}")
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in stacks[0].get("Outputs") or []
            if "OutputKey" in o and "OutputValue" in o}


def target_from_outputs(stack_name: str, outputs: Mapping[str, str], environ: Mapping[str, str],
                        region: str | None = None) -> StackTarget:
    """A deployed stack, from its outputs (``infra/template.yaml``: SyncTableName, *QueueUrl, *DLQUrl)."""
    if not outputs.get("SyncTableName"):
        raise StackNotFound(f"stack {stack_name!r} has no SyncTableName output: is it this connector's stack?")
    settings = _settings(environ)
    queues = {key: url for key, url in outputs.items() if key.endswith(("QueueUrl", "DLQUrl"))}
    return StackTarget(where=f"stack {stack_name}", sync_table=outputs["SyncTableName"], queues=_queue_specs(queues),
                       tenant_ids=_tenants(settings, environ),
                       day_limit=settings.xero_day_limit, region=region,
                       details={"stack": stack_name, "api_url": outputs.get("ApiUrl"),
                                "organisations": _organisations(environ)})


def target_from_environment(environ: Mapping[str, str]) -> StackTarget:
    """The variables the functions themselves use (CONTACT_QUEUE_URL, CONTACT_DLQ_URL, ...)."""
    settings = _settings(environ)
    queues = []
    for short in QUEUE_NAMES.values():
        url, dlq = environ.get(f"{short.upper()}_QUEUE_URL"), environ.get(f"{short.upper()}_DLQ_URL")
        if url or dlq:
            queues.append(QueueSpec(name=short, url=url or None, dlq_url=dlq or None))
    return StackTarget(where="the environment (SYNC_TABLE, *_QUEUE_URL, *_DLQ_URL)", sync_table=settings.sync_table,
                       queues=tuple(queues), tenant_ids=_tenants(settings, environ),
                       day_limit=settings.xero_day_limit, endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
                       details={"organisations": _organisations(environ)})


def find_target(args: argparse.Namespace, environ: Mapping[str, str],
                cloudformation: Callable[[], Any] | None = None) -> StackTarget:
    if args.stack:
        client = (cloudformation or (lambda: _session(None).client("cloudformation")))()
        region = getattr(getattr(client, "meta", None), "region_name", None)
        return target_from_outputs(args.stack, stack_outputs(client, args.stack), environ, region)
    path = args.state_file or find_state_file()
    state = read_state_file(path)
    if state:
        return target_from_state(state, path)
    if environ.get("SYNC_TABLE") or any(environ.get(f"{s.upper()}_QUEUE_URL") for s in QUEUE_NAMES.values()):
        return target_from_environment(environ)
    raise StackNotFound(f"No running local stack found (no live {STATE_FILE_NAME} at {path}) and no SYNC_TABLE "
                        "in the environment. Start one with `sugar-xero local`, or pass --stack NAME for a "
                        "deployed stack.")


def locate(args: argparse.Namespace, environ: Mapping[str, str], cloudformation: Callable[[], Any] | None,
           err: TextIO) -> StackTarget | None:
    """``find_target``, or None after saying plainly on ``err`` why the stack cannot be found
    (no local stack, no such stack, no credentials, an endpoint down)."""
    try:
        return find_target(args, environ, cloudformation)
    except StackNotFound as error:
        print(str(error), file=err)
    except Exception as error:  # noqa: BLE001 - any reason is told to the operator, not raised
        print(f"Cannot read the stack's outputs: {type(error).__name__}: {error}", file=err)
    return None


# ---- adapters ------------------------------------------------------------------------------------
def _session(target: StackTarget | None):
    import boto3

    if target is not None and target.local:
        from sugar_xero.local.aws_resources import DEFAULT_REGION, FAKE_CREDENTIALS

        # The local moto takes any credentials; never the operator's real ones.
        return boto3.session.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                     aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                     aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
                                     region_name=target.region or DEFAULT_REGION)
    return boto3.session.Session(region_name=target.region if target else None)


class SqsDepthProbe:
    def __init__(self, client: Any):
        self._client = client

    def depth(self, queue_url: str) -> dict[str, int]:
        attributes = self._client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=list(_QUEUE_DEPTH_ATTRIBUTES.values()))["Attributes"]
        return {name: int(attributes.get(attribute, 0)) for name, attribute in _QUEUE_DEPTH_ATTRIBUTES.items()}


def report_for(target: StackTarget, *, failures: int = 10, session: Any = None,
               clock: Callable[[], float] = time.time) -> StatusReport:
    from shared.state.crm_check import CrmCheckTable
    from shared.state.dynamo import SyncStateTable
    from shared.state.watermarks import ReconcileStateTable
    from shared.xero.limits import SharedRateGate

    session = session or _session(target)
    endpoint = {"endpoint_url": target.endpoint_url} if target.endpoint_url else {}
    resource = session.resource("dynamodb", **endpoint)
    store = SyncStateTable(target.sync_table, resource=resource)
    gate = SharedRateGate(resource.Table(target.sync_table), day_limit=target.day_limit, clock=clock)
    return gather(store=store, probe=SqsDepthProbe(session.client("sqs", **endpoint)), limits=gate,
                  queues=target.queues, configured_tenants=target.tenant_ids, recent_failures=failures,
                  clock=clock, reconcile=ReconcileStateTable(target.sync_table, resource=resource),
                  crm_check=CrmCheckTable(target.sync_table, resource=resource))


# ---- output --------------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(section: dict[str, Any] | None, key: str) -> str:
    if section is None:
        return "-"
    if "error" in section:
        return "error"
    return str(section.get(key, 0))


def render(report: StatusReport, target: StackTarget) -> str:
    """The report as a person reads it: one section after the other, then the verdict."""
    lines = [f"sugar-xero status: {target.where}", f"sync table {target.sync_table}"
             + (f" at {target.endpoint_url}" if target.endpoint_url else ""), ""]
    organisations = target.details.get("organisations") or {}
    if organisations:
        lines.append("Organisations (mapping configuration: documents are routed to one of these)")
        lines += _table(["NAME", "XERO TENANT"], [[name, tenant] for name, tenant in organisations.items()])
        lines.append("")
    lines += ["Connections"] + render_connections(report.connections)
    lines += ["", "Jobs"]
    states = list(JOB_STATES) + [s for s in report.jobs if s not in JOB_STATES]
    lines += _table(states, [[str(report.jobs.get(s, 0)) for s in states]])
    lines += ["", f"Latest failures ({len(report.recent_failures)}, newest first)"]
    lines += render_failures(report.recent_failures)
    lines += ["", "Queues (approximate message counts)"] + render_queues(report.queues)
    lines += ["", "Xero rate limits per organisation"] + render_rate_limits(report.rate_limits)
    lines += ["", "Last reconcile per organisation"]
    lines += render_reconciles(report.reconciles)
    lines += ["", "CRM fields and hooks (last check)"] + render_crm_check(report.crm_check)
    lines.append("")
    if report.healthy:
        lines.append("Healthy.")
    else:
        lines.append(f"{len(report.problems)} problem(s):")
        lines += [f"  - {p}" for p in report.problems]
    return "\n".join(lines)


def render_connections(connections: list[dict[str, Any]]) -> list[str]:
    if not connections:
        return ["  none recorded yet: run `sugar-xero connect` (Custom Connections connect on first use)"]
    rows = []
    for c in connections:
        tenant = c.get("tenant_name") or c.get("tenant_id") or "-"
        if c.get("tenant_name") and c.get("tenant_id"):
            tenant = f"{c['tenant_name']} ({c['tenant_id']})"
        extra = len(c.get("tenants") or []) - 1
        tenant += f" +{extra} more" if extra > 0 else ""
        status = str(c.get("status", "?"))
        rows.append([c["connection_id"], c["system"], status.upper() if c.get("fix") else status,
                     tenant if c["system"] == "xero" else "-", c.get("access_expires_at") or "-",
                     "FIX: " + c["fix"] if c.get("fix") else str(c.get("note") or "")])
    return _table(["CONNECTION", "SYSTEM", "STATUS", "ORGANISATION", "ACCESS TOKEN EXPIRES", "NOTE"], rows)


def render_failures(failures: list[dict[str, Any]]) -> list[str]:
    if not failures:
        return ["  none"]
    return _table(["JOB", "KIND", "CRM", "UPDATED", "ATTEMPTS", "ERROR"],
                  [[f["job_id"], f["kind"] + (f" (organisation {f['tenant_id']})" if f.get("tenant_id") else ""),
                    f"{f['crm_module']}/{f['crm_id']}", f["updated_at"],
                    str(f["attempts"]), _clip(f["error"], 100)] for f in failures])


def render_queues(queues: list[dict[str, Any]]) -> list[str]:
    if not queues:
        return ["  no queue URLs known"]
    return _table(["QUEUE", "WAITING", "IN FLIGHT", "DELAYED", "DLQ WAITING", "DLQ IN FLIGHT", "DLQ DELAYED"],
                  [[q["name"], _count(q["queue"], "visible"), _count(q["queue"], "in_flight"),
                    _count(q["queue"], "delayed"), _count(q["dlq"], "visible"), _count(q["dlq"], "in_flight"),
                    _count(q["dlq"], "delayed")] for q in queues])


def render_rate_limits(rate_limits: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    limits = [r for r in rate_limits if "error" not in r]
    if limits:
        lines += _table(["TENANT", "THIS MINUTE", "TODAY (UTC)", "IN FLIGHT", "BLOCKED UNTIL"],
                        [[r["tenant_id"], f"{r['minute']['used']} / {r['minute']['limit']}",
                          f"{r['day']['used']} / {r['day']['limit']}",
                          f"{r['in_flight']['used']} / {r['in_flight']['limit']}",
                          f"{r['blocked_until_iso']} ({r['blocked_problem']} limit)" if r.get("blocked_until")
                          else "-"] for r in limits])
        app = limits[0]["app_minute"]
        lines.append(f"  app-wide this minute: {app['used']} / {app['limit']}")
    lines += [f"  {r['tenant_id']}: could not read ({r['error']})" for r in rate_limits if "error" in r]
    if not rate_limits:
        lines.append("  no organisation recorded yet")
    return lines


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in values.items() if n) or "none"


def render_crm_check(check: dict[str, Any] | None) -> list[str]:
    if not check:
        return ["  never checked: run `sugar-xero sugar-check`"]
    lines = [f"  {check.get('checked_at')} by {check.get('source', 'sugar-xero sugar-check')}: "
             + ("everything present" if check.get("ok") else "PROBLEMS")]
    bad = [r for r in check.get("rows") or [] if r.get("state") != "present"]
    if bad:
        lines += _table(["MODULE", "FIELD / EVENT", "EXPECTED", "FOUND", "STATE"],
                        [[r["module"], r["name"], _clip(r["expected"], 60), _clip(r.get("found") or "-", 60),
                          r["state"].upper()] for r in bad[:20]])
    lines += [f"  error: {_clip(e, 150)}" for e in check.get("errors") or []]
    return lines


def render_reconciles(rows: list[dict[str, Any]]) -> list[str]:
    """The "last reconcile" section: one row per organisation, then its drift samples and errors."""
    if not rows:
        return ["  no organisation recorded yet"]
    table, details = [], []
    for row in rows:
        if row.get("error"):
            table.append([row["tenant_id"], "could not read", "-", "-", "-", "-"])
            continue
        if row.get("never"):
            table.append([row["tenant_id"], "never", "-", "-", "-", "-"])
            continue
        table.append([row["tenant_id"], str(row.get("finished") or "-"), "yes" if row.get("complete") else "NO",
                      str(row.get("repaired_total", 0)), str(row.get("drift_total", 0)),
                      str(len(row.get("errors") or []))])
        if row.get("repaired"):
            details.append(f"  {row['tenant_id']} repaired: {_counts(row['repaired'])}")
        if row.get("drift"):
            details.append(f"  {row['tenant_id']} drift: {_counts(row['drift'])}")
            for kind, samples in (row.get("drift_samples") or {}).items():
                if samples:
                    details.append(f"    {kind.replace('_', ' ')}: {', '.join(samples[:5])}"
                                   + (" ..." if len(samples) > 5 else ""))
        for error in (row.get("errors") or [])[:3]:
            details.append(f"  {row['tenant_id']} error: {_clip(error, 150)}")
        for problem in (row.get("config_problems") or [])[:5]:
            details.append(f"  {row['tenant_id']} mapping: {_clip(problem, 150)}")
    return _table(["TENANT", "FINISHED", "COMPLETE", "REPAIRED", "DRIFT", "ERRORS"], table) + details


def run(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
        environ: Mapping[str, str] | None = None, cloudformation: Callable[[], Any] | None = None,
        session: Any = None, clock: Callable[[], float] = time.time) -> int:
    """The command. ``environ``, ``cloudformation`` (a client factory), ``session`` (boto3) and
    ``clock`` default to the real ones; tests pass their own."""
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    target = locate(args, environ, cloudformation, err)
    if target is None:
        return EXIT_NO_STACK
    if args.day_limit:
        target = replace(target, day_limit=args.day_limit)
    try:
        report = report_for(target, failures=max(0, args.failures), session=session, clock=clock)
    except Exception as error:
        print(f"Cannot read the sync table {target.sync_table} ({target.where}): {type(error).__name__}: {error}",
              file=err)
        return EXIT_NO_STACK
    if args.json:
        print(json.dumps({"stack": target.as_dict(), **report.as_dict()}, indent=2, default=str), file=out)
    else:
        print(render(report, target), file=out)
    return EXIT_HEALTHY if report.healthy else EXIT_PROBLEMS
