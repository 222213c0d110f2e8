"""What contact_sync's handler logs, API side and queue side: the job id, the CRM id and the Xero
id of the work it did, and never a secret, even one sent to it by a caller."""

from __future__ import annotations

import json
import logging

import pytest

from shared import wiring
from shared.errors import XeroError
from tests.support.events import FakeLambdaContext, api_event, sqs_event
from tests.support.fakes import FakeXero

SECRETS = {"CRM_TOKEN": "crm-token-S3CRET-0001", "CRM_SIGNING_SECRET": "signing-S3CRET-0002",
           "XERO_CLIENT_SECRET": "xero-client-S3CRET-0003", "XERO_WEBHOOK_KEY": "webhook-key-S3CRET-0004",
           "SUGAR_PASSWORD": "sugar-password-S3CRET-0005"}
WRONG_TOKEN = "wrong-bearer-S3CRET-0006"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged(aws, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    handler = Collect()
    service_logger = logging.getLogger("sugar-xero")
    previous = service_logger.level
    service_logger.addHandler(handler)
    service_logger.setLevel(logging.DEBUG)
    yield handler.records
    service_logger.removeHandler(handler)
    service_logger.setLevel(previous)


def test_logs_name_the_job_crm_and_xero_ids_and_hold_no_secret(aws, logged, monkeypatch):
    from functions.contact_sync import app

    refused = app.lambda_handler(api_event("POST", "/crm/contacts", body={"crm_id": "a0", "name": "Zero"},
                                           headers={"Authorization": f"Bearer {WRONG_TOKEN}"}), FakeLambdaContext())
    assert refused["statusCode"] == 401
    job_ids = []
    for crm_id, name in (("acc-ok-1", "Kauri Ltd"), ("acc-bad-2", "Totara Ltd")):
        answer = app.lambda_handler(api_event("POST", "/crm/contacts", body={"crm_id": crm_id, "name": name},
                                              query={"token": SECRETS["CRM_TOKEN"]}), FakeLambdaContext())
        assert answer["statusCode"] == 202, answer
        job_ids.append(json.loads(answer["body"])["job_id"])
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)["Messages"]
    bodies = sorted((json.loads(m["Body"]) for m in messages), key=lambda b: b["document"]["crm_id"])

    xero = FakeXero()
    monkeypatch.setattr(wiring, "xero_client", lambda: xero)
    assert app.lambda_handler(sqs_event(bodies[1:]), FakeLambdaContext()) == {"batchItemFailures": []}
    xero.fail_next = [XeroError("Xero answered 400: Totara Ltd is not a valid name", status=400)]
    assert app.lambda_handler(sqs_event(bodies[:1]), FakeLambdaContext()) == {"batchItemFailures": []}

    ok_job, bad_job = job_ids
    (contact,) = xero.contacts.values()
    received = [r for r in logged if r.getMessage() == "batch received"]
    references = [ref for r in received for ref in r.jobs]
    assert {"job_id": ok_job, "kind": "contact.upsert", "crm_id": "acc-ok-1", "crm_module": "Accounts"} in references
    assert {"job_id": bad_job, "kind": "contact.upsert", "crm_id": "acc-bad-2", "crm_module": "Accounts"} \
        in references
    finished = {r.job_id: r for r in logged if r.getMessage() == "job finished"}
    assert finished[ok_job].status == "succeeded" and finished[ok_job].xero == {"contact_id": contact["ContactID"]}
    assert finished[bad_job].status == "failed" and finished[bad_job].levelno == logging.WARNING
    assert "not a valid name" in finished[bad_job].error

    assert len(logged) >= 5
    for record in logged:
        text = record.getMessage() + " " + repr(vars(record))
        for secret in [*SECRETS.values(), WRONG_TOKEN]:
            assert secret not in text, f"a secret reached the log: {record.getMessage()}"
