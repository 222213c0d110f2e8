"""Items (products and services)."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from ..values import (
    BadValue,
    round_to,
    to_decimal,
)
from .common import _COMPUTED, Outcome, _echo, _find, _Txn, new_id


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
        existing = next((i for i in items.values() if str(i["Code"]).casefold() == str(code).casefold()), None)
        if existing is not None and txn.method == "PUT":
            errors.append(f"Item code '{code}' already exists")
    final_code = code if code is not None else (existing or {}).get("Code")
    if not isinstance(final_code, str) or not final_code.strip():
        errors.append("Item code must be specified")
    elif len(final_code) > 30:
        errors.append("Item code must be 30 characters or fewer")
    else:
        own_id = existing["ItemID"] if existing else None
        if any(i["ItemID"] != own_id and str(i["Code"]).casefold() == final_code.casefold() for i in items.values()):
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
        errors.append(f"TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction.")
    return details
