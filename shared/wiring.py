"""Composition root: the real adapters, built once per Lambda container on first use (so that
importing a handler stays cheap and tests can set the environment first). ``reset()`` drops
them, for tests that change the environment."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from shared.config import settings
from shared.errors import ConnectionNotReady
from shared.queue import SqsQueue
from shared.secrets import get_secret

if TYPE_CHECKING:  # the adapters are imported where they are built: an API event needs no HTTP client
    import requests

    from shared.state.dynamo import SyncStateTable
    from shared.sugar import SugarClient
    from shared.xero.auth import XeroTokens
    from shared.xero.client import XeroClient


@cache
def _boto3():  # boto3 is imported lazily: handlers that never touch AWS do not pay for it
    import boto3

    return boto3


@cache
def _dynamodb():
    """One DynamoDB resource (and so one client) for every table adapter of the container."""
    return _boto3().resource("dynamodb")


@cache
def job_store() -> SyncStateTable:
    from shared.state.dynamo import SyncStateTable
    from shared.state.payloads import S3PayloadStore

    bucket, key = settings().payload_bucket, settings().token_key_id
    return SyncStateTable(settings().sync_table, resource=_dynamodb(),
                          job_ttl_days=settings().job_ttl_days,
                          payloads=S3PayloadStore(bucket, client=_boto3().client("s3")) if bucket else None,
                          sealer=_sealer(key) if key else None)


@cache
def _sealer(key_id: str):
    """One per container: what it has decrypted it keeps, so a warm worker asks KMS once per token."""
    from shared.state.sealing import KmsTokenSealer

    return KmsTokenSealer(key_id, client=_boto3().client("kms"))


def _queue(url: str | None, name: str) -> SqsQueue:
    if not url:
        raise RuntimeError(f"{name} is not configured")
    return SqsQueue(url, client=_sqs())


@cache
def _sqs():
    return _boto3().client("sqs")


@cache
def contact_queue() -> SqsQueue:
    return _queue(settings().contact_queue_url, "CONTACT_QUEUE_URL")


@cache
def invoice_queue() -> SqsQueue:
    return _queue(settings().invoice_queue_url, "INVOICE_QUEUE_URL")


@cache
def webhook_queue() -> SqsQueue:
    return _queue(settings().webhook_queue_url, "WEBHOOK_QUEUE_URL")


@cache
def http_session() -> requests.Session:
    import requests

    return requests.Session()


@cache
def xero_tokens() -> XeroTokens:
    from shared.xero.auth import XeroTokens

    return XeroTokens(job_store(), settings().connection_id, identity_url=settings().xero_identity_url,
                      client_id=get_secret("XERO_CLIENT_ID"),
                      client_secret=get_secret("XERO_CLIENT_SECRET"), session=http_session())


def tenant_id() -> str:
    """The Xero organisation this CRM instance writes to: configured, recorded at onboarding,
    or (first run against a single-organisation connection) read once from /connections."""
    configured = settings().xero_tenant_id
    if configured:
        return configured
    from shared.mapping.settings import mapping_file

    organisations = mapping_file().organisations
    if organisations is not None:  # several organisations: the default one gets what is not routed
        return organisations.names[organisations.default]
    connection = job_store().get_connection(settings().connection_id) or {}
    if connection.get("tenant_id"):
        return str(connection["tenant_id"])
    response = http_session().get(f"{settings().xero_api_base_url.rstrip('/')}/connections",
                                  headers={"Authorization": f"Bearer {xero_tokens()()}"}, timeout=30)
    response.raise_for_status()
    tenants = [c for c in response.json() if c.get("tenantType", "ORGANISATION") == "ORGANISATION"]
    if not tenants:
        raise ConnectionNotReady("the Xero connection has no organisation; run `sugar-xero connect`")
    job_store().put_connection(settings().connection_id, tenant_id=tenants[0]["tenantId"],
                               tenant_name=tenants[0].get("tenantName", ""))
    return str(tenants[0]["tenantId"])


@cache
def rate_gate():
    from shared.xero.limits import SharedRateGate

    return SharedRateGate(_dynamodb().Table(settings().sync_table),
                          day_limit=settings().xero_day_limit)


def xero_headroom():
    """The default organisation's Xero calls left now, for a worker deciding whether to gather
    (shared.batching): one consistent read of the rate gate's items."""
    from shared.batching import Headroom

    # Only a tenant already known: finding it (GET /connections) is the worker's first call's job.
    tenant = settings().xero_tenant_id or (job_store().get_connection(settings().connection_id) or {}).get("tenant_id")
    return Headroom.from_gate(rate_gate().headroom(str(tenant))) if tenant else None


@cache
def xero_client() -> XeroClient:
    from shared.xero.client import XeroClient

    return XeroClient(settings().xero_api_base_url, tenant_id(), xero_tokens(), session=http_session(),
                      gate=rate_gate())


@cache
def sugar_client() -> SugarClient:
    base_url = settings().sugar_base_url
    if not base_url:
        raise ConnectionNotReady("SUGAR_BASE_URL is not configured")
    from shared.sugar import SugarClient
    from shared.sugar.token_cache import DynamoSugarTokenCache

    return SugarClient(base_url, get_secret("SUGAR_USERNAME"), get_secret("SUGAR_PASSWORD"),
                       get_secret("SUGAR_PLATFORM"), DynamoSugarTokenCache(job_store()),
                       session=http_session())


@cache
def oauth_states():
    from shared.state.oauth_states import OAuthStateTable

    return OAuthStateTable(settings().sync_table, resource=_dynamodb())


@cache
def webhook_events():
    from shared.state.webhook_events import WebhookEventTable

    return WebhookEventTable(settings().sync_table, resource=_dynamodb(),
                             event_ttl_hours=settings().dedupe_ttl_hours)


def xero_identity():
    from shared.xero.oauth import XeroIdentity

    return XeroIdentity(identity_url=settings().xero_identity_url, api_base_url=settings().xero_api_base_url,
                        client_id=get_secret("XERO_CLIENT_ID"), client_secret=get_secret("XERO_CLIENT_SECRET"),
                        session=http_session())


def reset() -> None:
    from shared import config

    config.settings.cache_clear()
    from shared import secrets

    secrets.secrets_provider.cache_clear()
    for factory in (_boto3, _dynamodb, job_store, _sealer, _sqs, contact_queue, invoice_queue, webhook_queue,
                    http_session, xero_tokens, xero_client, sugar_client, rate_gate, oauth_states, webhook_events):
        getattr(factory, "cache_clear", lambda: None)()  # a test may have replaced the factory
    getattr(xero_client_for, "cache_clear", lambda: None)()
    for name in ("reconcile_state", "reconcile_queue"):  # defined below
        getattr(globals().get(name), "cache_clear", lambda: None)()


@cache
def xero_client_for(tenant_id: str) -> XeroClient:
    """A Xero client for one organisation (webhook events name theirs): the connection's token
    set and the shared rate gate, with that organisation's ``xero-tenant-id``."""
    _check_connected(tenant_id)
    from shared.xero.client import XeroClient

    return XeroClient(settings().xero_api_base_url, tenant_id, xero_tokens(), session=http_session(),
                      gate=rate_gate())


def _check_connected(tenant_id: str) -> None:
    """One CRM, several organisations: an organisation the mapping configuration names but the
    administrator did not allow at onboarding (the connection records every organisation Xero's
    /connections listed) waits for `sugar-xero connect`, saying so, instead of failing each call."""
    from shared.mapping.settings import mapping_file

    organisations = mapping_file().organisations
    if organisations is None:
        return
    tenants = (job_store().get_connection(settings().connection_id) or {}).get("tenants") or []
    if tenants and tenant_id not in {str(t.get("tenant_id")) for t in tenants}:
        name = organisations.name_of(tenant_id) or tenant_id
        raise ConnectionNotReady(f"the Xero organisation {name} ({tenant_id}) is not connected: run "
                                 "`sugar-xero connect` and allow it in Xero's consent screen")


# ---- reconciliation (functions/reconcile) ------------------------------------------------------
@cache
def organisation_today(tenant_id: str):
    """Today in the Xero organisation's timezone (from the cached nightly metadata), as Xero
    dates documents; the UTC date before the first metadata refresh."""
    from datetime import UTC, datetime

    from shared.usecases.metadata import load_metadata

    metadata = load_metadata(reconcile_state(), tenant_id)
    return metadata.today() if metadata is not None else datetime.now(UTC).date()


def reconcile_state():
    """Watermarks, the last pass's report, the cached organisation metadata, the audit cursor."""
    from shared.state.watermarks import ReconcileStateTable

    return ReconcileStateTable(settings().sync_table, resource=_dynamodb())


@cache
def reconcile_queue() -> SqsQueue:
    """Per-organisation fan-out of a scheduled pass (infra/template.yaml ReconcileQueue)."""
    return _queue(settings().reconcile_queue_url, "RECONCILE_QUEUE_URL")


# ---- billing rules (payment_webhook and reconcile) ----------------------------------------------
def billing_ledger():
    from shared.billing.ledger import BillingLedger

    return BillingLedger(settings().sync_table, resource=_dynamodb())


def billing_rules(tenant_id: str):
    """The billing rules (``shared.usecases.billing``) for one organisation's document changes, as
    an ``on_changes`` callable; None when it has no rules. A change whose rules failed in a way
    worth retrying is raised back (``ChangesFailed``): its state is then not stored, and the same
    news is applied again. The webhook worker and the reconciliation both use this one."""

    from shared.billing.rules import rules_file
    from shared.observability import MetricNames, logger, metrics
    from shared.usecases import billing, xero_updates

    rules = rules_file()
    if not rules.for_tenant(tenant_id):
        return None
    if not settings().sugar_base_url:
        logger.warning("billing rules are configured but SUGAR_BASE_URL is not: they are not run")
        return None
    crm = sugar_client()
    accept_purchase = billing.purchase_acceptor(jobs=job_store(), queue=invoice_queue(),
                                                status_base_url=settings().public_base_url)
    ledger = billing_ledger()

    def on_changes(changes):
        report = billing.run_billing_rules(changes, rules=rules, crm=crm, accept_purchase=accept_purchase,
                                           ledger=ledger, today=organisation_today(tenant_id))
        metrics.add_metric(name=MetricNames.BILLING_RULES_FAILED, unit="Count", value=len(report.failed))
        if report.retry:
            raise xero_updates.ChangesFailed(f"billing rules to retry for {len(report.retry)} documents",
                                             report.retry)
    return on_changes
