"""Which Xero organisation a document goes to, when one CRM serves several
(``organisations`` in the mapping configuration).

The deciding value is a CRM field: of the document's own record (a quote's ``team_id``, a custom
``company_c``; read from the hook data the message carries, else from the CRM) or of its Account
(``account.billing_address_country``: the quote's ``billing_account_id``, or the document's
contact when it is an Account). A value no route names, or a record that cannot be read for good,
goes to the default organisation; a CRM that cannot answer now is an error the caller retries.

The rest of the connector is already keyed by organisation: mappings, rate limits, the
reconcile pass and the webhook worker all take the tenant id, so a document pushed to
organisation B is mapped in B, its customer is pushed to B first if B lacks it, and Xero's
webhooks from B land on the same CRM record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.mapping.settings import Organisations
from shared.sugar.errors import SugarError
from shared.usecases.work import WorkItem

ACCOUNT_PREFIX = "account."


class Router:
    """Routes the items of one batch; CRM records read once per batch."""

    def __init__(self, organisations: Organisations, crm: Any | None):
        self.organisations, self.crm = organisations, crm
        self._records: dict[tuple[str, str], dict[str, Any]] = {}

    def _record(self, module: str, record_id: str, field: str) -> dict[str, Any]:
        key = (module, record_id)
        if key not in self._records:
            if self.crm is None:
                self._records[key] = {}
            else:
                try:
                    self._records[key] = self.crm.get_record(module, record_id, fields=["id", field])
                except SugarError as error:
                    if error.retryable:
                        raise
                    self._records[key] = {}  # gone or refused for good: the default organisation
        return self._records[key]

    def value(self, document: dict[str, Any]) -> Any:
        field = self.organisations.route_by
        if not field:
            return None
        quote = document.get("quote") if isinstance(document.get("quote"), dict) else None
        if field.startswith(ACCOUNT_PREFIX):
            name = field[len(ACCOUNT_PREFIX):]
            if quote is not None:
                account_id = quote.get("billing_account_id")
            elif "contact" not in document and document.get("crm_module") in ("Accounts", "Contacts"):
                # a customer itself (contact_sync): an Account, or a Contact's Account
                account_id = document.get("crm_id") if document.get("crm_module") == "Accounts" \
                    else document.get("parent_crm_id")
            else:
                contact = document.get("contact") or {}
                inline = contact.get("contact") or {}
                module = inline.get("crm_module") or contact.get("crm_module") or "Accounts"
                account_id = (contact.get("crm_id") or inline.get("crm_id")) if module == "Accounts" else None
            return self._record("Accounts", str(account_id), name).get(name) if account_id else None
        if quote is not None:
            if field in quote:
                return quote.get(field)
            return self._record("Quotes", str(quote.get("id")), field).get(field) if quote.get("id") else None
        if field in document:
            return document.get(field)
        module, record_id = document.get("crm_module"), document.get("crm_id")
        return self._record(str(module), str(record_id), field).get(field) if module and record_id else None

    def tenant_for(self, item: WorkItem) -> str:
        return self.organisations.tenant_for(self.value(item.document))

    def split(self, items: Iterable[WorkItem]) -> dict[str, list[WorkItem]]:
        """Items by the tenant id they go to, in arrival order."""
        groups: dict[str, list[WorkItem]] = {}
        for item in items:
            groups.setdefault(self.tenant_for(item), []).append(item)
        return groups
