"""reconcile: the scheduled pass that repairs drift between the CRM, the sync state and Xero
(``shared.usecases.reconcile``).

Invoked three ways:
- by EventBridge Scheduler (``source: aws.scheduler``): the once-per-tick steps (stuck jobs, the
  refresh token), then a pass per Xero organisation, here, or, when there are several and the
  ReconcileQueue is configured, one message per organisation so each gets a Lambda of its own;
- by SQS (ReconcileQueue): one organisation's pass per message;
- directly (``sugar-xero reconcile``): ``{"source": "sugar-xero.cli", "tenant_id": optional,
  "deep": bool}``, one pass now, its reports returned.
"""

from __future__ import annotations

# First, before pydantic is loaded (see shared.api.sqs).
from shared.api.sqs import is_sqs_event, run_batch  # isort: skip

import time
import uuid
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import wiring
from shared.config import settings
from shared.errors import ConnectionNotReady
from shared.mapping.settings import mapping_file
from shared.observability import MetricNames, logger, metrics, tracer
from shared.usecases.reconcile import GlobalPorts, TenantPorts, TenantReport, reconcile_tenant
from shared.usecases.sugar_check import nightly_crm_check
from shared.usecases.work import BatchResult, WorkItem

KIND = "reconcile.tenant"
CLI_SOURCE = "sugar-xero.cli"
_invocation: dict[str, float | None] = {"deadline": None}  # the running invocation's, for SQS batches


# ---- composition -------------------------------------------------------------------------------
def tenants() -> list[str]:
    """Every organisation the connection reaches: configured, recorded at onboarding (all of a
    multi-organisation connection), or the one ``wiring.tenant_id`` finds."""
    found = [settings().xero_tenant_id] if settings().xero_tenant_id else []
    connection = wiring.job_store().get_connection(settings().connection_id) or {}
    if connection.get("tenant_id"):
        found.append(str(connection["tenant_id"]))
    found += [str(t["tenant_id"]) for t in connection.get("tenants") or []
              if isinstance(t, dict) and t.get("tenant_id")]
    organisations = mapping_file().organisations
    if organisations is not None:  # every organisation documents are routed to (one CRM, several)
        found += list(organisations.names.values())
    return list(dict.fromkeys(found)) or [wiring.tenant_id()]


def _work_queues() -> dict[str, Any]:
    queues: dict[str, Any] = {}
    for name, url, factory in (("contact", settings().contact_queue_url, wiring.contact_queue),
                               ("invoice", settings().invoice_queue_url, wiring.invoice_queue),
                               ("webhook", settings().webhook_queue_url, wiring.webhook_queue)):
        if url:
            queues[name] = factory()
    return queues


def _apply_documents():
    from shared.usecases.xero_updates import apply_documents

    return apply_documents


def tenant_ports(tenant_id: str, push_tenant_id: str) -> TenantPorts:
    crm = wiring.sugar_client() if settings().sugar_base_url else None
    return TenantPorts(
        tenant_id=tenant_id, xero=wiring.xero_client_for(tenant_id), state=wiring.reconcile_state(),
        mappings=wiring.job_store(), apply_documents=_apply_documents(),
        config=mapping_file().for_tenant(tenant_id), crm=crm, jobs=wiring.job_store(), queues=_work_queues(),
        status_base_url=settings().public_base_url, push_tenant=tenant_id == push_tenant_id,
        on_changes=wiring.billing_rules(tenant_id),
        crm_check=(lambda: nightly_crm_check(crm)) if crm is not None and tenant_id == push_tenant_id else None)


def _redrive(job_id: str) -> Any:
    try:
        from shared.usecases.redrive import redrive_job
    except ImportError:  # an older layer: the reconcile's own
        from shared.usecases.reconcile import redrive_from_payload

        return redrive_from_payload(job_id, jobs=wiring.job_store(), queues=_work_queues())
    result = redrive_job(job_id, jobs=wiring.job_store(), queues=_work_queues(),
                         reason="re-driven by the reconciliation: stuck past its threshold")
    if not result.sent:
        raise RuntimeError(result.reason)
    return result


def global_ports() -> GlobalPorts:
    return GlobalPorts(state=wiring.reconcile_state(), jobs=wiring.job_store(), redrive=_redrive,
                       tokens=wiring.xero_tokens(), token_store=wiring.job_store(),
                       connection_id=settings().connection_id)


# ---- running -----------------------------------------------------------------------------------
def run_pass(tenant_ids: list[str] | None = None, *, deadline: float | None = None, deep: bool = False,
             include_global: bool = True) -> list[TenantReport]:
    """One pass for each organisation (all by default), here and now; the once-per-tick steps
    ride on the first one."""
    push_tenant_id = wiring.tenant_id()
    reports = []
    for index, tenant_id in enumerate(tenant_ids or tenants()):
        report = reconcile_tenant(tenant_ports(tenant_id, push_tenant_id), deadline=deadline, deep=deep,
                                  global_ports=global_ports() if include_global and index == 0 else None)
        _overdue_rules(tenant_id, report)
        _emit(report)
        reports.append(report)
    return reports


def _overdue_rules(tenant_id: str, report: TenantReport) -> None:
    """Billing rules that fire when an invoice is overdue by N days: no Xero event says so, so the
    daily pass looks (``shared.usecases.billing.overdue_pass``)."""
    on_changes = wiring.billing_rules(tenant_id)
    if on_changes is None:
        return
    from shared.billing.rules import rules_file
    from shared.usecases.billing import overdue_pass

    try:
        handed = overdue_pass(tenant_id, state=wiring.reconcile_state(), rules=rules_file(),
                              on_changes=on_changes, today=wiring.organisation_today(tenant_id))
    except Exception as error:  # noqa: BLE001 - reported and tried again by the next pass
        report.errors.append(f"overdue billing rules: {error}")
        return
    if handed:
        logger.info("overdue billing rules run", extra={"tenant_id": tenant_id, "invoices": handed})


def _emit(report: TenantReport) -> None:
    """Metrics with the default dimension only (the template's alarms match on it); the
    per-tenant detail is in the stored report and the log line."""
    metrics.add_metric(name=MetricNames.DRIFT_RECORDS, unit="Count", value=report.drift_total)
    metrics.add_metric(name=MetricNames.RECONCILE_REPAIRED, unit="Count", value=report.repaired_total)
    metrics.add_metric(name=MetricNames.RECONCILE_FAILED, unit="Count", value=1 if report.errors else 0)
    metrics.add_metric(name=MetricNames.RECONCILE_INCOMPLETE, unit="Count", value=0 if report.complete else 1)
    if report.repaired.get("jobs_redriven"):
        metrics.add_metric(name=MetricNames.JOBS_RETRIED, unit="Count", value=report.repaired["jobs_redriven"])
    log = logger.error if report.errors else logger.info
    log("reconcile pass", extra={"tenant_id": report.tenant_id, "repaired": report.repaired, "drift": report.drift,
                                 "drift_samples": report.drift_samples, "errors": report.errors,
                                 "complete": report.complete, "xero_calls": report.xero_calls})


def _deadline(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return time.monotonic() + remaining() / 1000 if remaining else None


def _summary(reports: list[TenantReport], status: str | None = None) -> dict[str, Any]:
    return {"status": status or ("errors" if any(r.errors for r in reports) else "ok"),
            "tenants": [r.as_dict() for r in reports],
            "repaired": sum(r.repaired_total for r in reports), "drift": sum(r.drift_total for r in reports)}


def _fan_out(tenant_ids: list[str], stamp: str) -> None:
    queue = wiring.reconcile_queue()
    for index, tenant_id in enumerate(tenant_ids):
        queue.send({"job_id": f"reconcile-{tenant_id}-{stamp}", "kind": KIND,
                    "document": {"tenant_id": tenant_id, "global": index == 0}})


def scheduled(event: dict[str, Any], context: Any) -> dict[str, Any]:
    requested = event.get("tenant_id")
    try:
        tenant_ids = [str(requested)] if requested else tenants()
    except ConnectionNotReady as error:
        logger.warning("reconcile skipped: no usable Xero connection", extra={"error": str(error)})
        return {"status": "not_connected", "error": str(error), "tenants": []}
    if len(tenant_ids) > 1 and settings().reconcile_queue_url and event.get("source") != CLI_SOURCE:
        _fan_out(tenant_ids, str(event.get("time") or uuid.uuid4().hex))
        return {"status": "fanned_out", "tenants": tenant_ids}
    try:
        reports = run_pass(tenant_ids, deadline=_deadline(context), deep=bool(event.get("deep")))
    except ConnectionNotReady as error:
        logger.warning("reconcile skipped: no usable Xero connection", extra={"error": str(error)})
        return {"status": "not_connected", "error": str(error), "tenants": []}
    return _summary(reports)


def work(items: list[WorkItem]) -> BatchResult:
    """One organisation's pass per message; a pass that could not start is retried."""
    result = BatchResult()
    for item in items:
        tenant_id = str(item.document.get("tenant_id") or "")
        if item.kind != KIND or not tenant_id:
            logger.error("not a reconcile message; left for the dead-letter queue", extra={"job_id": item.job_id})
            result.retry.add(item.message_id)
            continue
        try:
            run_pass([tenant_id], deadline=_invocation["deadline"], include_global=bool(item.document.get("global")))
        except Exception as error:  # noqa: BLE001 - the message comes back, then the DLQ
            logger.exception("reconcile pass could not run", extra={"tenant_id": tenant_id})
            result.defer([item.message_id], 300.0 if isinstance(error, ConnectionNotReady) else None)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry states, URLs, job data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        _invocation["deadline"] = _deadline(context)
        return run_batch(event, context, work, defer=wiring.reconcile_queue().defer)
    logger.info("reconcile fired", extra={"source": event.get("source"), "scheduled_at": event.get("time")})
    return scheduled(event, context)
