"""contact_sync's handler in-process under moto: API Gateway events in, SQS batches through."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import wiring
from shared.api.auth import sugar_signature
from shared.config import LOCAL_SECRET_DEFAULTS
from tests.support.events import FakeLambdaContext, api_event, sqs_event
from tests.support.fakes import FakeXero

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]


@pytest.fixture
def handler(aws):
    from functions.contact_sync import app

    return app.lambda_handler


def call(handler, event):
    answer = handler(event, FakeLambdaContext())
    body = json.loads(answer["body"]) if answer.get("body") else None
    return answer["statusCode"], body


def queued_messages(aws) -> list[dict]:
    answer = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10,
                                        VisibilityTimeout=0)
    return answer.get("Messages", [])


def table_items(aws) -> list[dict]:
    return aws["dynamodb"].Table("sync-test").scan()["Items"]


def test_account_callout_becomes_a_job_then_a_xero_contact(handler, aws, fixture_body, monkeypatch):
    account = fixture_body("sugar/account_after_save.json")
    status, body = call(handler, api_event("POST", "/crm/contacts", body=account, query={"token": TOKEN}))
    assert status == 202
    assert body["status"] == "queued" and body["duplicate"] is False
    assert body["status_url"].endswith(f"/prod/jobs/{body['job_id']}")
    messages = queued_messages(aws)
    assert len(messages) == 1

    fake = FakeXero()
    monkeypatch.setattr(wiring, "xero_client", lambda: fake)
    batch = sqs_event([json.loads(m["Body"]) for m in messages])
    answer = handler(batch, FakeLambdaContext())
    assert answer == {"batchItemFailures": []}
    (contact,) = fake.contacts.values()
    assert contact["ContactNumber"] == account["data"]["id"]

    status, job = call(handler, api_event("GET", f"/jobs/{body['job_id']}", resource="/jobs/{job_id}",
                                          path_parameters={"job_id": body["job_id"]},
                                          headers={"Authorization": f"Bearer {TOKEN}"}))
    assert status == 200
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert job["xero"] == {"contact_id": contact["ContactID"]}
    assert job["crm"] == {"module": "Accounts", "id": account["data"]["id"]}


def test_five_identical_callouts_at_once_make_one_job_and_one_message(handler, aws, fixture_body, atomic_moto,
                                                                       monkeypatch):
    # Lambda runs one invocation per process; five threads in one process would share
    # Powertools' module-level metric set and race on its flush, which is not under test here.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    account = fixture_body("sugar/account_after_save.json")
    event = api_event("POST", "/crm/contacts", body=account, query={"token": TOKEN})
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: call(handler, json.loads(json.dumps(event))), range(5)))
    assert {status for status, _ in answers} == {202}
    assert len({body["job_id"] for _, body in answers}) == 1
    assert sum(body["duplicate"] for _, body in answers) == 4
    assert len(queued_messages(aws)) == 1


@pytest.mark.parametrize("credentials", [
    {}, {"query": {"token": "wrong"}}, {"headers": {"Authorization": "Bearer wrong"}},
    {"headers": {"X-Sugar-Signature": "00" * 32}},
])
def test_no_valid_credentials_is_401_and_nothing_is_stored(handler, aws, credentials):
    status, body = call(handler, api_event("POST", "/crm/contacts", body={"crm_id": "a", "name": "A"},
                                           **credentials))
    assert status == 401 and body["error"] == "unauthorized"
    assert queued_messages(aws) == [] and table_items(aws) == []


def test_signature_and_bearer_and_form_labelled_json_are_accepted(handler, aws):
    raw = json.dumps({"crm_id": "a", "name": "A"})
    signature = sugar_signature(raw.encode(), LOCAL_SECRET_DEFAULTS["CRM_SIGNING_SECRET"])
    status, _ = call(handler, api_event("POST", "/crm/contacts", body=raw, headers={
        "X-Sugar-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}))
    assert status == 202
    status, body = call(handler, api_event("POST", "/crm/contacts", body={"crm_id": "b", "name": "B"},
                                           headers={"Authorization": f"Bearer {TOKEN}"},
                                           base64_body=True))
    assert status == 202, body


@pytest.mark.parametrize(("raw", "status", "code"), [
    ("{not json", 400, "malformed_json"),
    ('{"bean": "Opportunity", "event": "after_save", "data": {"id": "x"}}', 422, "invalid_body"),
    # (an Account with an id and no name is a Data Privacy erasure, accepted: see test_sugar_bodies)
    ('{"bean": "Account", "event": "after_save", "data": {"name": "No Id"}}', 422, "invalid_body"),
    ('{"crm_id": "x", "name": "A", "currency": 12}', 422, "invalid_body"),
    ('[]', 422, "invalid_body"),
])
def test_bad_input_is_a_4xx_json_error_and_nothing_is_stored(handler, aws, raw, status, code):
    answer_status, body = call(handler, api_event("POST", "/crm/contacts", body=raw, query={"token": TOKEN}))
    assert answer_status == status
    assert body["error"] == code and body["message"]
    assert isinstance(body["details"], list)
    assert queued_messages(aws) == [] and table_items(aws) == []


def test_oversized_and_non_json_bodies(handler, aws):
    status, body = call(handler, api_event("POST", "/crm/contacts", body="x" * 300_000,
                                           query={"token": TOKEN}))
    assert status == 413 and body["error"] == "body_too_large"
    status, body = call(handler, api_event("POST", "/crm/contacts", body="<xml/>", query={"token": TOKEN},
                                           headers={"Content-Type": "application/xml"}))
    assert status == 415
    assert table_items(aws) == []


def test_unknown_job_and_health(handler, aws):
    status, body = call(handler, api_event("GET", "/jobs/nope", resource="/jobs/{job_id}",
                                           path_parameters={"job_id": "nope"}, query={"token": TOKEN}))
    assert status == 404 and body["error"] == "not_found"
    status, body = call(handler, api_event("GET", "/health"))
    assert status == 200 and body == {"status": "ok"}


def test_xero_rate_limit_leaves_the_message_for_later(handler, aws, monkeypatch):
    from shared.errors import RateLimited

    status, body = call(handler, api_event("POST", "/crm/contacts", body={"crm_id": "a", "name": "A"},
                                           query={"token": TOKEN}))
    fake = FakeXero()
    fake.fail_next.append(RateLimited("minute", retry_after=20, problem="minute"))
    monkeypatch.setattr(wiring, "xero_client", lambda: fake)
    deferred = []
    monkeypatch.setattr(wiring.contact_queue(), "defer", lambda receipt, seconds: deferred.append(seconds))
    batch = sqs_event([json.loads(m["Body"]) for m in queued_messages(aws)])
    answer = handler(batch, FakeLambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert deferred == [21]
    _, job = call(handler, api_event("GET", f"/jobs/{body['job_id']}", resource="/jobs/{job_id}",
                                     path_parameters={"job_id": body["job_id"]}, query={"token": TOKEN}))
    assert job["status"] == "queued" and "will retry" in job["error"]


def test_no_usable_xero_connection_defers_the_whole_batch(handler, aws, monkeypatch):
    from shared.errors import ConnectionNotReady

    call(handler, api_event("POST", "/crm/contacts", body={"crm_id": "a", "name": "A"}, query={"token": TOKEN}))

    def not_connected():
        raise ConnectionNotReady("the Xero connection has no organisation")

    monkeypatch.setattr(wiring, "xero_client", not_connected)
    deferred = []
    monkeypatch.setattr(wiring.contact_queue(), "defer", lambda receipt, seconds: deferred.append(seconds))
    batch = sqs_event([json.loads(m["Body"]) for m in queued_messages(aws)])
    answer = handler(batch, FakeLambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert deferred == [301]
