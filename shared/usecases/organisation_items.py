"""Catalogue items for an organisation that receives a document for them (one CRM, several Xero
organisations): before quotes are pushed to an organisation other than the default one, the
products their lines name that this organisation does not have yet are read from the CRM and
pushed to it, as the contact of a document is pushed first (``invoices._settle_contacts``).

Each push is an ordinary ``item.upsert`` job of that organisation
(``shared.usecases.organisations.organisation_job``: its id salted with the organisation, the
tenant id on the job, so `sugar-xero replay` sends it to the same organisation); the item worker
(``shared.usecases.items``) does the rest, exactly once, keyed by the organisation. A product that
cannot be pushed leaves the quote's line without an item code (the invoice worker's usual
warning), never blocks it. Later saves of the product reach this organisation too (it holds the
product now: ``shared.usecases.organisations.fan_out``).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.mapping.items import hook_to_item_document
from shared.models.sugar import ProductTemplateHook
from shared.observability import logger
from shared.sugar.errors import SugarError
from shared.usecases import items
from shared.usecases.invoices import KIND_QUOTE
from shared.usecases.organisations import organisation_job
from shared.usecases.work import WorkItem

QUOTES = "Quotes"


def _template_ids(crm: Any, quote_id: str) -> set[str]:
    ids: set[str] = set()
    for bundle in crm.related(QUOTES, quote_id, "product_bundles"):
        for product in crm.related("ProductBundles", str(bundle["id"]), "products"):
            if product.get("product_template_id"):
                ids.add(str(product["product_template_id"]))
    return ids


def push_missing_items(documents: list[WorkItem], *, xero: Any, crm: Any, jobs: Any, mappings: Any) -> list[str]:
    """Push to ``xero``'s organisation the products the quotes among ``documents`` need and it
    lacks. Returns the product ids pushed (or tried). Sugar or Xero failing here is logged and
    left to the invoice worker's warning."""
    if crm is None:
        return []
    wanted: set[str] = set()
    for item in documents:
        quote = (item.document or {}).get("quote") if item.kind == KIND_QUOTE else None
        if not isinstance(quote, dict) or not quote.get("id") or (item.document or {}).get("event") == "after_delete":
            continue
        try:
            wanted |= _template_ids(crm, str(quote["id"]))
        except SugarError as error:
            logger.warning("could not read a quote's lines to push its products to the organisation",
                           extra={"crm_id": quote.get("id"), "tenant_id": xero.tenant_id, "error": str(error)})
    if not wanted:
        return []
    known = mappings.get_mappings(xero.tenant_id, items.MODULE, sorted(wanted))
    missing = sorted(wanted - set(known))
    work: list[WorkItem] = []
    for template_id in missing:
        try:
            record = crm.get_record("ProductTemplates", template_id)
            document = hook_to_item_document(ProductTemplateHook(bean="ProductTemplate", event="after_save",
                                                                 data=record))
        except (SugarError, ValidationError) as error:
            logger.warning("a product the organisation needs cannot be read from the CRM",
                           extra={"crm_id": template_id, "tenant_id": xero.tenant_id, "error": str(error)})
            continue
        # A job of its own, stamped with the organisation, so `sugar-xero replay` sends it there again.
        work.append(organisation_job(items.KIND, document.model_dump(mode="json"), xero.tenant_id, jobs=jobs,
                                     message_prefix="item")[0])
    if work:
        outcome = items.sync_items(work, xero=xero, jobs=jobs, mappings=mappings)
        if outcome.retry:
            logger.warning("products for the organisation not pushed yet; quote lines go without item codes",
                           extra={"tenant_id": xero.tenant_id, "products": len(outcome.retry)})
    return [w.document["crm_id"] for w in work]
