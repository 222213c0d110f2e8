"""Xero webhook signature and payload: checked on the exact bytes, in constant time, leniently
where Xero's spec is wrong (sequences of 0) and strictly where the connector needs a field."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.xero.webhooks import (
    WebhookEvent,
    check_event_date,
    header,
    normalise_event_date,
    parse_payload,
    signature_is_valid,
    webhook_signature,
)

# RFC 4231, test case 2 (HMAC-SHA256 of "what do ya want for nothing?" with key "Jefe"), as base64.
RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_BASE64 = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
# `printf '<body>' | openssl dgst -sha256 -hmac local-xero-webhook-key -binary | base64`
INTENT_BODY = b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"ZXCVBNMASDFGHJKLQWER"}\n'
INTENT_SIGNATURE = "P6ID0jfP/JwgBsMwLgIKbaCM+qjAFXL6dyz4ztm/Sas="
KEY = "local-xero-webhook-key"


def test_signature_matches_published_hmac_vectors():
    assert webhook_signature(RFC4231_DATA, RFC4231_KEY) == RFC4231_BASE64
    assert webhook_signature(INTENT_BODY, KEY) == INTENT_SIGNATURE
    assert signature_is_valid(INTENT_BODY, INTENT_SIGNATURE, KEY)


def test_a_reserialised_body_does_not_verify():
    """Xero signs its bytes; the same JSON with other whitespace is not what it signed."""
    reserialised = json.dumps(json.loads(INTENT_BODY)).encode()
    assert reserialised != INTENT_BODY
    assert not signature_is_valid(reserialised, INTENT_SIGNATURE, KEY)
    assert not signature_is_valid(INTENT_BODY.rstrip(b"\n"), INTENT_SIGNATURE, KEY)


@pytest.mark.parametrize("presented", [None, "", "   ", "not-base64!", INTENT_SIGNATURE.lower(),
                                       INTENT_SIGNATURE[:-4] + "AAA=", "é" * 44])
def test_wrong_or_missing_signatures_fail(presented):
    assert not signature_is_valid(INTENT_BODY, presented, KEY)


def test_an_empty_key_never_verifies():
    assert not signature_is_valid(b"", webhook_signature(b"", ""), "")


def test_compare_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert signature_is_valid(INTENT_BODY, INTENT_SIGNATURE, KEY)
    assert calls == [(INTENT_SIGNATURE.encode(), INTENT_SIGNATURE.encode())]


@given(body=st.binary(max_size=2048), key=st.text(min_size=1, max_size=64))
def test_signature_is_base64_of_hmac_sha256(body, key):
    expected = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    assert signature_is_valid(body, expected, key)
    assert not signature_is_valid(body + b" ", expected, key)


def test_header_lookup_ignores_case_and_reads_multi_value_headers():
    assert header({"X-Xero-Signature": "a"}, None, "x-xero-signature") == "a"
    assert header({"x-xero-signature": "b"}, None, "x-xero-signature") == "b"
    assert header({"X-XERO-SIGNATURE": "c"}, None, "x-xero-signature") == "c"
    assert header(None, {"X-Xero-Signature": ["d", "e"]}, "x-xero-signature") == "d"
    assert header({"Other": "x"}, {"Other": ["y"]}, "x-xero-signature") is None


def test_intent_to_receive_payload_is_accepted_despite_the_spec_minimum():
    payload = parse_payload(INTENT_BODY)
    assert payload.events == [] and payload.first_event_sequence == 0 and payload.last_event_sequence == 0
    assert payload.valid_events() == ([], 0)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"events": {}}', b'{"entropy": "x"}',
                                  b"\xff\xfe", b'{"events": [], "firstEventSequence": -1}'])
def test_bodies_that_are_not_deliveries_are_refused(body):
    with pytest.raises(ValueError):
        parse_payload(body)


def event(**overrides):
    base = {"resourceUrl": "https://api.xero.com/api.xro/2.0/Invoices/8c3e9a2b-5f7d-4c1e-9b0a-2d4e6f8a1c3b",
            "resourceId": "8c3e9a2b-5f7d-4c1e-9b0a-2d4e6f8a1c3b", "eventDateUtc": "2026-11-26T11:20:05.123",
            "eventType": "UPDATE", "eventCategory": "INVOICE",
            "tenantId": "b1e2c3d4-aaaa-4bbb-8ccc-123456789abc", "tenantType": "ORGANISATION"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_events_are_validated_one_by_one_and_extra_fields_are_kept():
    credit_note = event(eventCategory="CREDITNOTE", data={"Type": "ACCRECCREDIT", "Status": "AUTHORISED"})
    body = json.dumps({"events": [event(), event(resourceId=None), event(eventDateUtc="yesterday"),
                                  event(tenantId="x#y"), credit_note, event(eventCategory="PREPAYMENT")],
                       "firstEventSequence": 1, "lastEventSequence": 6, "entropy": "E"}).encode()
    events, rejected = parse_payload(body).valid_events()
    assert rejected == 3
    assert [e.event_category for e in events] == ["INVOICE", "CREDITNOTE", "PREPAYMENT"]
    assert events[1].as_sent()["data"] == {"Type": "ACCRECCREDIT", "Status": "AUTHORISED"}
    assert events[0].as_sent() == event()


def test_a_delivery_of_readable_events_reads_as_each_event_alone_would():
    """All readable: read in one pass, with the same outcome as one event at a time."""
    raws = [event(), event(eventCategory="CREDITNOTE", data={"Type": "ACCRECCREDIT"}),
            event(eventDateUtc="2026-11-26T12:20:05+01:00", resourceId="0f0e")]
    body = json.dumps({"events": raws, "firstEventSequence": 1, "lastEventSequence": 3}).encode()
    events, rejected = parse_payload(body).valid_events()
    assert rejected == 0
    assert [e.as_sent() for e in events] == [WebhookEvent.model_validate(raw).as_sent() for raw in raws] == raws


@pytest.mark.parametrize(("raw", "normalised"), [
    ("2026-11-26T11:20:05.123", "2026-11-26T11:20:05.123000Z"),
    ("2026-11-26T11:20:05", "2026-11-26T11:20:05.000000Z"),
    ("2026-11-26T11:20:05Z", "2026-11-26T11:20:05.000000Z"),
    ("2026-11-26T11:20:05.1234567", "2026-11-26T11:20:05.123456Z"),
    ("2026-11-26T12:20:05.5+01:00", "2026-11-26T11:20:05.500000Z"),
])
def test_event_dates_normalise_to_sortable_utc(raw, normalised):
    assert normalise_event_date(raw) == normalised


def _refused(check, value: str) -> str | None:
    """How ``check`` refuses ``value`` (the exception's type), None when it accepts it."""
    try:
        check(value)
    except (ValueError, OverflowError) as error:
        return type(error).__name__
    return None


@pytest.mark.parametrize("raw", [
    "2026-11-26T11:20:05.123", "2026-11-26T11:20:05Z", "2026-02-29T00:00:00", "2028-02-29T00:00:00",
    "2026-02-30T00:00:00", "2026-13-01T00:00:00", "2026-11-26T24:00:00", "2026-11-26T23:60:00",
    "2026-11-26T11:20:61", "2026-11-26T11:20:05.1234567", "2026-11-26T11:20:05+25:00", "2026-11-26T11:20:05+0100",
    " 2026-11-26T11:20:05 ", "2026-11-26 11:20:05", "2026-11-26", "", "not a date", "0000-01-01T00:00:00",
    "0001-01-01T00:00:00+01:00",
])
def test_the_quick_date_check_refuses_exactly_what_normalising_refuses(raw):
    assert _refused(check_event_date, raw) == _refused(normalise_event_date, raw)


@given(st.from_regex(r"\A\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-6]\d:[0-6]\d(\.\d{1,8})?(Z|[+-][0-2]\d:?[0-6]\d)?\Z"))
def test_the_quick_date_check_agrees_with_normalising_on_any_date_shape(raw):
    assert _refused(check_event_date, raw) == _refused(normalise_event_date, raw)


def test_normalised_dates_sort_as_moments_do():
    raws = ["2026-11-26T11:20:05.2", "2026-11-26T11:20:05", "2026-11-26T11:20:05.123", "2026-11-26T11:20:05Z",
            "2026-11-26T11:20:04.999"]
    ordered = sorted(raws, key=normalise_event_date)
    assert ordered[0] == "2026-11-26T11:20:04.999" and ordered[-1] == "2026-11-26T11:20:05.2"
    assert ordered[3] == "2026-11-26T11:20:05.123"
