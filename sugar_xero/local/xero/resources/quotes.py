"""Quotes and their status path."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from .common import (
    _DOCUMENT_COMPUTED,
    LINE_AMOUNT_TYPES,
    Outcome,
    _currency,
    _document_dates,
    _echo,
    _find,
    _next_number,
    _Txn,
    new_id,
)
from .contacts import _resolve_contact
from .lines import _compute_lines

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


# Fields the store sets itself (from the checked values), never copied from the body as sent.
_SET_BY_THE_STORE = ("QuoteID", "Status", "Date", "ExpiryDate", "CurrencyCode", "CurrencyRate")


def _check_quote_status(data: dict[str, Any], existing: dict[str, Any] | None, status: str,
                        errors: list[str]) -> None:
    """A known status; one a new quote may start in, or a transition Xero allows; INVOICED only
    from ACCEPTED; deleted and invoiced quotes are locked."""
    old_status = (existing or {}).get("Status")
    if status not in QUOTE_STATUSES:
        errors.append(f"Quote status must be one of {', '.join(QUOTE_STATUSES)}")
    elif existing is None and status not in QUOTE_CREATE_STATUSES:
        errors.append(
            f"A quote cannot be created with status {status}; use one of {', '.join(QUOTE_CREATE_STATUSES)}"
            + (" (only an ACCEPTED quote can be marked INVOICED)" if status == "INVOICED" else "")
        )
    elif old_status in ("DELETED", "INVOICED") and (status != old_status or set(data) - {"QuoteID", "Status"}):
        errors.append(f"This quote cannot be edited as it is {old_status}.")
    elif status == "INVOICED" and old_status != "INVOICED" and existing is not None and old_status != "ACCEPTED":
        errors.append("Only an ACCEPTED quote can be marked INVOICED")
    elif existing is not None and status not in QUOTE_TRANSITIONS.get(old_status, set()):
        errors.append(f"Quote status cannot change from {old_status} to {status}")


def _quote_amount_types(data: dict[str, Any], existing: dict[str, Any] | None, errors: list[str]) -> tuple[str, str]:
    """Quotes spell their line amount types in capitals (the spec's QuoteLineAmountTypes):
    returns (as the quote keeps it, as the line arithmetic knows it)."""
    given = data.get("LineAmountTypes") or (existing or {}).get("LineAmountTypes") or "EXCLUSIVE"
    quote_types = {t.upper(): t for t in LINE_AMOUNT_TYPES}
    if given not in quote_types:
        errors.append(f"LineAmountTypes must be one of {', '.join(quote_types)}")
        given = "EXCLUSIVE"
    return given, quote_types[given]


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
    status = data.get("Status") or (existing or {}).get("Status") or "DRAFT"
    _check_quote_status(data, existing, status, errors)
    contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    given, amount_types = _quote_amount_types(data, existing, errors)
    old_lines = (existing or {}).get("LineItems") or []
    raw_lines = data["LineItems"] if "LineItems" in data else old_lines
    lines, totals = _compute_lines(txn, raw_lines, old_lines, "QUOTE", amount_types, "DRAFT", errors)
    dates = _document_dates(txn, data, existing, ("Date", "ExpiryDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("QuoteNumber", (existing or {}).get("QuoteNumber"))
    taken = {str(q.get("QuoteNumber", "")).casefold() for q in quotes.values()
             if existing is None or q["QuoteID"] != existing["QuoteID"]}
    if number and str(number).casefold() in taken:
        errors.append("Quote number must be unique.")
    for key, limit in (("Title", 100), ("Summary", 3000), ("Terms", 4000), ("Reference", 4000)):
        if key in data and len(str(data[key] or "")) > limit:
            errors.append(f"{key} must be {limit} characters or fewer")
    if errors:
        return Outcome(_echo(data, "QuoteID", existing), errors, [])
    record = deepcopy(existing) if existing else {"QuoteID": new_id()}
    for key, value in data.items():
        if key not in _DOCUMENT_COMPUTED and key not in _SET_BY_THE_STORE:
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
