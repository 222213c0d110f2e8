from shared.api.auth import crm_request_is_authentic, sugar_signature, token_is_presented

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


def test_either_secret_alone_authenticates_and_an_unset_one_matches_nothing():
    only_token = {"raw_body": BODY, "crm_token": "tok", "signing_secret": ""}
    assert crm_request_is_authentic(headers={"Authorization": "Bearer tok"}, query=None, **only_token)
    assert crm_request_is_authentic(headers=None, query={"token": "tok"}, **only_token)
    # An empty signing secret must not make the HMAC of "" a valid signature.
    assert not crm_request_is_authentic(headers={"X-Sugar-Signature": sugar_signature(BODY, "")}, query=None,
                                        **only_token)
    only_secret = {"raw_body": BODY, "crm_token": "", "signing_secret": "sec"}
    assert crm_request_is_authentic(headers={"X-Sugar-Signature": sugar_signature(BODY, "sec")}, query=None,
                                    **only_secret)
    for empty in ({"Authorization": "Bearer "}, {"Authorization": "Bearer"}):
        assert not crm_request_is_authentic(headers=empty, query=None, **only_secret)
    assert not crm_request_is_authentic(headers=None, query={"token": ""}, **only_secret)


def test_the_admin_token_is_presented_by_bearer_or_query_only():
    assert token_is_presented(headers={"Authorization": "Bearer adm"}, query=None, token="adm")
    assert token_is_presented(headers=None, query={"token": "adm"}, token="adm")
    assert not token_is_presented(headers={"X-Sugar-Signature": "adm"}, query=None, token="adm")
    assert not token_is_presented(headers=None, query={"token": ""}, token="")
