"""Xero OAuth2 onboarding in-process under moto, against the real Xero emulator (xero_local)
served on 127.0.0.1 with a free port.

Why this works under moto: ``mock_aws`` routes ``requests`` through moto's own ``responses``
mock, which passes any URL it has no AWS handler for through to a real socket; so the handler's
calls to the emulator on 127.0.0.1 go out for real while DynamoDB stays in moto. (A test that
mocks Xero with ``responses`` itself would clash with moto's mock; those tests below run
without the ``aws`` fixture.)
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from shared import wiring
from shared.config import LOCAL_SECRET_DEFAULTS
from shared.errors import BadInput, XeroError
from shared.xero.oauth import SCOPES, TokenSet, XeroIdentity, code_challenge, state_hash
from tests.support.events import FakeLambdaContext, api_event

TOKEN = LOCAL_SECRET_DEFAULTS["ADMIN_TOKEN"]
CRM_TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
COOKIE = "sugar_xero_oauth"
EXPECTED_SCOPE = ("openid profile email offline_access accounting.contacts accounting.invoices "
                  "accounting.payments accounting.settings.read")


@pytest.fixture(scope="module")
def xero_emulator():
    from werkzeug.serving import make_server
    from xero_local.server import create_router

    server = make_server("127.0.0.1", 0, create_router().wsgi(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="xero-emulator")
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def onboarding(aws, xero_emulator, monkeypatch):
    from functions.payment_webhook import app

    monkeypatch.setenv("XERO_AUTHORIZE_URL", f"{xero_emulator}/identity/connect/authorize")
    monkeypatch.setenv("XERO_IDENTITY_URL", f"{xero_emulator}/connect/token")
    monkeypatch.setenv("XERO_API_BASE_URL", xero_emulator)
    wiring.reset()
    # The administrator's browser: the cookies it holds, sent on every call as a browser would.
    yield {**aws, "handler": app.lambda_handler, "xero": xero_emulator, "app": app, "browser": {}}
    wiring.reset()


def call(onboarding, method, path, *, query=None, headers=None, browser=None):
    """One request from a browser (by default the administrator's), which keeps what Set-Cookie says."""
    browser = onboarding["browser"] if browser is None else browser
    headers = dict(headers or {})
    if browser:
        headers.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in browser.items()))
    answer = onboarding["handler"](api_event(method, path, query=query, headers=headers), FakeLambdaContext())
    headers = {k.lower(): v[0] for k, v in (answer.get("multiValueHeaders") or {}).items()}
    headers.update({k.lower(): v for k, v in (answer.get("headers") or {}).items()})
    if "set-cookie" in headers:
        name, _, rest = headers["set-cookie"].partition("=")
        value = rest.split(";")[0]
        if "Max-Age=0" in rest:
            browser.pop(name, None)
        else:
            browser[name] = value
    return answer["statusCode"], headers, answer.get("body") or ""


def start(onboarding) -> dict[str, str]:
    """GET /xero/connect, then Xero's sign-in (the emulator grants at once): the callback's query."""
    status, headers, body = call(onboarding, "GET", "/xero/connect", query={"token": TOKEN})
    assert status == 302 and body == ""
    signin = requests.get(headers["location"], allow_redirects=False, timeout=5)
    assert signin.status_code == 302
    query = parse_qs(urlsplit(signin.headers["Location"]).query)
    return {"code": query["code"][0], "state": query["state"][0]}


def table(onboarding):
    return onboarding["dynamodb"].Table("sync-test")


def token_item(onboarding):
    return table(onboarding).get_item(Key={"PK": "TOKEN#default", "SK": "TOKEN"}).get("Item")


# ---- /xero/connect ----------------------------------------------------------------------------
def test_connect_redirects_to_xero_with_a_hashed_single_use_state(onboarding):
    before = time.time()
    status, headers, body = call(onboarding, "GET", "/xero/connect", query={"token": TOKEN})
    assert status == 302 and body == "" and headers["cache-control"] == "no-store"
    location = urlsplit(headers["location"])
    authorize = f"{location.scheme}://{location.netloc}{location.path}"
    assert authorize == f"{onboarding['xero']}/identity/connect/authorize"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == LOCAL_SECRET_DEFAULTS["XERO_CLIENT_ID"]
    assert query["redirect_uri"] == "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/xero/callback"
    assert query["scope"] == EXPECTED_SCOPE == " ".join(SCOPES)
    assert len(query["state"]) >= 43  # 32 random bytes, URL-safe base64

    (item,) = table(onboarding).scan()["Items"]
    assert item["PK"] == f"OAUTHSTATE#{state_hash(query['state'])}" and item["SK"] == "OAUTHSTATE"
    assert query["state"] not in json.dumps(item, default=str)  # only the hash is kept
    assert before + 590 <= int(item["expires_at"]) <= time.time() + 610
    assert item["redirect_uri"] == query["redirect_uri"]
    # PKCE S256: only the challenge leaves; the verifier stays with the state.
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == code_challenge(item["code_verifier"]) != item["code_verifier"]
    assert 43 <= len(item["code_verifier"]) <= 128
    # The browser binding: a Secure, HttpOnly, Lax cookie for the callback's path; only its hash is kept.
    cookie = headers["set-cookie"]
    nonce = cookie.split(";")[0].split("=", 1)[1]
    attributes = [part.strip() for part in cookie.split(";")[1:]]
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/prod/xero/callback", "Max-Age=600"} <= set(attributes)
    assert len(nonce) >= 43 and item["browser_hash"] == state_hash(nonce) and nonce not in json.dumps(item, default=str)


@pytest.mark.parametrize("credentials", [{"query": {"token": CRM_TOKEN}},
                                         {"headers": {"Authorization": f"Bearer {CRM_TOKEN}"}}])
def test_the_hook_token_never_connects_xero(onboarding, credentials):
    status, headers, body = call(onboarding, "GET", "/xero/connect", **credentials)
    assert status == 401 and "location" not in headers and "set-cookie" not in headers
    assert "ADMIN_TOKEN" in json.loads(body)["message"]
    assert table(onboarding).scan()["Items"] == []


@pytest.mark.parametrize("credentials", [{"query": {"token": TOKEN}},
                                         {"headers": {"Authorization": f"Bearer {TOKEN}"}}])
def test_the_admin_token_is_no_crm_credential(onboarding, credentials):
    status, _, body = call(onboarding, "GET", "/jobs/some-job", **credentials)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"


def test_connect_is_refused_while_the_admin_token_is_unset_or_the_hook_token(onboarding, monkeypatch, capsys):
    monkeypatch.setenv("ADMIN_TOKEN", CRM_TOKEN)
    status, _, body = call(onboarding, "GET", "/xero/connect", query={"token": CRM_TOKEN})
    assert status == 503 and json.loads(body)["error"] == "not_configured"
    assert "ADMIN_TOKEN must differ from CRM_TOKEN" in json.loads(body)["message"]
    assert table(onboarding).scan()["Items"] == []
    assert CRM_TOKEN not in capsys.readouterr().out


def test_connect_uses_the_public_base_url_when_configured(onboarding, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://connector.example.test/")
    wiring.reset()
    _, headers, _ = call(onboarding, "GET", "/xero/connect", headers={"Authorization": f"Bearer {TOKEN}"})
    redirect = parse_qs(urlsplit(headers["location"]).query)["redirect_uri"][0]
    assert redirect == "https://connector.example.test/xero/callback"


@pytest.mark.parametrize("credentials", [{}, {"query": {"token": "wrong"}},
                                         {"headers": {"Authorization": "Bearer wrong"}},
                                         {"headers": {"Authorization": TOKEN}}])
def test_connect_without_the_admin_token_is_refused(onboarding, credentials):
    status, headers, body = call(onboarding, "GET", "/xero/connect", **credentials)
    assert status == 401 and "location" not in headers
    assert json.loads(body)["error"] == "unauthorized"
    assert table(onboarding).scan()["Items"] == []


# ---- /xero/callback ---------------------------------------------------------------------------
def test_full_flow_stores_the_token_once_and_records_the_organisation(onboarding, capsys):
    from xero_local.store import store as emulator

    grant = start(onboarding)
    before = int(time.time())
    status, headers, body = call(onboarding, "GET", "/xero/callback", query=grant)
    assert status == 200, body
    answer = json.loads(body)
    organisation = emulator.get_connections()[0]
    assert answer["status"] == "connected"
    assert answer["tenants"] == [{"tenant_id": organisation["tenantId"],
                                  "tenant_name": organisation["tenantName"],
                                  "tenant_type": "ORGANISATION", "selected": True}]

    token = token_item(onboarding)
    assert token["version"] == 1 and token["status"] == "connected" and token["lease_until"] == 0
    assert token["access_token"].startswith("xero-local-token-")
    assert token["refresh_token"].startswith("xero-local-refresh-")
    assert before + 1790 <= int(token["access_expires_at"]) <= time.time() + 1810
    assert "expires_at" not in token  # the table's TTL attribute: it would delete the token set
    connection = table(onboarding).get_item(Key={"PK": "CONN#default", "SK": "CONN"})["Item"]
    assert connection["tenant_id"] == organisation["tenantId"]
    assert connection["tenant_name"] == organisation["tenantName"]
    assert connection["tenant_type"] == "ORGANISATION"
    assert [i for i in table(onboarding).scan()["Items"] if i["PK"].startswith("OAUTHSTATE#")] == []

    # The token set is stored where and how the workers read it: no second token call.
    tokens = wiring.xero_tokens()
    assert tokens.access_token() == token["access_token"] and tokens.token_calls == 0
    assert wiring.tenant_id() == organisation["tenantId"]

    logged = capsys.readouterr()
    for secret in (grant["code"], grant["state"], token["access_token"], token["refresh_token"]):
        assert secret not in logged.out + logged.err


def test_the_callback_answers_html_to_a_browser(onboarding):
    grant = start(onboarding)
    status, headers, body = call(onboarding, "GET", "/xero/callback", query=grant,
                                 headers={"Accept": "text/html,application/xhtml+xml"})
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "Connected to Xero" in body and "Test Organisation" in body


def test_a_callback_without_the_browsers_cookie_is_refused_and_leaves_the_state(onboarding):
    grant = start(onboarding)
    for stranger in ({}, {COOKIE: "x" * 43}):  # a script or another browser holding the callback URL
        status, _, body = call(onboarding, "GET", "/xero/callback", query=grant, browser=stranger)
        assert status == 403 and json.loads(body)["error"] == "wrong_browser"
        assert token_item(onboarding) is None
    # The administrator's own browser still finishes, and is then told to forget the cookie.
    status, headers, _ = call(onboarding, "GET", "/xero/callback", query=grant)
    assert status == 200 and token_item(onboarding)["version"] == 1
    assert "Max-Age=0" in headers["set-cookie"] and COOKIE not in onboarding["browser"]


def test_a_replayed_state_is_refused_even_with_the_cookie(onboarding):
    grant = start(onboarding)
    cookies = dict(onboarding["browser"])
    assert call(onboarding, "GET", "/xero/callback", query=grant)[0] == 200
    status, _, body = call(onboarding, "GET", "/xero/callback", query=grant, browser=cookies)
    assert status == 400 and json.loads(body)["error"] == "unknown_state"
    assert token_item(onboarding)["version"] == 1


def test_a_state_works_once(onboarding):
    grant = start(onboarding)
    cookies = dict(onboarding["browser"])  # a browser that ignored the instruction to forget it
    assert call(onboarding, "GET", "/xero/callback", query=grant)[0] == 200
    status, _, body = call(onboarding, "GET", "/xero/callback", query=grant, browser=cookies)
    assert status == 400
    error = json.loads(body)
    assert error["error"] == "unknown_state" and "/xero/connect" in error["message"]
    assert token_item(onboarding)["version"] == 1  # nothing stored the second time


def test_concurrent_callbacks_with_one_state_store_one_token(onboarding):
    grant = start(onboarding)
    results = []
    cookies = dict(onboarding["browser"])
    threads = [threading.Thread(target=lambda: results.append(call(onboarding, "GET", "/xero/callback",
                                                                   query=dict(grant), browser=dict(cookies))[0]))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 400, 400, 400]
    assert token_item(onboarding)["version"] == 1


def test_an_expired_state_is_refused_and_removed(onboarding):
    grant = start(onboarding)
    key = {"PK": f"OAUTHSTATE#{state_hash(grant['state'])}", "SK": "OAUTHSTATE"}
    table(onboarding).update_item(Key=key, UpdateExpression="SET expires_at = :past",
                                  ExpressionAttributeValues={":past": int(time.time()) - 1})
    status, _, body = call(onboarding, "GET", "/xero/callback", query=grant)
    assert status == 400 and json.loads(body)["error"] == "expired_state"
    assert "expired" in json.loads(body)["message"]
    assert "Item" not in table(onboarding).get_item(Key=key)
    assert token_item(onboarding) is None


@pytest.mark.parametrize(("query", "code"), [
    ({"code": "c", "state": "never-issued"}, "unknown_state"),
    ({"code": "c"}, "invalid_state"),
    ({"code": "c", "state": "x" * 500}, "invalid_state"),
])
def test_unknown_or_missing_states_are_refused(onboarding, query, code):
    status, headers, body = call(onboarding, "GET", "/xero/callback", query=query,
                                 browser={COOKIE: "a-browser-that-opened-some-other-flow"})
    assert status == 400 and headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["error"] == code and error["message"] and error["details"] == []
    assert token_item(onboarding) is None


def test_a_refused_sign_in_consumes_the_state(onboarding):
    grant = start(onboarding)
    status, _, body = call(onboarding, "GET", "/xero/callback",
                           query={"error": "access_denied", "state": grant["state"]})
    assert status == 400 and json.loads(body)["error"] == "xero_declined"
    assert call(onboarding, "GET", "/xero/callback", query=grant)[0] == 400
    assert token_item(onboarding) is None


def test_reconnecting_replaces_a_disconnected_set_with_the_next_version(onboarding):
    store = wiring.job_store()
    assert store.put_token("default", {"status": "disconnected", "disconnected_at": 1}, expected_version=None)
    assert store.put_token("default", {"status": "disconnected", "disconnected_at": 2}, expected_version=1)
    assert call(onboarding, "GET", "/xero/callback", query=start(onboarding))[0] == 200
    token = token_item(onboarding)
    assert token["version"] == 3 and token["status"] == "connected" and "disconnected_at" not in token


def test_when_xero_is_unreachable_the_operator_gets_a_502_to_act_on(onboarding, monkeypatch):
    class Down:
        def exchange_code(self, code, redirect_uri, *, code_verifier=None):
            raise XeroError("Xero's token endpoint could not be reached: ConnectionError", retryable=True)

    monkeypatch.setattr(wiring, "xero_identity", lambda: Down())
    status, _, body = call(onboarding, "GET", "/xero/callback", query=start(onboarding))
    assert status == 502
    assert json.loads(body)["error"] == "xero_unavailable" and "/xero/connect" in json.loads(body)["message"]


def test_several_organisations_are_each_recorded_and_one_is_used(onboarding, monkeypatch):
    organisations = [{"tenantId": str(uuid.uuid4()), "tenantName": f"Org {n}", "tenantType": "ORGANISATION"}
                     for n in range(3)]
    practice = {"tenantId": str(uuid.uuid4()), "tenantName": "Practice", "tenantType": "PRACTICEMANAGER"}

    class TwoOrgs:
        def exchange_code(self, code, redirect_uri, *, code_verifier=None):
            assert redirect_uri.endswith("/prod/xero/callback") and len(code_verifier) >= 43
            return TokenSet(access_token="at", refresh_token="rt", expires_in=1800, scope="s")

        def connections(self, access_token):
            return [organisations[0], practice, organisations[1], organisations[2]]

    monkeypatch.setenv("XERO_TENANT_ID", organisations[2]["tenantId"])
    wiring.reset()
    monkeypatch.setattr(wiring, "xero_identity", lambda: TwoOrgs())
    status, _, body = call(onboarding, "GET", "/xero/callback", query=start(onboarding))
    assert status == 200
    answer = json.loads(body)
    assert [t["tenant_name"] for t in answer["tenants"]] == ["Org 0", "Org 1", "Org 2"]
    assert [t["selected"] for t in answer["tenants"]] == [False, False, True]
    items = {i["PK"]: i for i in table(onboarding).scan()["Items"] if i["PK"].startswith("CONN#")}
    assert items["CONN#default"]["tenant_id"] == organisations[2]["tenantId"]
    assert int(items["CONN#default"]["tenant_count"]) == 3
    for organisation in organisations:
        item = items[f"CONN#default#{organisation['tenantId']}"]
        assert item["tenant_name"] == organisation["tenantName"] and item["parent_connection"] == "default"


# ---- the identity adapter on its own (responses, no moto) -------------------------------------
@responses.activate
def test_code_exchange_sends_basic_auth_and_the_redirect_uri():
    responses.post("https://identity.test/connect/token", json={
        "access_token": "at", "refresh_token": "rt", "expires_in": 1800, "scope": "a b", "id_token": "x"})
    identity = XeroIdentity(identity_url="https://identity.test/connect/token", api_base_url="https://api.test",
                            client_id="id", client_secret="secret")
    tokens = identity.exchange_code("the-code", "https://cb.test/xero/callback", code_verifier="v" * 43)
    assert tokens == TokenSet("at", "rt", 1800, "a b")
    assert "at" not in repr(tokens) and "rt" not in repr(tokens)
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Basic aWQ6c2VjcmV0"  # base64("id:secret")
    assert parse_qs(request.body) == {"grant_type": ["authorization_code"], "code": ["the-code"],
                                      "redirect_uri": ["https://cb.test/xero/callback"],
                                      "code_verifier": ["v" * 43]}


def test_the_pkce_challenge_is_s256():
    import base64
    import hashlib

    # RFC 7636 4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), base64url without padding.
    verifier = "dBjftJeZ4CK-oZ9EtNF0uASBOL6EbMz-eaWZMwaS9c4"
    challenge = code_challenge(verifier)
    assert "=" not in challenge and "+" not in challenge and "/" not in challenge and len(challenge) == 43
    assert base64.urlsafe_b64decode(challenge + "=") == hashlib.sha256(verifier.encode()).digest()


@responses.activate
@pytest.mark.parametrize(("status", "body", "raised"), [
    (400, {"error": "invalid_grant"}, BadInput), (401, {"error": "invalid_client"}, BadInput),
    (500, {}, XeroError), (503, "down", XeroError),
])
def test_code_exchange_failures_are_told_apart(status, body, raised):
    responses.post("https://identity.test/connect/token", status=status,
                   **({"json": body} if isinstance(body, dict) else {"body": body}))
    identity = XeroIdentity(identity_url="https://identity.test/connect/token", api_base_url="https://api.test",
                            client_id="id", client_secret="secret")
    with pytest.raises(raised) as caught:
        identity.exchange_code("the-code", "https://cb.test/cb")
    assert "the-code" not in str(caught.value)


@responses.activate
def test_connections_sends_the_new_token():
    responses.get("https://api.test/connections",
                  json=[{"tenantId": "t1", "tenantName": "A"}, {"id": "no-tenant"}])
    identity = XeroIdentity(identity_url="https://identity.test/t", api_base_url="https://api.test/",
                            client_id="id", client_secret="s")
    assert identity.connections("at") == [{"tenantId": "t1", "tenantName": "A"}]
    assert responses.calls[0].request.headers["Authorization"] == "Bearer at"


# ---- sugar-xero connect -----------------------------------------------------------------------
def test_connect_command_prints_the_local_stack_links(tmp_path, monkeypatch):
    from sugar_xero.connect import run

    state = {"pid": 0, "urls": {"gateway": "http://127.0.0.1:43210"}}
    (tmp_path / ".sugar-xero-local.json").write_text(json.dumps(state))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    monkeypatch.setattr("sugar_xero.local.state_file.process_alive", lambda pid: True)
    out = io.StringIO()
    assert run([], out=out) == 0
    text = out.getvalue()
    assert "connect link    http://127.0.0.1:43210/xero/connect?token=local-admin-token" in text
    assert "redirect URI    http://127.0.0.1:43210/xero/callback" in text
    assert "client-credentials" in text  # Custom Connections need no onboarding


def test_connect_command_for_a_deployed_stack_and_without_any_stack(tmp_path, monkeypatch):
    from sugar_xero.connect import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    out = io.StringIO()
    assert run(["--url", "https://abc.execute-api.eu-west-1.amazonaws.com/prod/"], out=out) == 0
    link = "https://abc.execute-api.eu-west-1.amazonaws.com/prod/xero/connect?token=<ADMIN_TOKEN>"
    assert f"connect link    {link}" in out.getvalue()
    out = io.StringIO()
    (tmp_path / ".sugar-xero-local.json").write_text(json.dumps({"pid": 2 ** 22 + 12345, "urls": {}}))
    assert run([], out=out) == 2  # a stale state file is no running stack
    assert "--url" in out.getvalue()


def test_connect_command_waits_for_the_callback(onboarding, tmp_path, monkeypatch):
    from sugar_xero.connect import run

    monkeypatch.chdir(tmp_path)
    grant = start(onboarding)
    clock = iter(range(0, 1000))
    polls = []

    def sleep(_seconds):
        polls.append(1)
        if len(polls) == 2:  # the operator finishes signing in while we wait
            assert call(onboarding, "GET", "/xero/callback", query=grant)[0] == 200

    out = io.StringIO()
    assert run(["--url", "https://x.test/prod", "--wait", "--table", "sync-test", "--timeout", "60"],
               out=out, sleep=sleep, clock=lambda: next(clock)) == 0
    assert "Connected." in out.getvalue() and "Test Organisation" in out.getvalue()

    out = io.StringIO()
    clock = iter(range(0, 1000, 30))
    assert run(["--url", "https://x.test/prod", "--wait", "--table", "sync-test", "--timeout", "60"],
               out=out, sleep=lambda s: None, clock=lambda: next(clock)) == 1
    assert "Not connected" in out.getvalue()


def test_with_the_stacks_key_the_stored_set_is_sealed(onboarding, monkeypatch):
    import boto3

    key_id = boto3.client("kms").create_key(Description="token key")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("TOKEN_KEY_ID", key_id)
    wiring.reset()
    assert call(onboarding, "GET", "/xero/callback", query=start(onboarding))[0] == 200
    item = token_item(onboarding)
    assert item["sealed"] and "access_token" not in item and "refresh_token" not in item
    assert "xero-local-" not in json.dumps(item, default=str)  # no usable credential in the table
    tokens = wiring.xero_tokens()
    assert tokens.access_token().startswith("xero-local-token-") and tokens.token_calls == 0
