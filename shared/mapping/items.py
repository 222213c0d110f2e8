"""Sugar ProductTemplate hook bodies → the connector's ItemDocument → the body of one element of
Xero's ``{"Items": [...]}``.

Codes: Xero's ``Code`` is the item's identity for people (it is what goes on invoice lines) and
must be unique, at most 30 characters. It is the CRM's ``mft_part_num`` when that fits; otherwise
a deterministic fallback: a cleaned prefix of the part number (or of the name) plus a short hash
of the CRM id, so the same product always gets the same code and two products almost never share
one. Two CRM products that still end up with the same code are caught by the worker
(``shared.usecases.items``): the later one fails with an error naming the owner, nothing is
overwritten.

Items are never tracked inventory: no ``InventoryAssetAccountCode`` is ever sent, since stock
levels belong to whatever system ships goods, not to a CRM catalogue.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Any

from shared.mapping.settings import CatalogueRules
from shared.mapping.text import clean, cut_at_word
from shared.models.documents import ItemDocument
from shared.models.sugar import ProductTemplateHook
from shared.money import unit_price

CODE_LIMIT = 30
NAME_LIMIT = 50
DESCRIPTION_LIMIT = 4000
PRICE_STEP = Decimal("0.0001")  # Xero keeps 4 decimals on unit prices when asked with unitdp=4
_HASH_LENGTH = 8
_CODE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def round_price(value: Decimal | None) -> Decimal | None:
    """Sugar's 6-decimal amounts to Xero's 4 (``shared.money.unit_price``, half up)."""
    if value is None:
        return None
    return unit_price(value)


def fallback_code(source: str | None, crm_id: str) -> str:
    """A code for a product whose part number is missing or too long: always the same for the
    same CRM record, at most 30 characters, only letters, digits and ``. _ -``."""
    digest = hashlib.sha256(crm_id.encode()).hexdigest()[:_HASH_LENGTH].upper()
    prefix = _CODE_UNSAFE.sub("-", (source or "").upper()).strip("-._")
    prefix = prefix[:CODE_LIMIT - _HASH_LENGTH - 1].rstrip("-._") or "CRM"
    return f"{prefix}-{digest}"


def item_code(part_number: object, name: object, crm_id: str) -> str:
    code = clean(part_number)
    if code and len(code) <= CODE_LIMIT and code.isprintable():  # no tabs or line breaks
        return code
    return fallback_code(code or clean(name), crm_id)


truncate = cut_at_word  # the name the item mapping's tests know


def _is_deleted(hook: ProductTemplateHook) -> bool:
    return hook.event == "after_delete" or str(hook.data.deleted).lower() in {"1", "true"}


def hook_to_item_document(hook: ProductTemplateHook) -> ItemDocument:
    data = hook.data
    name = clean(data.name) or data.id  # ItemDocument cuts it to Xero's 50, with a note
    status = clean(data.status)
    return ItemDocument(
        crm_id=data.id,
        code=item_code(data.mft_part_num, data.name, data.id),
        name=name,
        description=clean(data.description),
        sales_price=round_price(data.discount_price),
        purchase_price=round_price(data.cost_price),
        tax_class=clean(data.tax_class, 50),
        # Sugar's statuses: Available, Unavailable, Orders Only... only Available is on sale.
        active=status is None or status.lower() == "available",
        deleted=_is_deleted(hook),
        crm_modified=data.date_modified,
    )


def _details(price: Decimal | None, account_code: str, tax_type: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"AccountCode": account_code}
    if price is not None:
        details["UnitPrice"] = round_price(price)
    if tax_type:
        details["TaxType"] = tax_type
    return details


def to_xero_item(doc: ItemDocument, catalogue: CatalogueRules, *,
                 xero_item_id: str | None = None) -> dict[str, Any]:
    """Map a document to a Xero Item. Prices stay Decimal (the Xero client sends them as JSON
    numbers). A deleted or unavailable product is kept in Xero and marked not sold, never
    deleted: invoices and quotes already issued reference it, and Xero refuses to delete an
    item that is in use; not sold hides it from new sales, and Xero then clears its sales
    description and details, so neither is sent."""
    sold = doc.active and not doc.deleted
    purchased = doc.is_purchased if doc.is_purchased is not None else doc.purchase_price is not None
    body: dict[str, Any] = {"Code": doc.code or item_code(None, doc.name, doc.crm_id),
                            "Name": doc.name, "IsSold": sold, "IsPurchased": purchased}
    if xero_item_id:
        body["ItemID"] = xero_item_id
    if sold:
        if doc.description:
            body["Description"] = doc.description
        body["SalesDetails"] = _details(doc.sales_price, catalogue.sales_account_code,
                                        catalogue.sales_tax_types.get(doc.tax_class or ""))
    if purchased:
        body["PurchaseDetails"] = _details(doc.purchase_price, catalogue.purchase_account_code,
                                           catalogue.purchase_tax_types.get(doc.tax_class or ""))
    return body
