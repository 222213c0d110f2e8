"""The emulator's organisation data and Xero's rules for changing it.

``EmulatorStore`` extends xero-local's ``XeroStore`` (same per-tenant layout, same lock, its
connection record) with Items, Quotes, PurchaseOrders, CreditNotes and their allocations, settings
lists, Decimal arithmetic, uniqueness rules, status transitions and payments. Every batch runs in
a ``_Txn`` that copies a collection before its first write, so ``summarizeErrors=true`` can drop a
whole batch unchanged.
Records are replaced, never mutated in place. Each resource's rules live in ``resources/<resource>.py``.
"""

from __future__ import annotations

import threading
import time
import uuid
from copy import deepcopy
from typing import Any

from xero_local.store import XeroStore

from .config import EmulatorConfig
from .resources.common import ID_FIELDS, KINDS, RESOURCE_KEYS, Outcome, _find, _Txn, updated_ms
from .resources.contacts import _upsert_contact
from .resources.credit_notes import _allocate_credit_note, _delete_allocation, _upsert_credit_note
from .resources.invoices import _upsert_invoice
from .resources.items import _upsert_item
from .resources.lines import _line_amounts
from .resources.payments import _upsert_payment
from .resources.purchase_orders import _upsert_purchase_order
from .resources.quotes import _upsert_quote
from .values import ms_to_iso, ms_to_xero

__all__ = ["ID_FIELDS", "RESOURCE_KEYS", "EmulatorStore", "Outcome", "updated_ms", "_line_amounts"]


class EmulatorStore(XeroStore):
    """xero-local's store, per emulator instance, with the resources and rules the connector needs."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self._lock = threading.RLock()  # reentrant: batches call the base class's locked methods
        self._last_ms = 0
        self.reset()

    # ---- tenants --------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._default_tenant["tenantId"] = self.config.tenant_id
            self._default_tenant["tenantName"] = self.config.tenant_name
            self._tenants = {}
            self._resources(self.config.tenant_id, "contacts")

    def _resources(self, tenant_id: str | None, resource_type: str) -> dict:
        tid = tenant_id or self._default_tenant["tenantId"]
        tenant = self._tenants.get(tid)
        if tenant is None:
            tenant = self._tenants[tid] = {kind: {} for kind in KINDS}
            tenant["_meta"] = {}
        return tenant.setdefault(resource_type, {})

    def tenant_ids(self) -> list[str]:
        with self._lock:
            return list(self._tenants)

    def default_tenant_id(self) -> str:
        return self._default_tenant["tenantId"]

    def organisation_name(self, tenant_id: str) -> str | None:
        if tenant_id == self.config.tenant_id:
            return self.config.tenant_name
        return self.config.organisations.get(tenant_id)

    def get_connections(self) -> list[dict[str, Any]]:
        """Xero's GET /connections: one connection per organisation the user authorised (the
        default one and ``config.organisations``), all from the same authorisation event."""
        with self._lock:
            first = deepcopy(self._default_tenant)
            others = [{**first, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"connection/{tenant_id}")),
                       "tenantId": tenant_id, "tenantName": name}
                      for tenant_id, name in self.config.organisations.items() if tenant_id != first["tenantId"]]
            return [first, *others]

    def stamp(self) -> dict[str, str]:
        """UpdatedDateUTC for a change now, strictly later than the previous one."""
        with self._lock:
            ms = max(int(time.time() * 1000), self._last_ms + 1)
            self._last_ms = ms
        return {"UpdatedDateUTC": ms_to_xero(ms), "UpdatedDateUTCString": ms_to_iso(ms)}

    # ---- reads ----------------------------------------------------------------------------
    def records(self, kind: str, tenant_id: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return deepcopy(list(self._resources(tenant_id, kind).values()))

    def record(self, kind: str, tenant_id: str | None, key: str) -> dict[str, Any] | None:
        """One record by its ID, or by its number or code where Xero allows that (Contacts, Items,
        Invoices, Quotes)."""
        with self._lock:
            return deepcopy(_find(self._resources(tenant_id, kind), kind, key))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                tid: {
                    kind: deepcopy(list(resources.values()))
                    for kind, resources in tenant.items()
                    if not kind.startswith("_")
                }
                for tid, tenant in self._tenants.items()
            }

    # ---- writes ---------------------------------------------------------------------------
    def write_batch(
        self,
        kind: str,
        tenant_id: str | None,
        elements: list[dict[str, Any]],
        *,
        method: str,
        path_id: str | None,
        summarize: bool,
        unitdp: int,
        parent_id: str | None = None,
    ) -> tuple[list[Outcome], bool]:
        """Apply a batch; returns each element's outcome and whether anything was stored.
        ``parent_id`` is the record a sub-collection belongs to (a credit note's allocations)."""
        with self._lock:
            txn = _Txn(self, tenant_id or self.default_tenant_id(), method.upper(), path_id, unitdp)
            txn.parent_id = parent_id
            handler = _HANDLERS[kind]
            outcomes = []
            for element in elements:
                if not isinstance(element, dict):
                    outcomes.append(Outcome({}, ["Each element must be a JSON object"], []))
                    continue
                outcomes.append(handler(txn, element))
            failed = any(o.errors for o in outcomes)
            if failed and summarize:
                return outcomes, False
            txn.commit()
            return outcomes, True

    def merge_contacts(self, tenant_id: str | None, from_id: str, into_id: str) -> dict | None:
        """Merge one contact into another as Xero's app does: the merged contact is archived and
        points to the survivor (``MergedToContactID``); its documents move to the survivor."""
        with self._lock:
            tid = tenant_id or self.default_tenant_id()
            contacts = self._resources(tid, "contacts")
            if from_id not in contacts or into_id not in contacts or from_id == into_id:
                return None
            stamp = self.stamp()
            contacts[from_id] = {**contacts[from_id], "ContactStatus": "ARCHIVED", "MergedToContactID": into_id,
                                 **stamp}
            for kind in ("invoices", "quotes", "credit_notes", "purchase_orders"):
                records = self._resources(tid, kind)
                for key, record in list(records.items()):
                    if (record.get("Contact") or {}).get("ContactID") == from_id:
                        records[key] = {**record, "Contact": {"ContactID": into_id}, **stamp}
            return deepcopy(contacts[from_id])

    def delete_allocation(self, tenant_id: str | None, note_id: str, allocation_id: str) -> dict | None:
        with self._lock:
            txn = _Txn(self, tenant_id or self.default_tenant_id(), "DELETE", None, 2)
            answer = _delete_allocation(txn, note_id, allocation_id)
            if answer is not None:
                txn.commit()
            return answer


_HANDLERS = {
    "contacts": _upsert_contact,
    "items": _upsert_item,
    "invoices": _upsert_invoice,
    "quotes": _upsert_quote,
    "payments": _upsert_payment,
    "purchase_orders": _upsert_purchase_order,
    "credit_notes": _upsert_credit_note,
    "allocations": _allocate_credit_note,
}
