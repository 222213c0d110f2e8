"""contact_sync end to end in-process: a pushed Account is written back to Sugar, and the
after_save hook Sugar fires for that write-back is answered 200 ignored, never pushed again."""

from __future__ import annotations

import json

import pytest

from shared import wiring
from shared.config import LOCAL_SECRET_DEFAULTS, settings
from tests.support.events import FakeLambdaContext, api_event, sqs_event
from tests.support.fakes import FakeSugar, FakeXero

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]


@pytest.fixture
def handler(aws):
    from functions.contact_sync import app

    return app.lambda_handler


def call(handler, event):
    answer = handler(event, FakeLambdaContext())
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def drain(aws) -> list[dict]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        aws["sqs"].delete_message(QueueUrl=aws["queue_url"], ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in messages]


def test_pushed_account_is_written_back_and_the_echo_is_ignored(handler, aws, fixture_body, monkeypatch):
    account = fixture_body("sugar/account_after_save.json")
    status, accepted = call(handler, api_event("POST", "/crm/contacts", body=account, query={"token": TOKEN}))
    assert status == 202

    monkeypatch.setenv("SUGAR_BASE_URL", "http://127.0.0.1:9/sugar")
    settings.cache_clear()
    xero, sugar = FakeXero(), FakeSugar()
    monkeypatch.setattr(wiring, "xero_client", lambda: xero)
    monkeypatch.setattr(wiring, "sugar_client", lambda: sugar)
    assert handler(sqs_event(drain(aws)), FakeLambdaContext()) == {"batchItemFailures": []}
    (contact,) = xero.contacts.values()
    written = sugar.records[("Accounts", account["data"]["id"])]
    assert written["xero_id_c"] == contact["ContactID"] and written["xero_sync_status_c"] == "synced"

    # Sugar's after_save for that write-back: only the connector's fields changed.
    echo = {**account, "data": {**account["data"], **written}, "dataChanges": {
        field: {"field_name": field, "before": "", "after": value} for field, value in written.items()}}
    status, body = call(handler, api_event("POST", "/crm/contacts", body=echo, query={"token": TOKEN}))
    assert status == 200 and body["status"] == "ignored" and "xero_id_c" in body["reason"], body
    assert drain(aws) == [] and len(xero.calls) == 1

    # A user's real edit on top of the written-back record still goes through.
    edit = {**echo, "data": {**echo["data"], "name": "Harbour View Group"},
            "dataChanges": {"name": {"field_name": "name", "before": "a", "after": "Harbour View Group"}}}
    status, body = call(handler, api_event("POST", "/crm/contacts", body=edit, query={"token": TOKEN}))
    assert status == 202 and body["job_id"] != accepted["job_id"], body


def test_without_sugar_configured_the_worker_skips_the_write_back(handler, aws, monkeypatch):
    call(handler, api_event("POST", "/crm/contacts", body={"crm_id": "a", "name": "A"}, query={"token": TOKEN}))
    monkeypatch.delenv("SUGAR_BASE_URL", raising=False)
    settings.cache_clear()
    xero = FakeXero()
    monkeypatch.setattr(wiring, "xero_client", lambda: xero)
    monkeypatch.setattr(wiring, "sugar_client", lambda: pytest.fail("no Sugar client without SUGAR_BASE_URL"))
    assert handler(sqs_event(drain(aws)), FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(xero.contacts) == 1
