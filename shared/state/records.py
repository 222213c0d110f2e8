"""Records kept in the sync table, and the table's key scheme (one place for every key)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def job_key(job_id: str) -> dict[str, str]:
    return {"PK": f"JOB#{job_id}", "SK": "JOB"}


def document_module(crm_module: str, target: str) -> str:
    """The mapping module of a trade document: one CRM record may have an invoice, a Xero quote
    and a commission bill at once, so the Xero target is part of the key (``Quotes#ACCREC``)."""
    return f"{crm_module}#{target}"


def mapping_key(tenant_id: str, module: str, crm_id: str) -> dict[str, str]:
    return {"PK": f"T#{tenant_id}#{module}#{crm_id}", "SK": "MAP"}


def intent_key(tenant_id: str, module: str, crm_id: str) -> dict[str, str]:
    """A document's write-ahead journal entry: the same partition as its mapping, so the
    document's identity (tenant + CRM module and target + CRM id) is one key for both."""
    return {"PK": f"T#{tenant_id}#{module}#{crm_id}", "SK": "INTENT"}


def token_key(connection_id: str) -> dict[str, str]:
    return {"PK": f"TOKEN#{connection_id}", "SK": "TOKEN"}


def connection_key(connection_id: str) -> dict[str, str]:
    return {"PK": f"CONN#{connection_id}", "SK": "CONN"}


class Mapping(BaseModel):
    """One CRM record's counterpart in one Xero organisation."""

    model_config = ConfigDict(defer_build=True)

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
    version: str | None = None  # the CRM save last pushed (shared.usecases.versions), UTC text


INTENT_STATES = ("intent", "sent", "confirmed", "failed")


class Intent(BaseModel):
    """The write-ahead journal entry of one document (``docs/exactly-once.md``): recorded before
    the Xero call, settled after it. Only the latest attempt is kept.

    ``state``: ``intent`` (recorded, the call may or may not have reached Xero), ``sent`` (the
    call ended without a readable answer: Xero may have acted), ``confirmed`` (Xero's answer is
    in the mapping), ``failed`` (Xero refused it, or refused the call before acting). The Xero
    id is ``found_id``, not ``xero_id``: the by-xero-id index must only ever hold mappings."""

    model_config = ConfigDict(defer_build=True)

    tenant_id: str
    module: str
    crm_id: str
    resource: str
    state: str = "intent"
    attempt: int = 1
    body_hash: str | None = None
    idempotency_key: str | None = None
    marker_field: str | None = None
    marker_value: str | None = None
    version: str | None = None  # the newest CRM save ever intended for this record
    found_id: str | None = None
    job_ids: list[str] = []
    error: str | None = None
    updated_at: str | None = None
    step_values: str | None = None  # a follow-up step's exact request (JSON), for one redone as it was
