"""Billing rules at work: for each invoice whose Xero state moved, set CRM fields, raise
commission bills and write revenue received, as the rules say (``shared/billing``).

Called by the webhook worker and the reconcile pass with the document changes they applied.
Transitions are judged from the ledger's last fully evaluated state (the change's ``before``
only the first time), and that state moves on only once every action of the change succeeded:
a change that failed part-way is evaluated again by the caller's retry, or by any later change
or reconcile pass, and finds the same transition. Each action is safe to repeat: fields and
revenue are absolute values, and a commission bill is claimed in the ledger once, ever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from shared.billing.rules import (
    CommissionBill,
    RecordRevenue,
    Rule,
    RulesFile,
    SetFields,
    Skip,
    evaluate,
    fired_rules,
    record_fields,
)
from shared.models.invoices import DocumentChange, PurchaseDocument, XeroDocumentState
from shared.observability import logger
from shared.state.records import Mapping

RETRYABLE_STATUSES = frozenset({0, 408, 409, 429, 500, 502, 503, 504})
REVENUE_RECHECKS = 10


class BillingLedgerPort(Protocol):
    def last_states(self, tenant_id: str, xero_ids: list[str]) -> dict[str, XeroDocumentState]: ...

    def save_state(self, tenant_id: str, state: XeroDocumentState) -> bool: ...

    def has_fired(self, tenant_id: str, xero_id: str, rule: str, event: str) -> bool: ...

    def mark_fired(self, tenant_id: str, xero_id: str, rule: str, event: str) -> None: ...

    def commission(self, tenant_id: str, bill_id: str) -> dict[str, Any] | None: ...

    def claim_commission(self, tenant_id: str, bill_id: str, document: dict[str, Any], *, rule: str,
                         xero_id: str) -> tuple[dict[str, Any], bool]: ...

    def mark_commission_queued(self, tenant_id: str, bill_id: str, job_id: str | None = None) -> None: ...

    def record_revenue(self, tenant_id: str, module: str, record_id: str, field: str, *, xero_id: str,
                       amount: Decimal, updated_utc: str | None) -> Decimal: ...

    def revenue_total(self, tenant_id: str, module: str, record_id: str, field: str) -> Decimal: ...


class Crm(Protocol):
    def get_record(self, module: str, record_id: str, fields: Any = None) -> dict[str, Any]: ...

    def update_records_bulk(self, module: str, updates: Any, chunk_size: int = 20) -> dict[str, Any]: ...


AcceptPurchase = Callable[[PurchaseDocument], Any]


class ActionFailed(Exception):
    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ChangeFailure:
    change: DocumentChange
    error: str
    retryable: bool


@dataclass
class BillingReport:
    fields_set: list[SetFields] = field(default_factory=list)
    bills_raised: list[str] = field(default_factory=list)  # bill ids accepted by this run
    bills_already_raised: list[str] = field(default_factory=list)
    revenue_written: list[tuple[str, str, str, Decimal]] = field(default_factory=list)  # module, id, field, total
    skipped: list[Skip] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # xero ids whose change was older than the ledger's
    evaluated: int = 0
    failed: list[ChangeFailure] = field(default_factory=list)

    @property
    def retry(self) -> list[DocumentChange]:
        """Changes to try again (their message goes back to the queue): nothing is lost and
        nothing already done is done twice."""
        return [failure.change for failure in self.failed if failure.retryable]


def _rules_for(rules: RulesFile | list[Rule], tenant_id: str) -> list[Rule]:
    return rules.for_tenant(tenant_id) if isinstance(rules, RulesFile) else list(rules)


def _retryable(error: Exception) -> bool:
    return bool(getattr(error, "retryable", True))


def run_billing_rules(changes: list[DocumentChange], *, rules: RulesFile | list[Rule], crm: Crm,
                      accept_purchase: AcceptPurchase, ledger: BillingLedgerPort,
                      today: dt.date) -> BillingReport:
    report = BillingReport()
    by_tenant: dict[str, list[DocumentChange]] = {}
    for change in changes:
        by_tenant.setdefault(change.tenant_id, []).append(change)
    for tenant_id, tenant_changes in by_tenant.items():
        tenant_rules = _rules_for(rules, tenant_id)
        if not tenant_rules:
            continue
        last = ledger.last_states(tenant_id, [c.after.xero_id for c in tenant_changes])
        for change in tenant_changes:
            try:
                _run_one(change, last.get(change.after.xero_id), tenant_rules, crm=crm,
                         accept_purchase=accept_purchase, ledger=ledger, today=today, report=report)
            except Exception as error:  # one invoice's failure leaves the others' work done
                retryable = _retryable(error)
                logger.warning("billing rules failed for an invoice", extra={
                    "xero_id": change.after.xero_id, "crm": f"{change.crm_module}/{change.crm_id}",
                    "error": str(error)[:500], "retryable": retryable})
                report.failed.append(ChangeFailure(change, str(error)[:500], retryable))
    return report


def _run_one(change: DocumentChange, last: XeroDocumentState | None, rules: list[Rule], *, crm: Crm,
             accept_purchase: AcceptPurchase, ledger: BillingLedgerPort, today: dt.date,
             report: BillingReport) -> None:
    tenant_id, after = change.tenant_id, change.after
    if last is not None and last.updated_utc and after.updated_utc and after.updated_utc < last.updated_utc:
        report.stale.append(after.xero_id)
        return
    if last is not None:
        change = change.model_copy(update={"before": last})
    fired = [(rule, event) for rule, event in fired_rules(rules, change, today)
             if event != "overdue" or not ledger.has_fired(tenant_id, after.xero_id, rule.name, event)]
    report.evaluated += 1
    if fired:
        if last is None and change.before is not None:
            # The transition's starting point, kept in case an action fails: whatever evaluates
            # this invoice next (the retry, a later change, a reconcile pass) finds it again.
            ledger.save_state(tenant_id, change.before)
        firing = [rule for rule, _ in fired]
        wanted = record_fields(firing)
        record = crm.get_record(change.crm_module, change.crm_id, fields=wanted) if wanted else {}
        actions = evaluate(firing, change, record, today)
        errors: list[ActionFailed] = []
        _set_fields([a for a in actions if isinstance(a, SetFields)], crm, report, errors)
        for action in actions:
            try:
                if isinstance(action, CommissionBill):
                    _commission(action, tenant_id, crm, accept_purchase, ledger, report)
                elif isinstance(action, RecordRevenue):
                    _revenue(action, tenant_id, crm, ledger, report)
                elif isinstance(action, Skip):
                    logger.warning("billing rule action skipped", extra={
                        "rule": action.rule, "action": action.action, "reason": action.reason,
                        "xero_id": action.xero_id})
                    report.skipped.append(action)
            except ActionFailed as error:
                errors.append(error)
            except Exception as error:
                errors.append(ActionFailed(f"{action.kind} ({action.rule}): {error}", retryable=_retryable(error)))
        if errors:
            raise ActionFailed("; ".join(str(e) for e in errors), retryable=any(e.retryable for e in errors))
        for rule, event in fired:
            if event == "overdue":
                ledger.mark_fired(tenant_id, after.xero_id, rule.name, event)
    if last is None or last != after:
        ledger.save_state(tenant_id, after)


def _set_fields(actions: list[SetFields], crm: Crm, report: BillingReport, errors: list[ActionFailed]) -> None:
    """One bulk call per module; two rules setting the same record merge in rule order."""
    by_module: dict[str, dict[str, dict[str, Any]]] = {}
    for action in actions:
        by_module.setdefault(action.module, {}).setdefault(action.record_id, {}).update(action.values)
    done: set[tuple[str, str]] = set()
    for module, updates in by_module.items():
        try:
            results = crm.update_records_bulk(module, updates)
        except Exception as error:
            errors.append(ActionFailed(f"set_fields on {module}: {error}", retryable=_retryable(error)))
            continue
        for record_id in updates:
            result = results.get(record_id)
            if result is not None and result.ok:
                done.add((module, record_id))
                continue
            status = getattr(result, "status", 0)
            errors.append(ActionFailed(
                f"set_fields on {module} {record_id}: Sugar answered {status} {getattr(result, 'label', '') or ''}",
                retryable=status in RETRYABLE_STATUSES))
    report.fields_set.extend(a for a in actions if (a.module, a.record_id) in done)


def _commission(action: CommissionBill, tenant_id: str, crm: Crm, accept_purchase: AcceptPurchase,
                ledger: BillingLedgerPort, report: BillingReport) -> None:
    existing = ledger.commission(tenant_id, action.bill_id)
    if existing and existing["status"] == "queued":
        report.bills_already_raised.append(action.bill_id)
        return
    if existing is None:
        agent = action.agent_record_id
        if agent is None:  # the agent is on the owning user's record
            assert action.agent_user_id and action.user_field
            user = crm.get_record("Users", action.agent_user_id, fields=[action.user_field])
            value = user.get(action.user_field)
            agent = str(value.get("id") if isinstance(value, dict) else value or "").strip() or None
            if not agent:
                skip = Skip(rule=action.rule, event=action.event, xero_id=action.xero_id,
                            action="commission_bill",
                            reason=f"user {action.agent_user_id} has no {action.user_field}")
                logger.warning("billing rule action skipped", extra={"rule": skip.rule, "reason": skip.reason})
                report.skipped.append(skip)
                return
        document = action.document(agent).model_dump(mode="json")
        existing, _ = ledger.claim_commission(tenant_id, action.bill_id, document, rule=action.rule,
                                              xero_id=action.xero_id)
        if existing["status"] == "queued":  # another worker claimed and queued it meanwhile
            report.bills_already_raised.append(action.bill_id)
            return
    # Always the stored document: a retry on another day sends the very same bill (same job id).
    accepted = accept_purchase(PurchaseDocument.model_validate(existing["document"]))
    ledger.mark_commission_queued(tenant_id, action.bill_id, getattr(accepted, "job_id", None))
    report.bills_raised.append(action.bill_id)


def _revenue(action: RecordRevenue, tenant_id: str, crm: Crm, ledger: BillingLedgerPort,
             report: BillingReport) -> None:
    total = ledger.record_revenue(tenant_id, action.module, action.record_id, action.field,
                                  xero_id=action.xero_id, amount=action.amount,
                                  updated_utc=action.invoice_updated_utc)
    # Two workers for two invoices of one rep may write their totals in either order. Each
    # re-reads the sum after its write and writes again when it moved: the worker whose change
    # moved it last writes after that, so the newest sum lands last.
    for _ in range(REVENUE_RECHECKS):
        results = crm.update_records_bulk(action.module, {action.record_id: {action.field: str(total)}})
        result = results.get(action.record_id)
        if result is None or not result.ok:
            status = getattr(result, "status", 0)
            raise ActionFailed(f"revenue on {action.module} {action.record_id}: Sugar answered {status}",
                               retryable=status in RETRYABLE_STATUSES)
        now = ledger.revenue_total(tenant_id, action.module, action.record_id, action.field)
        if now == total:
            report.revenue_written.append((action.module, action.record_id, action.field, total))
            return
        total = now
    raise ActionFailed(f"revenue on {action.module} {action.record_id}: the total kept moving; trying again later",
                       retryable=True)


# ---- the daily pass over open invoices ------------------------------------------------------------
def overdue_changes(mappings: Iterable[Mapping], *, rules: RulesFile | list[Rule],
                    today: dt.date) -> list[DocumentChange]:
    """Changes (``before == after``) for the open invoices among ``mappings`` that some overdue
    rule could fire for today: what the reconcile pass hands ``run_billing_rules``. A mapping
    carries its stored Xero state (``Mapping.document``); its module is ``<CRM module>#<target>``."""
    changes: list[DocumentChange] = []
    for mapping in mappings:
        if not mapping.document:
            continue
        state = XeroDocumentState.model_validate(mapping.document)
        if state.status != "AUTHORISED" or state.amount_due <= 0 or state.due_date is None:
            continue
        change = DocumentChange(tenant_id=mapping.tenant_id, crm_module=mapping.module.split("#", 1)[0],
                                crm_id=mapping.crm_id, before=state, after=state)
        if any(event == "overdue" for _, event in fired_rules(_rules_for(rules, mapping.tenant_id), change, today)):
            changes.append(change)
    return changes


def purchase_acceptor(*, jobs: Any, queue: Any, status_base_url: str) -> AcceptPurchase:
    """``accept_purchase`` wired to the purchase path: a ``document.push`` job on the invoice
    queue. The job id is a hash of the document, so the same bill accepted twice is one job."""
    from shared.models.jobs import CrmRef
    from shared.usecases.accept import accept

    def accept_purchase(document: PurchaseDocument) -> Any:
        return accept(kind="document.push", crm=CrmRef(module=document.crm_module, id=document.crm_id),
                      document=document.model_dump(mode="json"), jobs=jobs, queue=queue,
                      status_base_url=status_base_url)
    return accept_purchase


OVERDUE_SLICES = 50  # bounded: 50 slices of about 5,000 mappings a day per organisation


def overdue_pass(tenant_id: str, *, state: Any, rules: RulesFile | list[Rule], on_changes: Any,
                 today: dt.date) -> int:
    """Once a day per organisation (the reconciliation calls it every pass): find the open
    invoices some ``overdue`` rule fires for today and run the rules on them. The day is marked
    done only after the rules ran, so a failure is tried again by the next pass; the ledger keeps
    each overdue rule to once per invoice. Returns how many invoices were handed to the rules."""
    if state.get_marker(tenant_id, "OVERDUE") == today.isoformat():
        return 0
    changes: list[DocumentChange] = []
    start_key = None
    for _ in range(OVERDUE_SLICES):
        mappings, start_key = state.scan_document_mappings(tenant_id, start_key, max_scanned=5000)
        changes += overdue_changes(mappings, rules=rules, today=today)
        if start_key is None:
            break
    if changes:
        on_changes(changes)
    state.put_marker(tenant_id, "OVERDUE", today.isoformat())
    return len(changes)
