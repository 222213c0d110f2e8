"""DynamoDB adapter for what billing rules have done, in the sync table under ``T#<tenant>``:

- ``BILL#DOC#<xero id>``: the last invoice state whose rules all ran. Transitions are judged from
  it, so an action that failed is tried again by the next evaluation, and an older state
  arriving late (redelivery, replay) is recognised and triggers nothing.
- ``BILL#ONCE#<xero id>#<rule>#<event>``: a rule that fires once per invoice (overdue) fired.
- ``BILL#COMM#<bill id>``: a commission bill claimed (conditional put: one writer wins, ever),
  with the exact purchase document, then ``queued`` once the purchase path accepted it. A retry
  re-sends the stored document, never a new one, so the purchase job id is the same.
- ``BILL#REV#<module>#<record id>#<field>#<xero id>``: what one invoice has paid towards one
  record's revenue field (absolute), and ``BILL#REVSUM#<module>#<record id>#<field>``: the sum,
  moved by the difference in the same transaction that replaces an entry (compare-and-set).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from shared.models.invoices import XeroDocumentState
from shared.state.dynamo import batch_get, conditional_check_failed, dynamodb_resource, now_iso

_ROUNDS = 8


def ledger_pk(tenant_id: str) -> str:
    return f"T#{tenant_id}"


def state_key(tenant_id: str, xero_id: str) -> dict[str, str]:
    return {"PK": ledger_pk(tenant_id), "SK": f"BILL#DOC#{xero_id}"}


def once_key(tenant_id: str, xero_id: str, rule: str, event: str) -> dict[str, str]:
    return {"PK": ledger_pk(tenant_id), "SK": f"BILL#ONCE#{xero_id}#{rule}#{event}"}


def commission_key(tenant_id: str, bill_id: str) -> dict[str, str]:
    return {"PK": ledger_pk(tenant_id), "SK": f"BILL#COMM#{bill_id}"}


def revenue_entry_key(tenant_id: str, module: str, record_id: str, field: str, xero_id: str) -> dict[str, str]:
    return {"PK": ledger_pk(tenant_id), "SK": f"BILL#REV#{module}#{record_id}#{field}#{xero_id}"}


def revenue_sum_key(tenant_id: str, module: str, record_id: str, field: str) -> dict[str, str]:
    return {"PK": ledger_pk(tenant_id), "SK": f"BILL#REVSUM#{module}#{record_id}#{field}"}


def _transaction_conflict(error: Exception) -> bool:
    response = getattr(error, "response", None)
    return isinstance(response, dict) and \
        response.get("Error", {}).get("Code") in {"TransactionCanceledException", "TransactionConflictException"}


class BillingLedger:
    def __init__(self, table_name: str, *, resource: Any | None = None, sleep=time.sleep):
        self._table = (resource or dynamodb_resource()).Table(table_name)
        self._sleep = sleep

    # ---- invoice states ----------------------------------------------------------------------
    def last_states(self, tenant_id: str, xero_ids: list[str]) -> dict[str, XeroDocumentState]:
        """The last fully evaluated state of each invoice that has one (consistent reads)."""
        found: dict[str, XeroDocumentState] = {}
        keys = [state_key(tenant_id, x) for x in dict.fromkeys(xero_ids)]
        for item in batch_get(self._table, keys, sleep=self._sleep):
            state = XeroDocumentState.model_validate_json(item["state"])
            found[state.xero_id] = state
        return found

    def save_state(self, tenant_id: str, state: XeroDocumentState) -> bool:
        """Remember ``state`` as evaluated, unless a newer one already is (False then)."""
        try:
            self._table.put_item(
                Item={**state_key(tenant_id, state.xero_id), "state": state.model_dump_json(),
                      "updated_utc": state.updated_utc or "", "status": state.status, "saved_at": now_iso()},
                ConditionExpression="attribute_not_exists(PK) OR updated_utc <= :u",
                ExpressionAttributeValues={":u": state.updated_utc or ""})
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise

    # ---- once-only firings -------------------------------------------------------------------
    def has_fired(self, tenant_id: str, xero_id: str, rule: str, event: str) -> bool:
        key = once_key(tenant_id, xero_id, rule, event)
        return "Item" in self._table.get_item(Key=key, ConsistentRead=True, ProjectionExpression="PK")

    def mark_fired(self, tenant_id: str, xero_id: str, rule: str, event: str) -> None:
        self._table.put_item(Item={**once_key(tenant_id, xero_id, rule, event), "fired_at": now_iso()})

    # ---- commission bills --------------------------------------------------------------------
    def commission(self, tenant_id: str, bill_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=commission_key(tenant_id, bill_id), ConsistentRead=True).get("Item")
        return _commission(item) if item else None

    def claim_commission(self, tenant_id: str, bill_id: str, document: dict[str, Any], *, rule: str,
                         xero_id: str) -> tuple[dict[str, Any], bool]:
        """Claim the bill with this document. Returns the stored claim (``document``,
        ``status``: claimed | queued) and whether this call made it; the first claim wins."""
        item = {**commission_key(tenant_id, bill_id), "document": json.dumps(document, separators=(",", ":")),
                "status": "claimed", "rule": rule, "xero_id": xero_id, "claimed_at": now_iso()}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(PK)")
            return _commission(item), True
        except Exception as error:
            if not conditional_check_failed(error):
                raise
        existing = self.commission(tenant_id, bill_id)
        assert existing is not None  # the condition failed because it exists
        return existing, False

    def mark_commission_queued(self, tenant_id: str, bill_id: str, job_id: str | None = None) -> None:
        self._table.update_item(
            Key=commission_key(tenant_id, bill_id),
            UpdateExpression="SET #s = :q, queued_at = :now, job_id = :job",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":q": "queued", ":now": now_iso(), ":job": job_id or ""})

    # ---- revenue -----------------------------------------------------------------------------
    def revenue_total(self, tenant_id: str, module: str, record_id: str, field: str) -> Decimal:
        item = self._table.get_item(Key=revenue_sum_key(tenant_id, module, record_id, field),
                                    ConsistentRead=True).get("Item") or {}
        return Decimal(str(item.get("total", "0"))).quantize(Decimal("0.01"))

    def record_revenue(self, tenant_id: str, module: str, record_id: str, field: str, *, xero_id: str,
                       amount: Decimal, updated_utc: str | None) -> Decimal:
        """Set what invoice ``xero_id`` has paid towards the record's field to ``amount`` (an
        absolute value; an older invoice state than the stored one changes nothing) and return
        the record's total over all its invoices."""
        entry = revenue_entry_key(tenant_id, module, record_id, field, xero_id)
        total = revenue_sum_key(tenant_id, module, record_id, field)
        client = self._table.meta.client  # a resource's client: it serialises Python values itself
        for round_ in range(_ROUNDS):
            stored = self._table.get_item(Key=entry, ConsistentRead=True).get("Item")
            if stored and updated_utc and stored.get("updated_utc") and updated_utc < stored["updated_utc"]:
                break  # an older state of this invoice: the newer one already counted
            old = Decimal(str(stored["amount"])) if stored else Decimal("0")
            if stored and old == amount:
                break
            condition = ({"ConditionExpression": "#a = :old", "ExpressionAttributeNames": {"#a": "amount"},
                          "ExpressionAttributeValues": {":old": old}} if stored
                         else {"ConditionExpression": "attribute_not_exists(PK)"})
            try:
                client.transact_write_items(TransactItems=[
                    {"Put": {"TableName": self._table.name,
                             "Item": {**entry, "amount": amount, "updated_utc": updated_utc or "",
                                      "recorded_at": now_iso()},
                             **condition}},
                    {"Update": {"TableName": self._table.name, "Key": total,
                                "UpdateExpression": "ADD #t :d, #v :one SET recorded_at = :now",
                                "ExpressionAttributeNames": {"#t": "total", "#v": "version"},
                                "ExpressionAttributeValues": {":d": amount - old, ":one": 1, ":now": now_iso()}}},
                ])
                break
            except Exception as error:
                if not _transaction_conflict(error):
                    raise
                self._sleep(0.01 * 2 ** round_)  # another writer moved the entry: read it again
        else:
            raise RuntimeError(f"revenue entry {entry['SK']} kept changing under us")
        return self.revenue_total(tenant_id, module, record_id, field)


def _commission(item: dict[str, Any]) -> dict[str, Any]:
    return {"document": json.loads(item["document"]), "status": item.get("status", "claimed"),
            "rule": item.get("rule"), "xero_id": item.get("xero_id"), "job_id": item.get("job_id") or None}
