"""A job: one accepted unit of CRM work, as stored in the sync table and shown by GET /jobs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "in_progress", "succeeded", "failed", "ignored"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "ignored"})


class CrmRef(BaseModel):
    model_config = ConfigDict(defer_build=True)

    module: str
    id: str


class Job(BaseModel):
    model_config = ConfigDict(defer_build=True)

    job_id: str
    status: JobStatus = Field(description="final (succeeded, failed, ignored) only once the job's follow-up steps "
                                          "ran (credit-note allocation, quote to ACCEPTED, CRM write-back); while "
                                          "one waits to be retried the job stays queued and its error and "
                                          "warnings say what it waits for")
    kind: str = Field(description="what the job does, e.g. contact.upsert")
    crm: CrmRef
    tenant_id: str | None = Field(default=None, description="the Xero organisation the job writes to, when it is "
                                                            "not the connection's default one (one CRM, several "
                                                            "organisations)")
    xero: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    attempt: int = Field(default=1, description="which attempt of the job this is: a repair (reconcile, "
                                                "`sugar-xero replay --job`, a stuck-job re-drive) of a job that "
                                                "failed, was overwritten or never confirmed starts a new one, "
                                                "with the same job id and CRM document")
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    created_at: str
    updated_at: str


class Accepted(BaseModel):
    model_config = ConfigDict(defer_build=True)

    job_id: str
    status_url: str
    status: JobStatus = "queued"
    duplicate: bool = Field(default=False, description="true when this is a repeat of an earlier callout")


class Ignored(BaseModel):
    model_config = ConfigDict(defer_build=True)

    status: Literal["ignored"] = "ignored"
    reason: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(defer_build=True)

    error: str
    message: str
    details: list[Any] = Field(default_factory=list)
