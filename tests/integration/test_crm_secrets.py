"""Either CRM secret alone authenticates the CRM routes of a deployed stack (the secret read
from Secrets Manager under moto); with neither, every CRM request gets a 503 that an operator
can act on and a log line naming what is missing (never a value)."""

from __future__ import annotations

import json

import pytest

from shared import wiring
from shared.api.auth import sugar_signature
from tests.support.events import FakeLambdaContext, api_event


@pytest.fixture
def deployed(aws, monkeypatch):
    """A function of the secret's contents → the contact_sync handler reading that secret."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    from functions.contact_sync import app

    client = boto3.client("secretsmanager")

    def with_secret(values: dict[str, str]):
        arn = client.create_secret(Name=f"connector-{len(values)}-{sorted(values)}",
                                   SecretString=json.dumps(values))["ARN"]
        monkeypatch.setenv("SECRETS_ARN", arn)
        parameters.clear_caches()
        wiring.reset()
        return app.lambda_handler

    yield with_secret
    parameters.clear_caches()


def post(handler, *, headers=None, query=None):
    """A CRM call that gets past authentication only to find no such job (404)."""
    answer = handler(api_event("GET", "/jobs/no-such-job", headers=headers, query=query,
                               resource="/jobs/{job_id}", path_parameters={"job_id": "no-such-job"}),
                     FakeLambdaContext())
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def test_only_the_crm_token_set(deployed):
    handler = deployed({"CRM_TOKEN": "the-token", "CRM_SIGNING_SECRET": ""})
    assert post(handler, headers={"Authorization": "Bearer the-token"})[0] == 404
    assert post(handler, query={"token": "the-token"})[0] == 404
    # An empty secret signs nothing: the HMAC under "" is no credential.
    signed = sugar_signature(b"", "")
    status, body = post(handler, headers={"X-Sugar-Signature": signed})
    assert status == 401 and "Bearer" in body["message"] and "X-Sugar-Signature" not in body["message"]


def test_only_the_signing_secret_set(deployed):
    handler = deployed({"CRM_TOKEN": "", "CRM_SIGNING_SECRET": "the-secret"})
    signed = sugar_signature(b"", "the-secret")
    assert post(handler, headers={"X-Sugar-Signature": signed})[0] == 404
    for credentials in ({"headers": {"Authorization": "Bearer "}}, {"query": {"token": ""}}, {}):
        status, body = post(handler, **credentials)
        assert status == 401 and "X-Sugar-Signature" in body["message"]


def test_neither_secret_set_refuses_everything_and_says_which(deployed, aws, caplog):
    handler = deployed({"CRM_TOKEN": "", "CRM_SIGNING_SECRET": "", "ADMIN_TOKEN": "adm"})
    for credentials in ({"headers": {"Authorization": "Bearer adm"}}, {"query": {"token": ""}}, {}):
        status, body = post(handler, **credentials)
        assert status == 503 and body["error"] == "not_configured"
        assert "CRM_TOKEN" in body["message"] and "CRM_SIGNING_SECRET" in body["message"]
    logged = caplog.text
    assert "CRM_TOKEN and CRM_SIGNING_SECRET are both missing" in logged
    assert aws["sqs"].receive_message(QueueUrl=aws["queue_url"]).get("Messages") is None
