"""Records kept in the sync table, and the table's key scheme (one place for every key)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def job_key(job_id: str) -> dict[str, str]:
    return {"PK": f"JOB#{job_id}", "SK": "JOB"}


def document_module(crm_module: str, target: str) -> str:
    """The mapping module of a trade document: one CRM record may have an invoice, a Xero quote
    and a commission bill at once, so the Xero target is part of the key (``Quotes#ACCREC``)."""
    return f"{crm_module}#{target}"


def mapping_key(tenant_id: str, module: str, crm_id: str) -> dict[str, str]:
    return {"PK": f"T#{tenant_id}#{module}#{crm_id}", "SK": "MAP"}


def token_key(connection_id: str) -> dict[str, str]:
    return {"PK": f"TOKEN#{connection_id}", "SK": "TOKEN"}


def connection_key(connection_id: str) -> dict[str, str]:
    return {"PK": f"CONN#{connection_id}", "SK": "CONN"}


class Mapping(BaseModel):
    """One CRM record's counterpart in one Xero organisation."""

    tenant_id: str
    module: str
    crm_id: str
    xero_id: str
    xero_number: str | None = None
    payload_hash: str | None = None
    crm_modified: str | None = None
    xero_updated: str | None = None
    sync_status: str = "synced"
    last_error: str | None = None
    updated_at: str | None = None
    document: dict[str, Any] | None = None  # trade documents: XeroDocumentState in JSON form
