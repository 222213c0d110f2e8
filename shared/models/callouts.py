"""What each /crm route accepts: a Sugar hook body or the connector's own document."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from shared.mapping.settings import mapping_file
from shared.models.documents import ContactDocument
from shared.models.sugar import AccountHook, ContactHook, core_bean


def _contact_callout_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    bean = value.get("bean")
    if bean is None:
        return "document"
    core = core_bean(bean, mapping_file().defaults.sugar_beans)  # CustomAccount is an Account
    return core if core in {"Account", "Contact"} else None


ContactCallout = Annotated[
    Annotated[AccountHook, Tag("Account")] | Annotated[ContactHook, Tag("Contact")]
    | Annotated[ContactDocument, Tag("document")],
    Discriminator(_contact_callout_kind, custom_error_type="unknown_module",
                  custom_error_message="bean must be Account or Contact, or a class the mapping's sugar_beans "
                                       "maps to Accounts or Contacts (Sugar hook), or the body "
                                       "must be a contact document with crm_id and name"),
]
