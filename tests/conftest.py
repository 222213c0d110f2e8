"""Test set-up shared by every layer: fake AWS credentials before any boto3 client exists,
moto-backed sync table and queue, and the shared fixture files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
    "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_NAMESPACE": "SugarXero",
    "POWERTOOLS_SERVICE_NAME": "sugar-xero", "POWERTOOLS_DEV": "0",
})
for name in ("AWS_ENDPOINT_URL", "SECRETS_ARN", "XERO_TENANT_ID", "PUBLIC_BASE_URL"):
    os.environ.pop(name, None)

REPO = Path(__file__).resolve().parents[1]
FIXTURES_ENV_VAR = "SUGAR_XERO_FIXTURES"
SHARED_FIXTURES = Path(os.environ.get(FIXTURES_ENV_VAR) or REPO.parent / "shared" / "fixtures")
# Hook bodies written by us in the shapes Sugar 8 and 13 send (tests/fixtures/README.md).
OUR_FIXTURES = REPO / "tests" / "fixtures"


def missing_requirements() -> list[str]:
    """What the suite cannot run without, each with where it was looked for and how to point at it.
    Nothing skips or weakens itself when these are absent: the session refuses to start."""
    from sugar_xero import xero_spec

    missing = []
    spec = xero_spec.spec_path()
    if not spec.is_file():
        missing.append(f"Xero's OpenAPI spec is not at {spec}: set {xero_spec.SPEC_ENV_VAR} to "
                       "xero_accounting.yaml (default ../shared/xero-openapi/xero_accounting.yaml)")
    if not (SHARED_FIXTURES / "sugar").is_dir() or not (SHARED_FIXTURES / "xero").is_dir():
        missing.append(f"the team's fixtures are not at {SHARED_FIXTURES} (sugar/ and xero/): set "
                       f"{FIXTURES_ENV_VAR} to the fixtures folder (default ../shared/fixtures)")
    contract = REPO.parent / "shared" / "design" / "api-contract.md"
    if not contract.is_file():
        missing.append(f"the team's API contract is not at {contract} (the shared/ folder beside the repository)")
    return missing


def pytest_configure(config: pytest.Config) -> None:
    missing = missing_requirements()
    if missing:
        raise pytest.UsageError("the test suite needs files it cannot find:\n  - " + "\n  - ".join(missing))


def load_fixture(relative: str) -> dict:
    """One of our own sample bodies (tests/fixtures/), e.g. ``sugar/account_after_save.json``."""
    return json.loads((OUR_FIXTURES / relative).read_text())


def load_shared_fixture(relative: str) -> dict:
    """One of the team's sample bodies ($SUGAR_XERO_FIXTURES), checked present at session start."""
    return json.loads((SHARED_FIXTURES / relative).read_text())


@pytest.fixture
def fixture_body():
    return load_fixture


def create_sync_table(dynamodb, name: str) -> None:
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                              {"AttributeName": "SK", "AttributeType": "S"},
                              {"AttributeName": "xero_id", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-xero-id",
                                 "KeySchema": [{"AttributeName": "xero_id", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
    )


@pytest.fixture
def atomic_moto():
    """moto's conditional writes made atomic, as DynamoDB's are (tests/support/moto_atomic.py)."""
    from tests.support.moto_atomic import atomic_moto_dynamodb

    with atomic_moto_dynamodb():
        yield


SYNC_TABLE_NAME = "sync-test"


@pytest.fixture
def moto_dynamodb(monkeypatch):
    """A boto3 session under moto with the sync table (SYNC_TABLE_NAME) and nothing else."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        session = boto3.session.Session()
        create_sync_table(session.client("dynamodb"), SYNC_TABLE_NAME)
        yield session


@pytest.fixture
def aws(monkeypatch):
    """moto for DynamoDB and SQS, with the sync table and the contact queue (and its DLQ)."""
    from moto import mock_aws

    with mock_aws():
        import boto3

        from shared import wiring

        create_sync_table(boto3.client("dynamodb"), SYNC_TABLE_NAME)
        sqs = boto3.client("sqs")
        dlq = sqs.create_queue(QueueName="contact-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName="contact", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
        monkeypatch.setenv("SYNC_TABLE", "sync-test")
        monkeypatch.setenv("CONTACT_QUEUE_URL", queue)
        wiring.reset()
        yield {"sqs": sqs, "queue_url": queue, "dlq_url": dlq, "dynamodb": boto3.resource("dynamodb")}
        wiring.reset()


@pytest.fixture(autouse=True)
def xero_bodies_match_the_official_spec(monkeypatch):
    """Wraps the Xero client's one transport method, so whatever the test uses underneath
    (responses, the emulator, a real socket) every body it sends is validated."""
    from shared.xero.client import XeroClient
    from tests.support import contract

    original = XeroClient._request

    def validated(self, method, path, *, params=None, json_body=None, **kwargs):
        contract.check(method, path, json_body, params)
        return original(self, method, path, params=params, json_body=json_body, **kwargs)

    monkeypatch.setattr(XeroClient, "_request", validated)
    contract.violations.clear()
    yield
    found, contract.violations[:] = list(contract.violations), []
    assert not found, "request bodies that Xero's spec refuses:\n" + "\n".join(found)


@pytest.fixture
def invoice_queue(aws, monkeypatch):
    """invoice_push's work queue under moto, wired into the handler's settings."""
    from shared import wiring

    url = aws["sqs"].create_queue(QueueName="invoice")["QueueUrl"]
    monkeypatch.setenv("INVOICE_QUEUE_URL", url)
    wiring.reset()
    return url


@pytest.fixture
def invoice_push_handler(invoice_queue):
    from functions.invoice_push import app

    return app.lambda_handler
