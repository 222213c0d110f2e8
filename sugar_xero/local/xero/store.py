"""The emulator's organisation data and Xero's rules for changing it.

``EmulatorStore`` extends xero-local's ``XeroStore`` (same per-tenant layout, same lock, its
connection record) with Items, Quotes, PurchaseOrders, CreditNotes and their allocations, settings
lists, Decimal arithmetic, uniqueness rules, status transitions and payments. Every batch runs in
a ``_Txn`` that copies a collection before its first write, so ``summarizeErrors=true`` can drop a
whole batch unchanged.
Records are replaced, never mutated in place.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from copy import deepcopy
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from xero_local.store import XeroStore

from .config import EmulatorConfig
from .values import (
    BadValue,
    date_fields,
    money,
    ms_to_iso,
    ms_to_xero,
    parse_date,
    round_to,
    to_decimal,
    xero_to_ms,
)

ZERO_ID = "00000000-0000-0000-0000-000000000000"
KINDS = ("contacts", "items", "invoices", "quotes", "payments", "credit_notes", "purchase_orders")
RESOURCE_KEYS = {
    "contacts": "Contacts",
    "items": "Items",
    "invoices": "Invoices",
    "quotes": "Quotes",
    "payments": "Payments",
    "credit_notes": "CreditNotes",
    "purchase_orders": "PurchaseOrders",
    "allocations": "Allocations",
}
ID_FIELDS = {
    "contacts": "ContactID",
    "items": "ItemID",
    "invoices": "InvoiceID",
    "quotes": "QuoteID",
    "payments": "PaymentID",
    "credit_notes": "CreditNoteID",
    "purchase_orders": "PurchaseOrderID",
    "allocations": "AllocationID",
}

CONTACT_STATUSES = ("ACTIVE", "ARCHIVED", "GDPRREQUEST")
INVOICE_TYPES = ("ACCREC", "ACCPAY")
LINE_AMOUNT_TYPES = ("Exclusive", "Inclusive", "NoTax")
INVOICE_CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
INVOICE_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"SUBMITTED", "DRAFT", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "VOIDED"},
    "PAID": {"PAID"},
    "VOIDED": {"VOIDED"},
    "DELETED": {"DELETED"},
}
QUOTE_STATUSES = ("DRAFT", "SENT", "DECLINED", "ACCEPTED", "INVOICED", "DELETED")
# Observed on live organisations: DRAFT -> DECLINED and ACCEPTED -> DECLINED are refused, and only an
# accepted quote becomes INVOICED. The rest is the narrowest path Xero's app offers (a quote is sent
# before it is accepted or declined), so a connector that passes here also passes on Xero.
QUOTE_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SENT", "DELETED"},
    "SENT": {"SENT", "DRAFT", "ACCEPTED", "DECLINED", "DELETED"},
    "ACCEPTED": {"ACCEPTED", "SENT", "INVOICED", "DELETED"},
    "DECLINED": {"DECLINED", "SENT", "DRAFT", "DELETED"},
    "INVOICED": {"INVOICED"},
    "DELETED": {"DELETED"},
}
QUOTE_CREATE_STATUSES = ("DRAFT", "SENT", "ACCEPTED", "DECLINED")
PURCHASE_ORDER_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED", "BILLED", "DELETED")
PURCHASE_ORDER_CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
# As Xero's app allows: approve, mark as billed (and undo it), delete anything not billed.
PURCHASE_ORDER_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"SUBMITTED", "DRAFT", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "BILLED", "DELETED"},
    "BILLED": {"BILLED", "AUTHORISED"},
    "DELETED": {"DELETED"},
}
CREDIT_NOTE_TYPES = {"ACCRECCREDIT": "ACCREC", "ACCPAYCREDIT": "ACCPAY"}
LOCKED_BY_ALLOCATION = "This document cannot be edited as it has a payment or credit note allocated to it."
NOT_MODIFIABLE = "{kind} not of valid status for modification"
# Fields Xero computes or owns: whatever a request says about them is not stored.
_COMPUTED = {
    "HasValidationErrors",
    "ValidationErrors",
    "Warnings",
    "StatusAttributeString",
    "UpdatedDateUTC",
    "UpdatedDateUTCString",
    "HasAttachments",
    "Attachments",
}
_CONTACT_COMPUTED = _COMPUTED | {"ContactID", "IsCustomer", "IsSupplier", "Balances", "HasValidationErrors"}
_DOCUMENT_COMPUTED = _COMPUTED | {
    "SubTotal",
    "TotalTax",
    "Total",
    "TotalDiscount",
    "AmountDue",
    "AmountPaid",
    "AmountCredited",
    "Payments",
    "CreditNotes",
    "Prepayments",
    "Overpayments",
    "FullyPaidOnDate",
    "IsDiscounted",
    "HasErrors",
    "DateString",
    "DueDateString",
    "ExpiryDateString",
    "LineItems",
    "Contact",
    "RemainingCredit",
    "Allocations",
    "AppliedAmount",
    "DeliveryDateString",
    "ExpectedArrivalDateString",
}


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Outcome:
    """What one batch element came to: the record (or the element echoed back) and its messages."""

    record: dict[str, Any]
    errors: list[str]
    warnings: list[str]
    not_found: bool = False


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


    def delete_allocation(self, tenant_id: str | None, note_id: str, allocation_id: str) -> dict | None:
        with self._lock:
            txn = _Txn(self, tenant_id or self.default_tenant_id(), "DELETE", None, 2)
            answer = _delete_allocation(txn, note_id, allocation_id)
            if answer is not None:
                txn.commit()
            return answer


class _Txn:
    parent_id: str | None = None

    def __init__(self, store: EmulatorStore, tenant_id: str, method: str, path_id: str | None, unitdp: int):
        self.store = store
        self.config = store.config
        self.tenant_id = tenant_id
        self.method = method
        self.path_id = path_id
        self.unitdp = unitdp
        self._staged: dict[str, dict[str, Any]] = {}
        self.tax_rates = {
            r["TaxType"].upper(): to_decimal(
                r.get("EffectiveRate", r.get("DisplayTaxRate", 0)), "EffectiveRate"
            )
            for r in self.config.tax_rates
            if r.get("Status", "ACTIVE") == "ACTIVE"
        }
        self.accounts = {str(a.get("Code", "")).upper(): a for a in self.config.accounts if a.get("Code")}
        self.accounts_by_id = {a["AccountID"]: a for a in self.config.accounts if a.get("AccountID")}
        self.currencies = {c["Code"].upper() for c in self.config.currencies}

    def col(self, kind: str) -> dict[str, Any]:
        if kind not in self._staged:
            self._staged[kind] = dict(self.store._resources(self.tenant_id, kind))
        return self._staged[kind]

    def meta(self) -> dict[str, Any]:
        return self.col("_meta")

    def commit(self) -> None:
        tenant = self.store._tenants[self.tenant_id]
        for kind, records in self._staged.items():
            tenant[kind] = records


def _find(records: dict[str, Any], kind: str, key: str | None) -> dict[str, Any] | None:
    if not key:
        return None
    if key in records:
        return records[key]
    lowered = key.lower()
    alternate = {
        "contacts": "ContactNumber",
        "items": "Code",
        "invoices": "InvoiceNumber",
        "quotes": "QuoteNumber",
        "purchase_orders": "PurchaseOrderNumber",
        "credit_notes": "CreditNoteNumber",
    }.get(kind)
    for record in records.values():
        if record[ID_FIELDS[kind]].lower() == lowered:
            return record
        if alternate and str(record.get(alternate) or "").lower() == lowered:
            if kind == "invoices" and record.get("Type") != "ACCREC":
                continue
            return record
    return None


def _echo(element: dict[str, Any], id_field: str, existing: dict[str, Any] | None) -> dict[str, Any]:
    echoed = deepcopy(element)
    echoed[id_field] = existing[id_field] if existing else element.get(id_field) or ZERO_ID
    return echoed


# ---- contacts ---------------------------------------------------------------------------------


def _upsert_contact(txn: _Txn, data: dict[str, Any]) -> Outcome:
    contacts = txn.col("contacts")
    errors: list[str] = []
    existing = None
    contact_id = txn.path_id or data.get("ContactID")
    number = data.get("ContactNumber")
    if contact_id:
        existing = contacts.get(contact_id) or (
            _find(contacts, "contacts", contact_id) if txn.path_id else None
        )
        if existing is None:
            return Outcome(
                _echo(data, "ContactID", None),
                [f"Contact with ContactID {contact_id} was not found"],
                [],
                not_found=bool(txn.path_id),
            )
    elif number:
        existing = next((c for c in contacts.values() if c.get("ContactNumber") == number), None)
        if existing is not None and txn.method == "PUT":
            errors.append(
                f"The contact number {number} is already assigned to another contact. "
                "The contact number must be unique across all contacts."
            )
    name = data["Name"] if "Name" in data else (existing or {}).get("Name")
    if not isinstance(name, str) or not name.strip():
        errors.append("Contact name cannot be empty")
        name = ""
    elif len(name) > 255:
        errors.append("The contact name must be 255 characters or fewer")
    status = data.get("ContactStatus") or (existing or {}).get("ContactStatus") or "ACTIVE"
    if status not in CONTACT_STATUSES:
        errors.append(f"ContactStatus {status!r} is not one of {', '.join(CONTACT_STATUSES)}")
    if number is not None and len(str(number)) > 50:
        errors.append("The contact number must be 50 characters or fewer")
    if name and status == "ACTIVE":
        folded = name.strip().casefold()
        own_id = existing["ContactID"] if existing else None
        for other in contacts.values():
            if (
                other["ContactID"] != own_id
                and other.get("ContactStatus") == "ACTIVE"
                and str(other.get("Name", "")).strip().casefold() == folded
            ):
                errors.append(
                    f"The contact name {name} is already assigned to another contact. "
                    "The contact name must be unique across all active contacts."
                )
                break
    if errors:
        return Outcome(_echo(data, "ContactID", existing), errors, [])
    record = (
        deepcopy(existing)
        if existing
        else {
            "ContactID": new_id(),
            "ContactStatus": "ACTIVE",
            "Addresses": [],
            "Phones": [],
            "ContactGroups": [],
            "ContactPersons": [],
            "IsSupplier": False,
            "IsCustomer": False,
            "HasAttachments": False,
        }
    )
    for key, value in data.items():
        if key not in _CONTACT_COMPUTED:
            record[key] = deepcopy(value)
    record["ContactStatus"] = status
    record["HasValidationErrors"] = False
    record.update(txn.store.stamp())
    contacts[record["ContactID"]] = record
    warnings = [
        f"{key} is set by Xero and was ignored" for key in ("IsCustomer", "IsSupplier") if key in data
    ]
    return Outcome(record, [], warnings)


def _resolve_contact(txn: _Txn, reference: Any, errors: list[str]) -> dict[str, Any] | None:
    """The contact a document points at: by ContactID, ContactNumber, or Name (created when new)."""
    contacts = txn.col("contacts")
    if not isinstance(reference, dict) or not any(
        reference.get(k) for k in ("ContactID", "ContactNumber", "Name")
    ):
        errors.append("A Contact must be specified for this type of transaction")
        return None
    if reference.get("ContactID"):
        contact = contacts.get(reference["ContactID"])
        if contact is None:
            errors.append(f"Contact with ContactID {reference['ContactID']} was not found")
    elif reference.get("ContactNumber"):
        contact = next(
            (c for c in contacts.values() if c.get("ContactNumber") == reference["ContactNumber"]), None
        )
        if contact is None:
            errors.append(f"Contact with ContactNumber {reference['ContactNumber']} was not found")
    else:
        folded = str(reference["Name"]).strip().casefold()
        contact = next(
            (
                c
                for c in contacts.values()
                if c.get("ContactStatus") == "ACTIVE" and str(c.get("Name", "")).strip().casefold() == folded
            ),
            None,
        )
        if contact is None:
            # Xero creates a contact named on a document when none has that name
            outcome = _upsert_contact(_SubTxn(txn), {k: v for k, v in reference.items() if k != "ContactID"})
            if outcome.errors:
                errors.extend(outcome.errors)
                return None
            contact = outcome.record
    if contact is not None and contact.get("ContactStatus") != "ACTIVE":
        errors.append(
            f"The contact {contact.get('Name')} is {contact.get('ContactStatus')}; documents cannot be "
            "created or changed for a contact that is not active"
        )
    return contact


class _SubTxn:
    """The same transaction seen as a plain POST without a path id (for contacts made on the fly)."""

    def __init__(self, txn: _Txn):
        self.__dict__.update(txn.__dict__)
        self.method = "POST"
        self.path_id = None
        self.col = txn.col
        self.store = txn.store


# ---- items ------------------------------------------------------------------------------------


def _upsert_item(txn: _Txn, data: dict[str, Any]) -> Outcome:
    items = txn.col("items")
    errors: list[str] = []
    existing = None
    item_id = txn.path_id or data.get("ItemID")
    code = data.get("Code")
    if item_id:
        existing = items.get(item_id) or (_find(items, "items", item_id) if txn.path_id else None)
        if existing is None:
            return Outcome(
                _echo(data, "ItemID", None),
                [f"Item with ItemID {item_id} was not found"],
                [],
                not_found=bool(txn.path_id),
            )
    elif code:
        existing = next(
            (i for i in items.values() if str(i["Code"]).casefold() == str(code).casefold()), None
        )
        if existing is not None and txn.method == "PUT":
            errors.append(f"Item code '{code}' already exists")
    final_code = code if code is not None else (existing or {}).get("Code")
    if not isinstance(final_code, str) or not final_code.strip():
        errors.append("Item code must be specified")
    elif len(final_code) > 30:
        errors.append("Item code must be 30 characters or fewer")
    else:
        own_id = existing["ItemID"] if existing else None
        if any(
            i["ItemID"] != own_id and str(i["Code"]).casefold() == final_code.casefold()
            for i in items.values()
        ):
            errors.append(f"Item code '{final_code}' already exists")
    name = data.get("Name", (existing or {}).get("Name"))
    if name is not None and len(str(name)) > 50:
        errors.append("Item name must be 50 characters or fewer")
    for key in ("Description", "PurchaseDescription"):
        if key in data and len(str(data[key] or "")) > 4000:
            errors.append(f"{key} must be 4000 characters or fewer")
    details: dict[str, Any] = {}
    for key in ("SalesDetails", "PurchaseDetails"):
        if key in data:
            details[key] = _item_details(txn, key, data[key], errors)
    if errors:
        return Outcome(_echo(data, "ItemID", existing), errors, [])
    record = deepcopy(existing) if existing else {"ItemID": new_id(), "IsSold": True, "IsPurchased": True}
    for key, value in data.items():
        if key not in _COMPUTED and key != "ItemID":
            record[key] = deepcopy(value)
    record.update(details)
    record["IsTrackedAsInventory"] = bool(record.get("InventoryAssetAccountCode"))
    record.update(txn.store.stamp())
    items[record["ItemID"]] = record
    return Outcome(record, [], [])


def _item_details(txn: _Txn, key: str, value: Any, errors: list[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        errors.append(f"{key} must be an object")
        return {}
    details = deepcopy(value)
    if "UnitPrice" in details and details["UnitPrice"] is not None:
        try:
            details["UnitPrice"] = round_to(to_decimal(details["UnitPrice"], f"{key}.UnitPrice"), txn.unitdp)
        except BadValue as error:
            errors.append(str(error))
    code = details.get("AccountCode")
    if code and str(code).upper() not in txn.accounts:
        errors.append(f"Account code '{code}' is not a valid code for this document.")
    tax_type = details.get("TaxType")
    if tax_type and str(tax_type).upper() not in txn.tax_rates:
        errors.append(
            f"TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction."
        )
    return details


# ---- documents (invoices and quotes share the line arithmetic) --------------------------------


def _compute_lines(
    txn: _Txn,
    raw_lines: Any,
    old_lines: list[dict[str, Any]],
    doc_type: str,
    amount_types: str,
    status: str,
    errors: list[str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Xero's arithmetic: each line rounded to cents, tax per line rounded to cents, then summed."""
    if not isinstance(raw_lines, list):
        errors.append("LineItems must be a list")
        return [], {}
    old_ids = {line.get("LineItemID") for line in old_lines}
    items = txn.col("items")
    lines = []
    sub_total = total_tax = line_sum = discount_total = Decimal("0")
    for number, raw in enumerate(raw_lines, start=1):
        if not isinstance(raw, dict):
            errors.append(f"Line {number} must be an object")
            continue
        line = {k: deepcopy(v) for k, v in raw.items() if k not in ("ValidationErrors",)}
        line["LineItemID"] = raw.get("LineItemID") if raw.get("LineItemID") in old_ids else new_id()
        try:
            _fill_from_item(line, items, doc_type)
            amount, tax, discount = _line_amounts(txn, line, doc_type, amount_types)
        except BadValue as error:
            errors.append(f"Line {number}: {error}")
            continue
        account = line.get("AccountCode")
        if account and str(account).upper() not in txn.accounts:
            errors.append(f"Account code '{account}' is not a valid code for this document.")
        elif not account and status not in ("DRAFT", "") and amount != 0:
            errors.append("An account code must be specified for each line item on an approved document")
        tracking = line.get("Tracking") or []
        if len(tracking) > 2:
            errors.append("A line item can have at most 2 tracking categories")
        for tag in tracking:
            if not _tracking_known(txn, tag):
                errors.append(
                    f"The tracking category {tag.get('Name')!r} with option {tag.get('Option')!r} "
                    "does not exist"
                )
        line_sum += amount
        total_tax += tax
        discount_total += discount
        lines.append(line)
    if amount_types == "Inclusive":
        sub_total = line_sum - total_tax
        total = line_sum
    else:
        sub_total = line_sum
        total = line_sum + total_tax
    totals = {"SubTotal": money(sub_total), "TotalTax": money(total_tax), "Total": money(total)}
    if discount_total:
        totals["TotalDiscount"] = money(discount_total)
    return lines, totals


SALES_DOCUMENTS = ("ACCREC", "QUOTE", "ACCRECCREDIT")
# Xero takes line discounts on sales invoices, quotes and purchase orders; bills and credit notes have none.
DISCOUNTED_DOCUMENTS = ("ACCREC", "QUOTE", "PURCHASEORDER")


def _fill_from_item(line: dict[str, Any], items: dict[str, Any], doc_type: str) -> None:
    code = line.get("ItemCode")
    if not code:
        return
    item = next((i for i in items.values() if str(i["Code"]).casefold() == str(code).casefold()), None)
    if item is None:
        raise BadValue(f"Item code '{code}' is not valid")
    sales = doc_type in SALES_DOCUMENTS
    details = item.get("SalesDetails" if sales else "PurchaseDetails") or {}
    description = item.get("Description" if sales else "PurchaseDescription")
    if "Description" not in line and (description or item.get("Name")):
        line["Description"] = description or item.get("Name")
    if "UnitAmount" not in line and details.get("UnitPrice") is not None:
        line["UnitAmount"] = details["UnitPrice"]
    for key in ("AccountCode", "TaxType"):
        if not line.get(key) and details.get(key):
            line[key] = details[key]


def _line_amounts(
    txn: _Txn, line: dict[str, Any], doc_type: str, amount_types: str
) -> tuple[Decimal, Decimal, Decimal]:
    def number(key: str) -> Decimal | None:
        return to_decimal(line[key], key) if line.get(key) is not None else None

    quantity, unit, given = number("Quantity"), number("UnitAmount"), number("LineAmount")
    rate, discount_amount = number("DiscountRate"), number("DiscountAmount")
    if (rate is not None or discount_amount is not None) and doc_type not in DISCOUNTED_DOCUMENTS:
        raise BadValue("Discounts are only supported on sales invoices (ACCREC), quotes and purchase orders")
    if rate is not None and discount_amount is not None:
        raise BadValue("Only one of DiscountRate or DiscountAmount can be given")
    if rate is not None and not 0 <= rate <= 100:
        raise BadValue("DiscountRate must be between 0 and 100")
    if unit is not None:
        unit = round_to(unit, txn.unitdp)
    if quantity is not None:
        quantity = round_to(quantity, 4)
    if quantity is None and unit is None:
        if given is None:  # a description-only line
            line["LineAmount"] = Decimal("0.00")
            line["TaxAmount"] = Decimal("0.00")
            return Decimal("0"), Decimal("0"), Decimal("0")
        quantity, unit = Decimal("1.0000"), round_to(given, txn.unitdp)
    elif quantity is None:
        quantity = round_to(given / unit, 4) if given is not None and unit else Decimal("1.0000")
    elif unit is None:
        unit = round_to(given / quantity, txn.unitdp) if given is not None and quantity else Decimal("0")
    gross = quantity * unit
    if rate is not None:
        amount = money(gross * (Decimal(100) - rate) / Decimal(100))
    elif discount_amount is not None:
        amount = money(gross - discount_amount)
    else:
        amount = money(gross)
    if (
        given is not None
        and line.get("Quantity") is not None
        and line.get("UnitAmount") is not None
        and money(given) != amount
    ):
        raise BadValue(f"The line total {money(given)} does not match the expected line total {amount}")
    tax_type = str(line.get("TaxType") or "").upper()
    if not tax_type and line.get("AccountCode"):
        tax_type = str(txn.accounts.get(str(line["AccountCode"]).upper(), {}).get("TaxType") or "").upper()
    if amount_types == "NoTax":
        tax_rate = Decimal("0")
    elif tax_type:
        if tax_type not in txn.tax_rates:
            raise BadValue(
                f"TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction."
            )
        tax_rate = txn.tax_rates[tax_type]
    else:
        tax_rate = Decimal("0")
    if amount_types == "Inclusive":
        tax = money(amount * tax_rate / (Decimal(100) + tax_rate))
    else:
        tax = money(amount * tax_rate / Decimal(100))
    line["Quantity"] = quantity
    line["UnitAmount"] = unit
    line["LineAmount"] = amount
    line["TaxAmount"] = tax
    if tax_type:
        line["TaxType"] = tax_type
    if rate is not None:
        line["DiscountRate"] = rate
    if discount_amount is not None:
        line["DiscountAmount"] = money(discount_amount)
    line.setdefault("Tracking", [])
    return amount, tax, money(gross) - amount


def _tracking_known(txn: _Txn, tag: Any) -> bool:
    if not isinstance(tag, dict):
        return False
    for category in txn.config.tracking_categories:
        if (
            tag.get("TrackingCategoryID") == category.get("TrackingCategoryID")
            or str(tag.get("Name", "")).casefold() == str(category.get("Name", "")).casefold()
        ):
            options = category.get("Options") or []
            return any(
                str(tag.get("Option", "")).casefold() == str(o.get("Name", "")).casefold()
                or tag.get("TrackingOptionID") == o.get("TrackingOptionID")
                for o in options
            )
    return False


def _next_number(txn: _Txn, counter: str, prefix: str, taken: set[str]) -> str:
    meta = txn.meta()
    value = meta.get(counter, 0)
    while True:
        value += 1
        candidate = f"{prefix}{value:04d}"
        if candidate.casefold() not in taken:
            meta[counter] = value
            return candidate


def _document_dates(
    data: dict[str, Any], existing: dict[str, Any] | None, names: tuple[str, ...], errors: list[str]
) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name in names:
        if data.get(name):
            try:
                fields.update(date_fields(name, parse_date(data[name], name)))
            except BadValue as error:
                errors.append(str(error))
        elif existing is None and name == "Date":
            fields.update(date_fields("Date", dt.datetime.now(dt.UTC).date()))
    return fields


def _currency(txn: _Txn, data: dict[str, Any], existing: dict[str, Any] | None, errors: list[str]) -> dict:
    code = str(data.get("CurrencyCode") or (existing or {}).get("CurrencyCode") or txn.config.base_currency)
    if code.upper() not in txn.currencies:
        errors.append(f"The currency {code} is not enabled for this organisation")
    if code.upper() == txn.config.base_currency.upper():
        rate = Decimal("1")
    else:
        try:
            rate = to_decimal(
                data.get("CurrencyRate") or (existing or {}).get("CurrencyRate") or 1, "CurrencyRate"
            )
        except BadValue as error:
            errors.append(str(error))
            rate = Decimal("1")
    return {"CurrencyCode": code.upper(), "CurrencyRate": rate}


def _upsert_invoice(txn: _Txn, data: dict[str, Any]) -> Outcome:
    invoices = txn.col("invoices")
    errors: list[str] = []
    warnings: list[str] = []
    existing = None
    invoice_id = txn.path_id or data.get("InvoiceID")
    if invoice_id:
        existing = invoices.get(invoice_id) or (
            _find(invoices, "invoices", invoice_id) if txn.path_id else None
        )
        if existing is None:
            return Outcome(
                _echo(data, "InvoiceID", None),
                [f"Invoice with InvoiceID {invoice_id} was not found"],
                [],
                not_found=bool(txn.path_id),
            )
    elif data.get("InvoiceNumber") and txn.method == "POST" and data.get("Type", "ACCREC") == "ACCREC":
        existing = _find(
            {k: v for k, v in invoices.items() if v.get("Type") == "ACCREC"},
            "invoices",
            str(data["InvoiceNumber"]),
        )
    invoice_type = data.get("Type") or (existing or {}).get("Type")
    if invoice_type not in INVOICE_TYPES:
        errors.append(
            "Invoice Type must be ACCREC or ACCPAY" if invoice_type else "Invoice Type must be specified"
        )
        invoice_type = invoice_type or "ACCREC"
    if existing and invoice_type != existing["Type"]:
        errors.append("The Type of an existing invoice cannot be changed")
    old_status = (existing or {}).get("Status")
    status = data.get("Status") or old_status or "DRAFT"
    if existing is None:
        if status not in INVOICE_CREATE_STATUSES:
            errors.append(
                f"An invoice cannot be created with status {status}; use one of "
                f"{', '.join(INVOICE_CREATE_STATUSES)}"
            )
    else:
        changes = {k for k in data if k not in ("InvoiceID", "Status", "Type")}
        if status == "PAID" and old_status != "PAID":
            errors.append("Invoice status cannot be set to PAID; apply payments instead")
        elif status not in INVOICE_TRANSITIONS.get(old_status, set()):
            if status == "DELETED":
                errors.append(
                    f"Only DRAFT or SUBMITTED invoices can be deleted; this one is {old_status} "
                    "(void an AUTHORISED invoice instead)"
                )
            elif status == "VOIDED":
                errors.append(
                    f"Only AUTHORISED invoices can be voided; this one is {old_status} "
                    "(delete a DRAFT or SUBMITTED invoice instead)"
                )
            else:
                errors.append(f"Invoice status cannot change from {old_status} to {status}")
        if _has_allocations(existing) and (changes or status != old_status):
            errors.append(LOCKED_BY_ALLOCATION)
        elif old_status in ("VOIDED", "DELETED") and (changes or status != old_status):
            errors.append(NOT_MODIFIABLE.format(kind="Invoice"))
    contact = existing_contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    else:
        existing_contact = txn.col("contacts").get(existing["Contact"]["ContactID"])
    amount_types = data.get("LineAmountTypes") or (existing or {}).get("LineAmountTypes") or "Exclusive"
    if amount_types not in LINE_AMOUNT_TYPES:
        errors.append(f"LineAmountTypes must be one of {', '.join(LINE_AMOUNT_TYPES)}")
        amount_types = "Exclusive"
    old_lines = (existing or {}).get("LineItems") or []
    raw_lines = data["LineItems"] if "LineItems" in data else old_lines
    lines, totals = _compute_lines(txn, raw_lines, old_lines, invoice_type, amount_types, status, errors)
    if status in ("SUBMITTED", "AUTHORISED") and not lines:
        errors.append("An invoice must have at least one line item before it can be submitted or approved")
    dates = _document_dates(data, existing, ("Date", "DueDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("InvoiceNumber", (existing or {}).get("InvoiceNumber"))
    if invoice_type == "ACCREC":
        taken = {
            str(i.get("InvoiceNumber", "")).casefold()
            for i in invoices.values()
            if i.get("Type") == "ACCREC" and (existing is None or i["InvoiceID"] != existing["InvoiceID"])
        }
        if number and str(number).casefold() in taken:
            errors.append("Invoice # must be unique.")
    if number is not None and len(str(number)) > 255:
        errors.append("InvoiceNumber must be 255 characters or fewer")
    for key in ("SubTotal", "TotalTax", "Total"):
        if key in data and totals and _differs(data[key], totals[key]):
            warnings.append(
                f"{key} {data[key]} does not match the computed {key} {totals[key]}; the computed "
                "amount was used"
            )
    if errors:
        echoed = _echo(data, "InvoiceID", existing)
        if lines:
            echoed["LineItems"] = lines
        return Outcome(echoed, errors, [])
    if invoice_type == "ACCREC" and not number:
        number = _next_number(txn, "invoice_seq", "INV-", taken)
    record = (
        deepcopy(existing)
        if existing
        else {
            "InvoiceID": new_id(),
            "Type": invoice_type,
            "Payments": [],
            "CreditNotes": [],
            "Prepayments": [],
            "Overpayments": [],
            "AmountPaid": Decimal("0.00"),
            "AmountCredited": Decimal("0.00"),
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": False,
            "IsDiscounted": False,
        }
    )
    for key, value in data.items():
        if key not in _DOCUMENT_COMPUTED and key not in (
            "InvoiceID",
            "Type",
            "Status",
            "Date",
            "DueDate",
            "CurrencyCode",
            "CurrencyRate",
        ):
            record[key] = deepcopy(value)
    record.update(dates)
    record.update(currency)
    record.update(totals)
    record["InvoiceNumber"] = number or ""
    record["Status"] = status
    record["LineAmountTypes"] = amount_types
    record["LineItems"] = lines
    chosen = contact or existing_contact
    record["Contact"] = {"ContactID": chosen["ContactID"]} if chosen else record.get("Contact", {})
    record["AmountDue"] = money(record["Total"] - record["AmountPaid"] - record["AmountCredited"])
    if status == "VOIDED":
        record["AmountDue"] = Decimal("0.00")
    record.update(txn.store.stamp())
    invoices[record["InvoiceID"]] = record
    if chosen:
        flag = "IsCustomer" if invoice_type == "ACCREC" else "IsSupplier"
        if not chosen.get(flag):
            updated = dict(chosen)
            updated[flag] = True
            txn.col("contacts")[chosen["ContactID"]] = updated
    return Outcome(record, [], warnings)


def _differs(sent: Any, computed: Decimal) -> bool:
    try:
        return money(to_decimal(sent, "total")) != computed
    except BadValue:
        return True


def _upsert_quote(txn: _Txn, data: dict[str, Any]) -> Outcome:
    quotes = txn.col("quotes")
    errors: list[str] = []
    existing = None
    quote_id = txn.path_id or data.get("QuoteID")
    if quote_id:
        existing = quotes.get(quote_id) or (_find(quotes, "quotes", quote_id) if txn.path_id else None)
        if existing is None:
            return Outcome(
                _echo(data, "QuoteID", None),
                [f"Quote with QuoteID {quote_id} was not found"],
                [],
                not_found=bool(txn.path_id),
            )
    old_status = (existing or {}).get("Status")
    status = data.get("Status") or old_status or "DRAFT"
    if status not in QUOTE_STATUSES:
        errors.append(f"Quote status must be one of {', '.join(QUOTE_STATUSES)}")
    elif existing is None and status not in QUOTE_CREATE_STATUSES:
        errors.append(
            f"A quote cannot be created with status {status}; use one of {', '.join(QUOTE_CREATE_STATUSES)}"
            + (" (only an ACCEPTED quote can be marked INVOICED)" if status == "INVOICED" else "")
        )
    elif old_status in ("DELETED", "INVOICED") and (
        status != old_status or set(data) - {"QuoteID", "Status"}
    ):
        errors.append(f"This quote cannot be edited as it is {old_status}.")
    elif status == "INVOICED" and old_status != "INVOICED" and existing is not None and old_status != "ACCEPTED":
        errors.append("Only an ACCEPTED quote can be marked INVOICED")
    elif existing is not None and status not in QUOTE_TRANSITIONS.get(old_status, set()):
        errors.append(f"Quote status cannot change from {old_status} to {status}")
    contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    # Quotes spell their line amount types in capitals (the spec's QuoteLineAmountTypes).
    given = data.get("LineAmountTypes") or (existing or {}).get("LineAmountTypes") or "EXCLUSIVE"
    quote_types = {t.upper(): t for t in LINE_AMOUNT_TYPES}
    if given not in quote_types:
        errors.append(f"LineAmountTypes must be one of {', '.join(quote_types)}")
        given = "EXCLUSIVE"
    amount_types = quote_types[given]
    old_lines = (existing or {}).get("LineItems") or []
    raw_lines = data["LineItems"] if "LineItems" in data else old_lines
    lines, totals = _compute_lines(txn, raw_lines, old_lines, "QUOTE", amount_types, "DRAFT", errors)
    dates = _document_dates(data, existing, ("Date", "ExpiryDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("QuoteNumber", (existing or {}).get("QuoteNumber"))
    taken = {
        str(q.get("QuoteNumber", "")).casefold()
        for q in quotes.values()
        if existing is None or q["QuoteID"] != existing["QuoteID"]
    }
    if number and str(number).casefold() in taken:
        errors.append("Quote number must be unique.")
    for key, limit in (("Title", 100), ("Summary", 3000), ("Terms", 4000), ("Reference", 4000)):
        if key in data and len(str(data[key] or "")) > limit:
            errors.append(f"{key} must be {limit} characters or fewer")
    if errors:
        return Outcome(_echo(data, "QuoteID", existing), errors, [])
    record = deepcopy(existing) if existing else {"QuoteID": new_id()}
    for key, value in data.items():
        if key not in _DOCUMENT_COMPUTED and key not in (
            "QuoteID",
            "Status",
            "Date",
            "ExpiryDate",
            "CurrencyCode",
            "CurrencyRate",
        ):
            record[key] = deepcopy(value)
    record.update(dates)
    record.update(currency)
    record.update(totals)
    record["QuoteNumber"] = number or _next_number(txn, "quote_seq", "QU-", taken)
    record["Status"] = status
    record["LineAmountTypes"] = given
    record["LineItems"] = lines
    if contact:
        record["Contact"] = {"ContactID": contact["ContactID"]}
    record.update(txn.store.stamp())
    quotes[record["QuoteID"]] = record
    return Outcome(record, [], [])


# ---- payments ---------------------------------------------------------------------------------


def _upsert_payment(txn: _Txn, data: dict[str, Any]) -> Outcome:
    payments = txn.col("payments")
    invoices = txn.col("invoices")
    payment_id = txn.path_id or data.get("PaymentID")
    if payment_id:
        return _delete_payment(txn, payment_id, data)
    errors: list[str] = []
    reference = data.get("Invoice") or {}
    invoice = None
    if isinstance(reference, dict) and reference.get("InvoiceID"):
        invoice = invoices.get(reference["InvoiceID"])
    elif isinstance(reference, dict) and reference.get("InvoiceNumber"):
        invoice = next(
            (i for i in invoices.values() if i.get("InvoiceNumber") == reference["InvoiceNumber"]), None
        )
    if data.get("CreditNote") or data.get("Prepayment") or data.get("Overpayment"):
        errors.append("The emulator applies payments to invoices only")
    elif invoice is None:
        errors.append("The Invoice of a payment must be given by an existing InvoiceID or InvoiceNumber")
    elif invoice["Status"] != "AUTHORISED":
        errors.append(f"Payments can only be applied to AUTHORISED invoices; this one is {invoice['Status']}")
    account = _payment_account(txn, data.get("Account"), errors)
    try:
        amount = money(to_decimal(data.get("Amount"), "Amount")) if data.get("Amount") is not None else None
    except BadValue as error:
        errors.append(str(error))
        amount = None
    if amount is None:
        if not any("Amount" in e for e in errors):
            errors.append("The payment Amount must be specified")
    elif amount <= 0:
        errors.append("The payment Amount must be greater than zero")
    elif invoice is not None and amount > invoice["AmountDue"]:
        errors.append("Payment amount exceeds the amount outstanding on this document")
    dates = _document_dates(data, None, ("Date",), errors)
    if errors:
        return Outcome(_echo(data, "PaymentID", None), errors, [])
    assert invoice is not None and amount is not None and account is not None
    stamp = txn.store.stamp()
    record = {
        k: deepcopy(v) for k, v in data.items() if k not in _COMPUTED and k not in ("Invoice", "Account")
    }
    record.update(
        {
            "PaymentID": new_id(),
            "Status": "AUTHORISED",
            "Amount": amount,
            "BankAmount": amount,
            "CurrencyRate": invoice.get("CurrencyRate", Decimal("1")),
            "PaymentType": "ACCRECPAYMENT" if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT",
            "IsReconciled": False,
            "HasAccount": True,
            "HasValidationErrors": False,
            "Account": {"AccountID": account["AccountID"], "Code": account.get("Code", "")},
            "Invoice": {"InvoiceID": invoice["InvoiceID"]},
            **dates,
            **stamp,
        }
    )
    payments[record["PaymentID"]] = record
    paid = invoice["AmountPaid"] + amount
    updated = dict(invoice)
    updated["AmountPaid"] = paid
    updated["AmountDue"] = money(invoice["Total"] - paid - invoice["AmountCredited"])
    updated["Payments"] = [
        *invoice.get("Payments", []),
        {
            "PaymentID": record["PaymentID"],
            "Date": record["Date"],
            "Amount": amount,
            "Reference": record.get("Reference", ""),
            "CurrencyRate": record["CurrencyRate"],
            "HasAccount": True,
            "HasValidationErrors": False,
        },
    ]
    if updated["AmountDue"] == 0:
        updated["Status"] = "PAID"
        updated["FullyPaidOnDate"] = record["Date"]
    updated.update(stamp)
    invoices[invoice["InvoiceID"]] = updated
    return Outcome(record, [], [])


def _payment_account(txn: _Txn, reference: Any, errors: list[str]) -> dict[str, Any] | None:
    account = None
    if isinstance(reference, dict):
        if reference.get("AccountID"):
            account = txn.accounts_by_id.get(reference["AccountID"])
        elif reference.get("Code"):
            account = txn.accounts.get(str(reference["Code"]).upper())
    if account is None:
        errors.append("The Account of a payment must be given by an existing AccountID or Code")
    elif account.get("Type") != "BANK" and not account.get("EnablePaymentsToAccount"):
        errors.append(f"Account {account.get('Code')} is not a bank account and does not accept payments")
        return None
    return account


def _delete_payment(txn: _Txn, payment_id: str, data: dict[str, Any]) -> Outcome:
    payments = txn.col("payments")
    invoices = txn.col("invoices")
    payment = payments.get(payment_id)
    if payment is None:
        return Outcome(
            _echo(data, "PaymentID", None),
            [f"Payment with PaymentID {payment_id} was not found"],
            [],
            not_found=bool(txn.path_id),
        )
    if data.get("Status") != "DELETED":
        return Outcome(
            _echo(data, "PaymentID", payment),
            ["Payments cannot be edited; delete it (Status DELETED) and make a new one"],
            [],
        )
    if payment["Status"] == "DELETED":
        return Outcome(payment, [], [])
    stamp = txn.store.stamp()
    deleted = {**payment, "Status": "DELETED", **stamp}
    payments[payment_id] = deleted
    invoice = invoices.get(payment["Invoice"]["InvoiceID"])
    if invoice is not None:
        updated = dict(invoice)
        updated["AmountPaid"] = money(invoice["AmountPaid"] - payment["Amount"])
        updated["AmountDue"] = money(invoice["Total"] - updated["AmountPaid"] - invoice["AmountCredited"])
        updated["Payments"] = [p for p in invoice.get("Payments", []) if p["PaymentID"] != payment_id]
        if invoice["Status"] == "PAID":
            updated["Status"] = "AUTHORISED"
            updated.pop("FullyPaidOnDate", None)
        updated.update(stamp)
        invoices[invoice["InvoiceID"]] = updated
    return Outcome(deleted, [], [])


def _has_allocations(record: dict[str, Any]) -> bool:
    """Whether payments or credit (notes, prepayments, overpayments) are applied: Xero then locks it."""
    return any(record.get(key) for key in ("Payments", "CreditNotes", "Prepayments", "Overpayments", "Allocations"))


def _existing_document(
    txn: _Txn, kind: str, data: dict[str, Any], number_field: str, *, match_number: bool
) -> tuple[dict[str, Any] | None, Outcome | None]:
    """The record an element updates: by path id or ID, else (POST only) by its number."""
    records = txn.col(kind)
    id_field = ID_FIELDS[kind]
    record_id = txn.path_id or data.get(id_field)
    if record_id:
        existing = records.get(record_id) or (_find(records, kind, record_id) if txn.path_id else None)
        if existing is None:
            label = {"purchase_orders": "Purchase order", "credit_notes": "Credit note"}[kind]
            message = (
                "An existing Credit Note with the specified CreditNoteID could not be found"
                if kind == "credit_notes"
                else f"{label} with {id_field} {record_id} was not found"
            )
            return None, Outcome(_echo(data, id_field, None), [message], [], not_found=bool(txn.path_id))
        return existing, None
    if match_number and data.get(number_field) and txn.method == "POST":
        number = str(data[number_field]).casefold()
        found = next((r for r in records.values() if str(r.get(number_field) or "").casefold() == number), None)
        return found, None
    return None, None


def _copy_fields(record: dict[str, Any], data: dict[str, Any], own: tuple[str, ...]) -> None:
    for key, value in data.items():
        if key not in _DOCUMENT_COMPUTED and key not in own:
            record[key] = deepcopy(value)


# ---- purchase orders --------------------------------------------------------------------------


def _upsert_purchase_order(txn: _Txn, data: dict[str, Any]) -> Outcome:
    orders = txn.col("purchase_orders")
    existing, missing = _existing_document(txn, "purchase_orders", data, "PurchaseOrderNumber", match_number=True)
    if missing:
        return missing
    errors: list[str] = []
    warnings: list[str] = []
    old_status = (existing or {}).get("Status")
    status = data.get("Status") or old_status or "DRAFT"
    if status not in PURCHASE_ORDER_STATUSES:
        errors.append(f"Purchase order status must be one of {', '.join(PURCHASE_ORDER_STATUSES)}")
    elif existing is None and status not in PURCHASE_ORDER_CREATE_STATUSES:
        errors.append(
            f"A purchase order cannot be created with status {status}; use one of "
            f"{', '.join(PURCHASE_ORDER_CREATE_STATUSES)}"
        )
    elif existing is not None:
        changes = set(data) - {"PurchaseOrderID", "Status", "SentToContact"}
        if status not in PURCHASE_ORDER_TRANSITIONS.get(old_status, set()):
            errors.append(f"Purchase order status cannot change from {old_status} to {status}")
        elif old_status in ("BILLED", "DELETED") and changes:
            errors.append(NOT_MODIFIABLE.format(kind="Purchase order"))
    if "SentToContact" in data and status not in ("AUTHORISED", "BILLED"):
        # Xero's own example answers this as a warning, not an error, and ignores the flag
        warnings.append("Only AUTHORISED and BILLED purchase orders may have SentToContact updated.")
    contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    amount_types = data.get("LineAmountTypes") or (existing or {}).get("LineAmountTypes") or "Exclusive"
    if amount_types not in LINE_AMOUNT_TYPES:
        errors.append(f"LineAmountTypes must be one of {', '.join(LINE_AMOUNT_TYPES)}")
        amount_types = "Exclusive"
    old_lines = (existing or {}).get("LineItems") or []
    raw_lines = data["LineItems"] if "LineItems" in data else old_lines
    # account codes are optional on purchase orders, whatever the status: "DRAFT" skips that rule
    lines, totals = _compute_lines(txn, raw_lines, old_lines, "PURCHASEORDER", amount_types, "DRAFT", errors)
    if status in ("SUBMITTED", "AUTHORISED") and not lines:
        errors.append("A purchase order must have at least one line item before it can be submitted or approved")
    dates = _document_dates(data, existing, ("Date", "DeliveryDate", "ExpectedArrivalDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("PurchaseOrderNumber", (existing or {}).get("PurchaseOrderNumber"))
    taken = {
        str(o.get("PurchaseOrderNumber", "")).casefold()
        for o in orders.values()
        if existing is None or o["PurchaseOrderID"] != existing["PurchaseOrderID"]
    }
    if number and str(number).casefold() in taken:
        errors.append("Order number must be unique")
    if len(str(data.get("DeliveryInstructions") or "")) > 500:
        errors.append("DeliveryInstructions must be 500 characters or fewer")
    if errors:
        echoed = _echo(data, "PurchaseOrderID", existing)
        if lines:
            echoed["LineItems"] = lines
        return Outcome(echoed, errors, warnings)
    record = (
        deepcopy(existing)
        if existing
        else {
            "PurchaseOrderID": new_id(),
            "Type": "PURCHASEORDER",
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": False,
        }
    )
    _copy_fields(
        record,
        data,
        ("PurchaseOrderID", "Type", "Status", "Date", "DeliveryDate", "ExpectedArrivalDate", "CurrencyCode",
         "CurrencyRate", "SentToContact"),
    )
    if "SentToContact" in data and not warnings:
        record["SentToContact"] = bool(data["SentToContact"])
    record.update(dates)
    record.update(currency)
    record["TotalDiscount"] = Decimal("0.00")
    record.update(totals)
    record["IsDiscounted"] = bool(record["TotalDiscount"])
    record["PurchaseOrderNumber"] = number or _next_number(txn, "purchase_order_seq", "PO-", taken)
    record["Status"] = status
    record["LineAmountTypes"] = amount_types
    record["LineItems"] = lines
    if contact:
        record["Contact"] = {"ContactID": contact["ContactID"]}
    record.update(txn.store.stamp())
    orders[record["PurchaseOrderID"]] = record
    return Outcome(record, [], warnings)


# ---- credit notes and their allocations -------------------------------------------------------


def _upsert_credit_note(txn: _Txn, data: dict[str, Any]) -> Outcome:
    notes = txn.col("credit_notes")
    existing, missing = _existing_document(txn, "credit_notes", data, "CreditNoteNumber", match_number=False)
    if missing:
        return missing
    errors: list[str] = []
    warnings: list[str] = []
    note_type = data.get("Type") or (existing or {}).get("Type")
    if note_type not in CREDIT_NOTE_TYPES:
        errors.append(
            "Credit note Type must be ACCRECCREDIT or ACCPAYCREDIT" if note_type else "Type must be specified"
        )
        note_type = note_type if note_type in CREDIT_NOTE_TYPES else "ACCRECCREDIT"
    if existing and note_type != existing["Type"]:
        errors.append("The Type of an existing credit note cannot be changed")
    old_status = (existing or {}).get("Status")
    status = data.get("Status") or old_status or "DRAFT"
    if existing is None:
        if status not in INVOICE_CREATE_STATUSES:
            errors.append(
                f"A credit note cannot be created with status {status}; use one of "
                f"{', '.join(INVOICE_CREATE_STATUSES)}"
            )
    else:
        changes = {k for k in data if k not in ("CreditNoteID", "Status", "Type")}
        if status == "PAID" and old_status != "PAID":
            errors.append("Credit note status cannot be set to PAID; allocate it or refund it instead")
        elif status not in INVOICE_TRANSITIONS.get(old_status, set()):
            errors.append(f"Credit note status cannot change from {old_status} to {status}")
        if _has_allocations(existing) and (changes or status != old_status):
            errors.append(LOCKED_BY_ALLOCATION)
        elif old_status in ("VOIDED", "DELETED") and (changes or status != old_status):
            errors.append(NOT_MODIFIABLE.format(kind="Credit note"))
    if data.get("Allocations") and existing is None:
        warnings.append("Allocations are made with PUT /CreditNotes/{CreditNoteID}/Allocations; ignored here")
    contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    amount_types = data.get("LineAmountTypes") or (existing or {}).get("LineAmountTypes") or "Exclusive"
    if amount_types not in LINE_AMOUNT_TYPES:
        errors.append(f"LineAmountTypes must be one of {', '.join(LINE_AMOUNT_TYPES)}")
        amount_types = "Exclusive"
    old_lines = (existing or {}).get("LineItems") or []
    raw_lines = data["LineItems"] if "LineItems" in data else old_lines
    lines, totals = _compute_lines(txn, raw_lines, old_lines, note_type, amount_types, status, errors)
    if status in ("SUBMITTED", "AUTHORISED") and not lines:
        errors.append("A credit note must have at least one line item before it can be submitted or approved")
    dates = _document_dates(data, existing, ("Date", "DueDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("CreditNoteNumber", (existing or {}).get("CreditNoteNumber"))
    taken = {
        str(n.get("CreditNoteNumber", "")).casefold()
        for n in notes.values()
        if n.get("Type") == note_type and (existing is None or n["CreditNoteID"] != existing["CreditNoteID"])
    }
    if note_type == "ACCRECCREDIT" and number and str(number).casefold() in taken:
        errors.append("Credit Note # must be unique.")
    if errors:
        echoed = _echo(data, "CreditNoteID", existing)
        if lines:
            echoed["LineItems"] = lines
        return Outcome(echoed, errors, warnings)
    if note_type == "ACCRECCREDIT" and not number:
        number = _next_number(txn, "credit_note_seq", "CN-", taken)
    record = (
        deepcopy(existing)
        if existing
        else {
            "CreditNoteID": new_id(),
            "Type": note_type,
            "Allocations": [],
            "Payments": [],
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": False,
        }
    )
    _copy_fields(record, data, ("CreditNoteID", "Type", "Status", "Date", "DueDate", "CurrencyCode", "CurrencyRate"))
    record.update(dates)
    record.update(currency)
    record.update(totals)
    record["CreditNoteNumber"] = number or ""
    record["ID"] = record["CreditNoteID"]
    record["Status"] = status
    record["LineAmountTypes"] = amount_types
    record["LineItems"] = lines
    record["RemainingCredit"] = (
        Decimal("0.00") if status in ("VOIDED", "DELETED") else money(record["Total"] - _allocated(record))
    )
    if contact:
        record["Contact"] = {"ContactID": contact["ContactID"]}
    record.update(txn.store.stamp())
    notes[record["CreditNoteID"]] = record
    return Outcome(record, [], warnings)


def _allocated(note: dict[str, Any]) -> Decimal:
    applied = sum((a["Amount"] for a in note.get("Allocations") or []), Decimal("0"))
    paid = sum((p["Amount"] for p in note.get("Payments") or []), Decimal("0"))
    return applied + paid


def _allocate_credit_note(txn: _Txn, data: dict[str, Any]) -> Outcome:
    """One allocation of the credit note ``txn.parent_id`` to an invoice of the same contact."""
    notes = txn.col("credit_notes")
    invoices = txn.col("invoices")
    note = notes.get(txn.parent_id) or _find(notes, "credit_notes", txn.parent_id)
    if note is None:
        return Outcome(
            _echo(data, "AllocationID", None),
            ["An existing Credit Note with the specified CreditNoteID could not be found"],
            [],
            not_found=True,
        )
    errors: list[str] = []
    reference = data.get("Invoice") if isinstance(data.get("Invoice"), dict) else {}
    invoice = None
    if reference.get("InvoiceID"):
        invoice = invoices.get(reference["InvoiceID"])
    elif reference.get("InvoiceNumber"):
        invoice = _find(invoices, "invoices", str(reference["InvoiceNumber"]))
    if note["Status"] != "AUTHORISED":
        errors.append(f"Only AUTHORISED credit notes can be allocated; this one is {note['Status']}")
    if invoice is None:
        errors.append("The Invoice of an allocation must be given by an existing InvoiceID or InvoiceNumber")
    else:
        if invoice["Type"] != CREDIT_NOTE_TYPES[note["Type"]]:
            wanted = CREDIT_NOTE_TYPES[note["Type"]]
            errors.append(f"A {note['Type']} credit note can only be allocated to {wanted} invoices")
        if invoice["Status"] != "AUTHORISED":
            errors.append(
                "The invoice you are trying to allocate to has already been paid off"
                if invoice["Status"] == "PAID"
                else f"Credit can only be allocated to AUTHORISED invoices; this one is {invoice['Status']}"
            )
        if invoice.get("Contact", {}).get("ContactID") != note.get("Contact", {}).get("ContactID"):
            errors.append("The credit note and the invoice must belong to the same contact")
        if invoice.get("CurrencyCode") != note.get("CurrencyCode"):
            errors.append("The credit note and the invoice must be in the same currency")
    amount = None
    try:
        if data.get("Amount") is None:
            errors.append("The allocation Amount must be specified")
        else:
            amount = money(to_decimal(data["Amount"], "Amount"))
    except BadValue as error:
        errors.append(str(error))
    if amount is not None:
        if amount <= 0:
            errors.append("The allocation Amount must be greater than zero")
        elif amount > note["RemainingCredit"]:
            errors.append("The amount allocated is greater than the remaining credit on this credit note")
        elif invoice is not None and invoice["Status"] == "AUTHORISED" and amount > invoice["AmountDue"]:
            errors.append("Credit note cannot be allocated as amount is greater than amount outstanding")
    day = data.get("Date") or dt.datetime.now(dt.UTC).date().isoformat()
    dates = _document_dates({"Date": day}, None, ("Date",), errors)
    if errors:
        return Outcome(_echo(data, "AllocationID", None), errors, [])
    assert invoice is not None and amount is not None
    stamp = txn.store.stamp()
    allocation_id = new_id()
    updated_note = deepcopy(note)
    updated_note["Allocations"] = [
        *note.get("Allocations", []),
        {
            "AllocationID": allocation_id,
            "Amount": amount,
            "Date": dates["Date"],
            "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice.get("InvoiceNumber", "")},
        },
    ]
    updated_note["RemainingCredit"] = money(note["Total"] - _allocated(updated_note))
    if updated_note["RemainingCredit"] == 0:
        updated_note["Status"] = "PAID"
        updated_note["FullyPaidOnDate"] = dates["Date"]
    updated_note.update(stamp)
    notes[note["CreditNoteID"]] = updated_note
    updated_invoice = deepcopy(invoice)
    updated_invoice["AmountCredited"] = money(invoice["AmountCredited"] + amount)
    updated_invoice["AmountDue"] = money(
        invoice["Total"] - invoice["AmountPaid"] - updated_invoice["AmountCredited"]
    )
    updated_invoice["CreditNotes"] = [
        *invoice.get("CreditNotes", []),
        {
            "CreditNoteID": note["CreditNoteID"],
            "ID": note["CreditNoteID"],
            "CreditNoteNumber": note.get("CreditNoteNumber", ""),
            "AllocationID": allocation_id,
            "AppliedAmount": amount,
            "Date": dates["Date"],
            "Total": note["Total"],
            "HasErrors": False,
            "LineItems": [],
        },
    ]
    if updated_invoice["AmountDue"] == 0:
        updated_invoice["Status"] = "PAID"
        updated_invoice["FullyPaidOnDate"] = dates["Date"]
    updated_invoice.update(stamp)
    invoices[invoice["InvoiceID"]] = updated_invoice
    answer = {
        "AllocationID": allocation_id,
        "Amount": amount,
        "Date": dates["Date"],
        "Invoice": {"InvoiceID": invoice["InvoiceID"]},
        "CreditNote": {"CreditNoteID": note["CreditNoteID"], "ID": note["CreditNoteID"]},
    }
    return Outcome(answer, [], [])


def _delete_allocation(txn: _Txn, note_id: str, allocation_id: str) -> dict[str, Any] | None:
    """Undo one allocation: the credit returns to the note and the invoice is due again."""
    notes = txn.col("credit_notes")
    invoices = txn.col("invoices")
    note = notes.get(note_id) or _find(notes, "credit_notes", note_id)
    if note is None:
        return None
    allocation = next((a for a in note.get("Allocations") or [] if a["AllocationID"] == allocation_id), None)
    if allocation is None:
        return None
    stamp = txn.store.stamp()
    updated_note = deepcopy(note)
    updated_note["Allocations"] = [a for a in note["Allocations"] if a["AllocationID"] != allocation_id]
    updated_note["RemainingCredit"] = money(note["Total"] - _allocated(updated_note))
    if note["Status"] == "PAID":
        updated_note["Status"] = "AUTHORISED"
        updated_note.pop("FullyPaidOnDate", None)
    updated_note.update(stamp)
    notes[note["CreditNoteID"]] = updated_note
    invoice = invoices.get(allocation["Invoice"]["InvoiceID"])
    if invoice is not None:
        updated = deepcopy(invoice)
        updated["AmountCredited"] = money(invoice["AmountCredited"] - allocation["Amount"])
        updated["AmountDue"] = money(invoice["Total"] - invoice["AmountPaid"] - updated["AmountCredited"])
        updated["CreditNotes"] = [c for c in invoice.get("CreditNotes", []) if c.get("AllocationID") != allocation_id]
        if invoice["Status"] == "PAID" and updated["AmountDue"] > 0:
            updated["Status"] = "AUTHORISED"
            updated.pop("FullyPaidOnDate", None)
        updated.update(stamp)
        invoices[invoice["InvoiceID"]] = updated
    return {
        "AllocationID": allocation_id,
        "Amount": allocation["Amount"],
        "Date": allocation["Date"],
        "Invoice": {"InvoiceID": allocation["Invoice"]["InvoiceID"]},
        "IsDeleted": True,
    }


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


def updated_ms(record: dict[str, Any]) -> int:
    return xero_to_ms(record.get("UpdatedDateUTC")) or 0
