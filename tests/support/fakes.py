"""In-memory adapters for use-case tests: they keep what real adapters would send or store."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

from shared.errors import XeroError
from shared.models.jobs import Job
from shared.state.records import Mapping
from tests.support import contract


class FakeJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.payloads: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create_job(self, job: Job, payload: dict[str, Any]) -> tuple[Job, bool]:
        with self._lock:
            if job.job_id in self.jobs:
                return self.jobs[job.job_id], False
            self.jobs[job.job_id] = job
            self.payloads[job.job_id] = payload
            return job, True

    def get_job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def delete_job(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def update_job(self, job_id: str, **changes: Any) -> None:
        self.jobs[job_id] = self.jobs[job_id].model_copy(update=changes)

    def start_attempt(self, job_id: str) -> None:
        job = self.jobs[job_id]
        self.jobs[job_id] = job.model_copy(update={"status": "in_progress", "attempts": job.attempts + 1})


class FakeMappings:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Mapping] = {}

    def get_mappings(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Mapping]:
        return {i: self.items[(tenant_id, module, i)] for i in crm_ids if (tenant_id, module, i) in self.items}

    def put_mapping(self, mapping: Mapping) -> None:
        self.items[(mapping.tenant_id, mapping.module, mapping.crm_id)] = mapping


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self.sent.append(body)


class FakeXero:
    """Upserts contacts like Xero: match by ContactID, else ContactNumber; names unique."""

    tenant_id = "tenant-1"

    def __init__(self) -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, list[dict[str, Any]], str]] = []
        self.fail_next: list[XeroError] = []

    def upsert_batch(self, resource: str, elements: list[dict[str, Any]], *,
                     idempotency_key: str) -> list[dict[str, Any]]:
        assert 1 <= len(elements) <= 50
        contract.check("POST", f"/api.xro/2.0/{resource}", {resource: elements}, {"summarizeErrors": "false"})
        self.calls.append((resource, copy.deepcopy(elements), idempotency_key))
        if self.fail_next:
            raise self.fail_next.pop(0)
        return [self._upsert(element) for element in elements]

    def _upsert(self, element: dict[str, Any]) -> dict[str, Any]:
        existing = self.contacts.get(element.get("ContactID", "")) or next(
            (c for c in self.contacts.values()
             if element.get("ContactNumber") and c.get("ContactNumber") == element["ContactNumber"]), None)
        clash = next((c for c in self.contacts.values()
                      if c["Name"].lower() == element["Name"].lower() and c is not existing), None)
        if clash:
            return {**element, "StatusAttributeString": "ERROR", "HasValidationErrors": True,
                    "ValidationErrors": [{"Message": f"The contact name {element['Name']} is already "
                                                     "assigned to another contact."}]}
        contact = existing or {"ContactID": str(uuid.uuid4())}
        contact.update(element)
        self.contacts[contact["ContactID"]] = contact
        return {**contact, "StatusAttributeString": "OK"}

    def get(self, path: str, params: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        raise NotImplementedError
