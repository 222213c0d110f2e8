"""Settings read from the environment, once per process.

Names are the public contract (``design/api-contract.md``); defaults make a local run work with
no setup. Secrets come from Secrets Manager when ``SECRETS_ARN`` is set (deployed), otherwise
from the environment variables of the same name (local runs and tests).
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field

# Documented local defaults: they only ever guard a stack bound to 127.0.0.1.
LOCAL_SECRET_DEFAULTS: dict[str, str] = {
    "CRM_TOKEN": "local-crm-token",
    "CRM_SIGNING_SECRET": "local-crm-signing-secret",
    # Onboarding (/xero/connect) only: an administrator's secret, never the hook token.
    "ADMIN_TOKEN": "local-admin-token",
    "XERO_WEBHOOK_KEY": "local-xero-webhook-key",
    "XERO_CLIENT_ID": "local-xero-client-id",
    "XERO_CLIENT_SECRET": "local-xero-client-secret",
    "SUGAR_USERNAME": "xero-connector",
    "SUGAR_PASSWORD": "local-sugar-password",
    "SUGAR_PLATFORM": "xero_connector",
}


class Settings(BaseModel):
    """Non-secret configuration. Immutable for the life of a Lambda container."""

    model_config = {"frozen": True}

    xero_api_base_url: str = "https://api.xero.com"
    xero_identity_url: str = "https://identity.xero.com/connect/token"
    xero_authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    xero_tenant_id: str | None = None
    sugar_base_url: str | None = None
    sync_table: str = "sugar-xero-sync"
    idempotency_table: str = "sugar-xero-idempotency"
    contact_queue_url: str | None = None
    invoice_queue_url: str | None = None
    webhook_queue_url: str | None = None
    reconcile_queue_url: str | None = None
    secrets_arn: str | None = None
    # S3 bucket for job payloads over DynamoDB's item limit (the template's PayloadBucket).
    payload_bucket: str | None = None
    # The stack's KMS key that seals Xero's and Sugar's tokens in the sync table (TokenKey).
    token_key_id: str | None = None
    aws_endpoint_url: str | None = None
    # The connection whose token set and tenant this CRM instance uses (one CRM, one Xero org).
    connection_id: str = "default"
    public_base_url: str = ""
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    job_ttl_days: int = Field(default=30, ge=1)
    dedupe_ttl_hours: int = Field(default=24, ge=1)
    xero_batch_size: int = Field(default=50, ge=1, le=50)
    # 5,000 a day per organisation; 1,000 on Xero's free Starter developer tier.
    xero_day_limit: int = Field(default=5000, ge=1)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values = {name: env[name.upper()] for name in cls.model_fields if name.upper() in env}
        return cls(**values)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()
