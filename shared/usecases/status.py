"""What ``sugar-xero status`` reports: connection health, jobs by state and the latest failures,
queue and dead-letter depth, and rate-limit headroom per Xero organisation.

The adapters come in as arguments (the sync table's read-only scan, an SQS depth probe, the
rate gate's ``headroom``), so this module decides what is healthy and the command only finds
the stack and prints. Nothing here ever holds a token: the scan does not read them.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

JOB_STATES = ("queued", "in_progress", "succeeded", "failed", "ignored")
RECENT_FAILURES = 10
RECONCILE_STALE_SECONDS = 2 * 3600  # the schedule runs every 15 minutes
SUGAR_CONNECTION_PREFIX = "sugar:"  # shared.sugar.token_cache.sugar_connection_id
CONNECT_FIX = "run `sugar-xero connect`"

# Job errors are our own messages, but one could quote an answer that echoed a credential.
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_NAMED_CREDENTIAL = re.compile(r"(?i)\b(access_token|refresh_token|client_secret|password|authorization|token)"
                               r"(\"?\s*[:=]\s*\"?)[^\s\"&,;}]+")


class StatusStore(Protocol):
    def scan_status_items(self) -> Iterable[tuple[str, str, dict[str, Any]]]:
        """(kind, id, attributes) for each job, token and connection item; tokens' values excluded."""


class QueueProbe(Protocol):
    def depth(self, queue_url: str) -> dict[str, int]:
        """``visible``, ``in_flight`` and ``delayed`` message counts (approximate, as SQS says)."""


class HeadroomReader(Protocol):
    def headroom(self, tenant_id: str) -> dict[str, Any]: ...


class ReconcileReader(Protocol):
    def last_reconciles(self, tenant_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The last reconcile pass's report per tenant (``shared.usecases.reconcile``), None if none."""


class CrmCheckReader(Protocol):
    def get_crm_check(self) -> dict[str, Any] | None:
        """The last `sugar-xero sugar-check` (``shared.usecases.sugar_check``), None if none."""


@dataclass(frozen=True)
class QueueSpec:
    """A work queue and its dead-letter queue; either URL may be unknown."""

    name: str
    url: str | None = None
    dlq_url: str | None = None


@dataclass
class StatusReport:
    connections: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    recent_failures: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    rate_limits: list[dict[str, Any]] = field(default_factory=list)
    reconciles: list[dict[str, Any]] = field(default_factory=list)
    crm_check: dict[str, Any] | None = None  # the newest check of the CRM's fields and hooks
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "problems": list(self.problems), "connections": self.connections,
                "jobs": self.jobs, "recent_failures": self.recent_failures, "queues": self.queues,
                "rate_limits": self.rate_limits, "reconcile": self.reconciles, "crm_check": self.crm_check}


def gather(*, store: StatusStore, probe: QueueProbe | None, limits: HeadroomReader | None,
           queues: Sequence[QueueSpec] = (), configured_tenants: Iterable[str] = (),
           recent_failures: int = RECENT_FAILURES, clock: Callable[[], float] = time.time,
           reconcile: ReconcileReader | None = None, crm_check: CrmCheckReader | None = None) -> StatusReport:
    """The whole report. A failing scan of the sync table raises (nothing else can be said);
    a queue or a rate-limit read that fails is reported as a problem in its own row."""
    now = clock()
    report = StatusReport(jobs=dict.fromkeys(JOB_STATES, 0))
    failures: list[tuple[str, int, dict[str, Any]]] = []  # a min-heap of the newest failures
    tokens: dict[str, dict[str, Any]] = {}
    connections: dict[str, dict[str, Any]] = {}
    for kind, item_id, item in store.scan_status_items():
        if kind == "job":
            if _number(item.get("expires_at"), default=now + 1) < now:
                continue  # expired: DynamoDB's TTL deletes it within a day or two
            state = str(item.get("status") or "unknown")
            report.jobs[state] = report.jobs.get(state, 0) + 1
            if state == "failed" and recent_failures > 0:
                entry = (str(item.get("updated_at") or ""), len(failures), _failure(item_id, item))
                if len(failures) < recent_failures:
                    heapq.heappush(failures, entry)
                else:
                    heapq.heappushpop(failures, entry)
        elif kind == "token":
            tokens[item_id] = item
        elif kind == "connection":
            connections[item_id] = item
    report.recent_failures = [entry[2] for entry in sorted(failures, reverse=True)]

    report.connections = _connections(tokens, connections, now, report.problems)
    for spec in queues:
        report.queues.append(_queue_row(spec, probe, report.problems))
    tenants = _tenants(report.connections, configured_tenants)
    for tenant_id in tenants:
        report.rate_limits.append(_headroom_row(tenant_id, limits, report.problems))
    if reconcile is not None and tenants:
        report.reconciles = _reconcile_rows(tenants, reconcile, now, report.problems)
    report.crm_check = _crm_check(crm_check, report.reconciles, report.problems)
    return report


def _crm_check(reader: CrmCheckReader | None, reconciles: list[dict[str, Any]],
               problems: list[str]) -> dict[str, Any] | None:
    """The newest check of the CRM: `sugar-xero sugar-check`'s, or the nightly one a reconcile
    pass ran. A field or hook it found missing needs a person: jobs writing it would fail."""
    found: list[dict[str, Any]] = [r["crm_check"] for r in reconciles if r.get("crm_check")]
    if reader is not None:
        try:
            stored = reader.get_crm_check()
        except Exception as error:  # noqa: BLE001 - one unreadable row, not the whole report
            problems.append(f"could not read the last CRM check: {type(error).__name__}")
            stored = None
        if stored:
            found.append({**stored, "source": "sugar-xero sugar-check"})
    if not found:
        return None
    newest = max(found, key=lambda check: str(check.get("checked_at") or ""))
    if not newest.get("ok", True):
        problems.append(f"the CRM lacks what the configuration needs (checked {newest.get('checked_at')}): "
                        f"{redact(str(newest.get('summary') or ''))[:300]}; build the package "
                        "(`sugar-xero sugar-package`), install it in Module Loader, run `sugar-xero sugar-check`")
    return newest


# ---- jobs ------------------------------------------------------------------------------------
def _failure(job_id: str, item: dict[str, Any]) -> dict[str, Any]:
    crm = item.get("crm") if isinstance(item.get("crm"), dict) else {}
    return {"job_id": str(item.get("job_id") or job_id), "kind": str(item.get("kind") or ""),
            "crm_module": str(crm.get("module") or ""), "crm_id": str(crm.get("id") or ""),
            "attempts": int(_number(item.get("attempts"), default=0)),
            "updated_at": str(item.get("updated_at") or ""), "error": redact(str(item.get("error") or "")),
            # a job of one organisation (one CRM, several): which one
            **({"tenant_id": str(item["tenant_id"])} if item.get("tenant_id") else {})}


def redact(text: str) -> str:
    """``text`` with credentials (``Bearer …``, ``password=…``, ``"refresh_token": "…"``) blanked."""
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group(1)} [redacted]", text)
    return _NAMED_CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)


# ---- connections -----------------------------------------------------------------------------
def _connections(tokens: dict[str, dict[str, Any]], connections: dict[str, dict[str, Any]], now: float,
                 problems: list[str]) -> list[dict[str, Any]]:
    rows = []
    ids = sorted(set(tokens) | set(connections))
    for connection_id in ids:
        connection = connections.get(connection_id) or {}
        parent = connection.get("parent_connection")
        if parent and parent in ids and connection_id not in tokens:
            continue  # one organisation of a multi-organisation connection: listed under its parent
        if connection_id.startswith(SUGAR_CONNECTION_PREFIX):
            rows.append(_sugar_row(connection_id, tokens.get(connection_id) or {}, now, problems))
        else:
            rows.append(_xero_row(connection_id, tokens.get(connection_id), connection, now, problems))
    return rows


def _xero_row(connection_id: str, token: dict[str, Any] | None, connection: dict[str, Any], now: float,
              problems: list[str]) -> dict[str, Any]:
    tenants = [{"tenant_id": str(t.get("tenant_id") or ""), "tenant_name": str(t.get("tenant_name") or "")}
               for t in connection.get("tenants") or [] if isinstance(t, dict)]
    row: dict[str, Any] = {
        "connection_id": connection_id, "system": "xero",
        "tenant_id": str(connection.get("tenant_id") or "") or None,
        "tenant_name": str(connection.get("tenant_name") or "") or None,
        "tenants": tenants, "access_expires_at": None, "fix": None,
    }
    if token is None:
        row.update(status="no_token", note="no token stored yet: " + CONNECT_FIX
                   + " (Custom Connections get one on first use)")
        return row
    expires = _number(token.get("access_expires_at"), default=0)
    row["access_expires_at"] = _iso(expires) if expires else None
    if str(token.get("status") or "") == "disconnected":
        since = _number(token.get("disconnected_at"), default=0)
        row.update(status="disconnected", disconnected_at=_iso(since) if since else None, fix=CONNECT_FIX,
                   note="Xero refused the refresh token (invalid_grant)")
        problems.append(f"Xero connection {connection_id!r} is disconnected"
                        + (f" since {_iso(since)}" if since else "") + f": {CONNECT_FIX}")
        return row
    row["status"] = "connected"
    if _number(token.get("lease_until"), default=0) > now:
        row["note"] = "refreshing its access token now"
    elif expires and expires <= now:
        row["note"] = "access token expired; it is refreshed on next use"
    return row


def _sugar_row(connection_id: str, token: dict[str, Any], now: float, problems: list[str]) -> dict[str, Any]:
    expires = _number(token.get("access_expires_at"), default=0)
    row: dict[str, Any] = {"connection_id": connection_id, "system": "sugar",
                           "status": str(token.get("status") or "unknown"),
                           "access_expires_at": _iso(expires) if expires else None, "fix": None}
    if row["status"] == "login_refused":
        label = str(token.get("login_refused_label") or "need_login")
        row.update(fix="check SUGAR_USERNAME, SUGAR_PASSWORD and SUGAR_PLATFORM in the connector's secret",
                   note=f"Sugar refused the integration user's login ({label})")
        problems.append(f"Sugar refused the login of {connection_id!r} ({label}): {row['fix']}")
    return row


# ---- queues ----------------------------------------------------------------------------------
def _queue_row(spec: QueueSpec, probe: QueueProbe | None, problems: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": spec.name, "url": spec.url, "dlq_url": spec.dlq_url,
                           "queue": None, "dlq": None}
    for key, url in (("queue", spec.url), ("dlq", spec.dlq_url)):
        if not url or probe is None:
            continue
        try:
            row[key] = probe.depth(url)
        except Exception as error:  # a deleted queue or missing permission: say which, go on
            row[key] = {"error": f"{type(error).__name__}: {redact(str(error))[:200]}"}
            problems.append(f"could not read the {spec.name} {'dead-letter ' if key == 'dlq' else ''}queue: "
                            f"{row[key]['error']}")
    dlq = row["dlq"] or {}
    waiting = sum(int(dlq.get(k, 0)) for k in ("visible", "in_flight", "delayed"))
    if waiting:
        problems.append(f"{waiting} message(s) in the {spec.name} dead-letter queue: work that failed "
                        "every attempt; inspect and re-drive it (`sugar-xero replay`)")
    return row


# ---- rate limits -----------------------------------------------------------------------------
def _tenants(connections: list[dict[str, Any]], configured: Iterable[str]) -> list[str]:
    found = [t for t in configured if t]
    for row in connections:
        if row.get("system") != "xero":
            continue
        found += [row["tenant_id"]] if row.get("tenant_id") else []
        found += [t["tenant_id"] for t in row.get("tenants") or [] if t.get("tenant_id")]
    return list(dict.fromkeys(found))


def _headroom_row(tenant_id: str, limits: HeadroomReader | None, problems: list[str]) -> dict[str, Any]:
    if limits is None:
        return {"tenant_id": tenant_id, "error": "no rate-limit reader"}
    try:
        row = dict(limits.headroom(tenant_id))
    except Exception as error:
        problems.append(f"could not read the rate limits of tenant {tenant_id}: {type(error).__name__}")
        return {"tenant_id": tenant_id, "error": f"{type(error).__name__}: {redact(str(error))[:200]}"}
    until = row.get("blocked_until")
    row["blocked_until_iso"] = _iso(float(until)) if until else None
    return row


# ---- reconciliation --------------------------------------------------------------------------
def _reconcile_rows(tenants: list[str], reader: ReconcileReader, now: float,
                    problems: list[str]) -> list[dict[str, Any]]:
    """The last pass per organisation: when, what it repaired, the drift it found (with sample
    records), its errors, and the mapping settings the organisation lacks."""
    try:
        found = reader.last_reconciles(tenants)
    except Exception as error:
        problems.append(f"could not read the last reconcile passes: {type(error).__name__}")
        return [{"tenant_id": t, "error": f"{type(error).__name__}: {redact(str(error))[:200]}"} for t in tenants]
    rows = []
    for tenant_id in tenants:
        last = found.get(tenant_id)
        if not last:
            rows.append({"tenant_id": tenant_id, "never": True})
            continue
        finished = str(last.get("finished") or last.get("started") or "")
        try:
            age = now - datetime.fromisoformat(finished).timestamp()
        except ValueError:
            age = None
        errors = [redact(str(e)) for e in last.get("errors") or []]
        config_problems = [str(p) for p in (last.get("metadata") or {}).get("problems") or []]
        crm_check = (last.get("metadata") or {}).get("crm_check")
        drift = {k: int(v) for k, v in (last.get("drift") or {}).items() if v}
        repaired = {k: int(v) for k, v in (last.get("repaired") or {}).items() if v}
        rows.append({"tenant_id": tenant_id, "never": False, "started": last.get("started"), "finished": finished,
                     "age_seconds": int(age) if age is not None else None, "complete": bool(last.get("complete")),
                     "repaired": repaired, "repaired_total": sum(repaired.values()), "drift": drift,
                     "drift_total": sum(drift.values()), "drift_samples": last.get("drift_samples") or {},
                     "errors": errors, "notes": list(last.get("notes") or []), "config_problems": config_problems,
                     "xero_calls": last.get("xero_calls"),
                     **({"crm_check": {**crm_check, "source": f"nightly check (reconcile of {tenant_id})"}}
                        if crm_check else {})})
        if errors:
            problems.append(f"the last reconcile of tenant {tenant_id} ({finished}) had {len(errors)} error(s), "
                            f"first: {errors[0][:200]}")
        if config_problems:
            problems.append(f"the mapping names settings tenant {tenant_id}'s Xero organisation lacks (every "
                            f"document using them will fail): {'; '.join(config_problems[:3])}"
                            + (f"; and {len(config_problems) - 3} more" if len(config_problems) > 3 else ""))
        if age is not None and age > RECONCILE_STALE_SECONDS:
            problems.append(f"no reconcile of tenant {tenant_id} since {finished}: is the schedule (ReconcileSchedule) "
                            "enabled and the ReconcileFunction healthy?")
    return rows


# ---- small helpers ---------------------------------------------------------------------------
def _number(value: Any, *, default: float) -> float:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value)) if value is not None else default
    except ValueError:
        return default


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
