"""Tokens sealed at rest: the sync table never holds a usable Xero or Sugar credential (moto KMS).
A container decrypts each token version once; the seal is bound to its connection."""

from __future__ import annotations

import json

import pytest

from shared import wiring
from shared.state.dynamo import SyncStateTable
from shared.state.sealing import KmsTokenSealer
from shared.sugar.token_cache import DynamoSugarTokenCache

ACCESS, REFRESH = "xero-access-S3CRET-0001", "xero-refresh-S3CRET-0002"


@pytest.fixture
def key_id(aws):
    import boto3

    return boto3.client("kms").create_key(Description="token key")["KeyMetadata"]["KeyId"]


def raw_item(aws, pk: str) -> dict:
    return aws["dynamodb"].Table("sync-test").get_item(Key={"PK": pk, "SK": "TOKEN"})["Item"]


def table(aws, key_id) -> SyncStateTable:
    import boto3

    return SyncStateTable("sync-test", resource=aws["dynamodb"],
                          sealer=KmsTokenSealer(key_id, client=boto3.client("kms")))


def test_the_table_holds_ciphertext_and_the_adapter_gives_the_tokens_back(aws, key_id):
    store = table(aws, key_id)
    assert store.put_token("default", {"access_token": ACCESS, "refresh_token": REFRESH, "status": "connected",
                                       "access_expires_at": 123}, expected_version=None)
    item = raw_item(aws, "TOKEN#default")
    text = json.dumps(item, default=str)
    assert ACCESS not in text and REFRESH not in text and "access_token" not in item
    assert item["sealed"] and item["status"] == "connected" and item["version"] == 1
    opened = store.get_token("default")
    assert opened["access_token"] == ACCESS and opened["refresh_token"] == REFRESH and "sealed" not in opened
    assert store.get_token_status("default")["status"] == "connected"
    assert "access_token" not in store.get_token_status("default")


def test_a_container_decrypts_each_token_version_once(aws, key_id):
    store = table(aws, key_id)
    store.put_token("default", {"access_token": ACCESS, "refresh_token": REFRESH}, expected_version=None)
    other_container = table(aws, key_id)
    for _ in range(5):
        assert other_container.get_token("default")["access_token"] == ACCESS
    assert other_container._sealer.decrypt_calls == 1
    assert store._sealer.decrypt_calls == 0  # what it sealed it already knows


def test_a_seal_is_bound_to_its_connection(aws, key_id):
    store = table(aws, key_id)
    store.put_token("default", {"access_token": ACCESS}, expected_version=None)
    stolen = raw_item(aws, "TOKEN#default")
    aws["dynamodb"].Table("sync-test").put_item(Item={**stolen, "PK": "TOKEN#attacker"})
    with pytest.raises(Exception, match="InvalidCiphertext|Decrypt"):
        table(aws, key_id).get_token("attacker")


def test_a_sealed_set_is_never_read_without_the_key(aws, key_id):
    table(aws, key_id).put_token("default", {"access_token": ACCESS}, expected_version=None)
    with pytest.raises(RuntimeError, match="TOKEN_KEY_ID"):
        SyncStateTable("sync-test", resource=aws["dynamodb"]).get_token("default")


def test_sugars_tokens_are_sealed_too_and_the_workers_wiring_uses_the_key(aws, key_id, monkeypatch):
    monkeypatch.setenv("TOKEN_KEY_ID", key_id)
    wiring.reset()
    cache = DynamoSugarTokenCache(wiring.job_store())
    assert cache.put("sugar#xero-connector", {"access_token": "sugar-access-S3CRET", "refresh_token": "sugar-R",
                                             "expires_at_s": 5}, expected_version=None)
    item = raw_item(aws, "TOKEN#sugar#xero-connector")
    assert "sugar-access-S3CRET" not in json.dumps(item, default=str) and item["sealed"]
    assert cache.get("sugar#xero-connector")["access_token"] == "sugar-access-S3CRET"
