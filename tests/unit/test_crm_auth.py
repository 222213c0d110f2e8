from shared.api.auth import crm_request_is_authentic, sugar_signature

BODY = b'{"bean":"Account"}'
ARGS = {"raw_body": BODY, "crm_token": "tok", "signing_secret": "sec"}


def test_bearer_token():
    assert crm_request_is_authentic(headers={"Authorization": "Bearer tok"}, query=None, **ARGS)
    assert crm_request_is_authentic(headers={"authorization": "bearer tok"}, query=None, **ARGS)
    assert not crm_request_is_authentic(headers={"Authorization": "Bearer nope"}, query=None, **ARGS)


def test_signature_over_the_raw_body():
    good = sugar_signature(BODY, "sec")
    assert crm_request_is_authentic(headers={"X-Sugar-Signature": good}, query=None, **ARGS)
    assert crm_request_is_authentic(headers={"x-sugar-signature": good.upper()}, query=None, **ARGS)
    assert not crm_request_is_authentic(headers={"X-Sugar-Signature": sugar_signature(BODY + b" ", "sec")},
                                        query=None, **ARGS)


def test_query_token_and_nothing():
    assert crm_request_is_authentic(headers=None, query={"token": "tok"}, **ARGS)
    assert not crm_request_is_authentic(headers=None, query={"token": ""}, **ARGS)
    assert not crm_request_is_authentic(headers={}, query={}, **ARGS)
    assert not crm_request_is_authentic(headers={"Authorization": "Basic dG9r"}, query=None, **ARGS)
