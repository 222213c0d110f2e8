"""The adapters a use case needs, as structural types. Tests hand use cases in-memory fakes;
Lambda hands them the DynamoDB, SQS and HTTP adapters."""

from __future__ import annotations

from typing import Any, Protocol

from shared.models.jobs import Job
from shared.state.records import Intent, Mapping


class JobStore(Protocol):
    def create_job(self, job: Job, payload: dict[str, Any]) -> tuple[Job, bool]:
        """Store a new job unless one with the same id exists; returns (job, created)."""

    def get_job(self, job_id: str) -> Job | None: ...

    def delete_job(self, job_id: str) -> None: ...

    def update_job(self, job_id: str, **changes: Any) -> None: ...

    def start_attempt(self, job_id: str) -> None:
        """Mark the job in_progress and count the attempt."""


class MappingStore(Protocol):
    def get_mappings(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Mapping]: ...

    def put_mapping(self, mapping: Mapping) -> None: ...


class JournalStore(Protocol):
    """The write-ahead journal (``shared.usecases.journal``); the sync table implements it."""

    def get_intents(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Intent]: ...

    def record_intent(self, intent: Intent) -> Intent | None:
        """Store a new attempt; None when a newer CRM save was already intended (refused)."""

    def settle_intent(self, intent: Intent, state: str, *, found_id: str | None = None,
                      error: str | None = None) -> bool: ...


class WorkQueue(Protocol):
    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None: ...


class XeroApi(Protocol):
    tenant_id: str

    def upsert_batch(self, resource: str, elements: list[dict[str, Any]], *,
                     idempotency_key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """POST up to 50 elements with summarizeErrors=false (plus ``params``, e.g. unitdp=4);
        returns Xero's elements in order."""

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...
