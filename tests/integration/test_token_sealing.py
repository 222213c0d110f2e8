"""Tokens sealed at rest by envelope encryption: the sync table never holds a usable Xero or Sugar
credential nor a plaintext data key (moto KMS GenerateDataKey/Decrypt). A container calls KMS
Decrypt once per data key; the seal is bound to its connection; earlier formats are still read."""

from __future__ import annotations

import base64
import json

import pytest

from shared import wiring
from shared.state import sealing
from shared.state.dynamo import SyncStateTable
from shared.state.sealing import KmsTokenSealer, SealBroken
from shared.sugar.token_cache import DynamoSugarTokenCache

ACCESS, REFRESH = "xero-access-S3CRET-0001", "xero-refresh-S3CRET-0002"


@pytest.fixture
def key_id(aws):
    import boto3

    return boto3.client("kms").create_key(Description="token key")["KeyMetadata"]["KeyId"]


def raw_item(aws, pk: str) -> dict:
    return aws["dynamodb"].Table("sync-test").get_item(Key={"PK": pk, "SK": "TOKEN"})["Item"]


def kms_client(calls: list[str] | None = None):
    """A real (moto) KMS client; ``calls`` records every operation it sends, as KMS would see it."""
    import boto3

    client = boto3.client("kms")
    if calls is not None:
        client.meta.events.register("before-call.kms.*",
                                    lambda model, **_: calls.append(model.name))
    return client


def table(aws, key_id, calls: list[str] | None = None, **sealer_options) -> SyncStateTable:
    return SyncStateTable("sync-test", resource=aws["dynamodb"],
                          sealer=KmsTokenSealer(key_id, client=kms_client(calls), **sealer_options))


def test_the_table_holds_ciphertext_and_the_adapter_gives_the_tokens_back(aws, key_id):
    store = table(aws, key_id)
    assert store.put_token("default", {"access_token": ACCESS, "refresh_token": REFRESH, "status": "connected",
                                       "access_expires_at": 123}, expected_version=None)
    item = raw_item(aws, "TOKEN#default")
    text = json.dumps(item, default=str)
    assert ACCESS not in text and REFRESH not in text and "access_token" not in item
    assert item["sealed"] and item["status"] == "connected" and item["version"] == 1
    assert set(item) == {"PK", "SK", "sealed", "status", "access_expires_at", "version"}
    opened = store.get_token("default")
    assert opened["access_token"] == ACCESS and opened["refresh_token"] == REFRESH and "sealed" not in opened
    assert store.get_token_status("default")["status"] == "connected"
    assert "access_token" not in store.get_token_status("default")


def test_the_item_holds_the_encrypted_data_key_never_the_plaintext_one(aws, key_id):
    """Catch the data key KMS hands out and look for it, in every encoding, in the stored item."""
    handed_out: list[bytes] = []
    client = kms_client()
    client.meta.events.register("after-call.kms.GenerateDataKey",
                                lambda parsed, **_: handed_out.append(parsed["Plaintext"]))
    store = SyncStateTable("sync-test", resource=aws["dynamodb"], sealer=KmsTokenSealer(key_id, client=client))
    store.put_token("default", {"access_token": ACCESS, "refresh_token": REFRESH}, expected_version=None)
    [data_key] = handed_out
    assert len(data_key) == 32  # AES-256
    text = json.dumps(raw_item(aws, "TOKEN#default"), default=str)
    for encoding in (base64.b64encode(data_key).decode(), data_key.hex(), data_key.hex().upper()):
        assert encoding not in text
    prefix, encrypted_key, nonce, ciphertext = raw_item(aws, "TOKEN#default")["sealed"].split(":")
    assert prefix == "aesgcm1" and len(base64.b64decode(nonce)) == 12
    assert base64.b64decode(encrypted_key) != data_key
    # the stored data key is what KMS decrypts, only with the connection's context
    opened = kms_client().decrypt(CiphertextBlob=base64.b64decode(encrypted_key),
                                  EncryptionContext={"connection": "default"})["Plaintext"]
    assert opened == data_key


def test_a_second_container_makes_one_kms_decrypt_for_many_reads(aws, key_id):
    writer_calls: list[str] = []
    store = table(aws, key_id, writer_calls)
    store.put_token("default", {"access_token": ACCESS, "refresh_token": REFRESH}, expected_version=None)
    reader_calls: list[str] = []
    other_container = table(aws, key_id, reader_calls)
    for _ in range(50):
        assert other_container.get_token("default")["access_token"] == ACCESS
    assert reader_calls == ["Decrypt"]
    assert writer_calls == ["GenerateDataKey"]  # what it sealed it already knows: no Decrypt


def test_a_container_asks_for_one_data_key_per_connection_and_renews_it_by_age_and_use(aws, key_id, monkeypatch):
    calls: list[str] = []
    now = [1000.0]
    store = table(aws, key_id, calls, clock=lambda: now[0])
    version = None
    for n in range(10):  # ten refreshes inside the hour: one data key
        assert store.put_token("default", {"access_token": f"{ACCESS}-{n}"}, expected_version=version)
        version = (version or 0) + 1
    assert calls == ["GenerateDataKey"]
    first_key = raw_item(aws, "TOKEN#default")["sealed"].split(":")[1]
    store.put_token("sugar#xero-connector", {"access_token": "sugar-access-S3CRET"}, expected_version=None)
    assert calls == ["GenerateDataKey"] * 2  # another connection, another encryption context
    now[0] += sealing.WRITE_KEY_MAX_AGE_S
    assert store.put_token("default", {"access_token": f"{ACCESS}-late"}, expected_version=version)
    version += 1
    assert calls == ["GenerateDataKey"] * 3
    assert raw_item(aws, "TOKEN#default")["sealed"].split(":")[1] != first_key
    monkeypatch.setattr(sealing, "WRITE_KEY_MAX_USES", 2)
    for n in range(2):
        assert store.put_token("default", {"access_token": f"{ACCESS}-use-{n}"}, expected_version=version)
        version += 1
    assert calls == ["GenerateDataKey"] * 4
    assert table(aws, key_id).get_token("default")["access_token"] == f"{ACCESS}-use-1"


def test_a_cached_read_key_expires_after_the_hour(aws, key_id):
    table(aws, key_id).put_token("default", {"access_token": ACCESS}, expected_version=None)
    calls: list[str] = []
    now = [0.0]
    reader = table(aws, key_id, calls, clock=lambda: now[0])
    reader.get_token("default")
    now[0] += sealing.WRITE_KEY_MAX_AGE_S - 1
    reader.get_token("default")
    assert calls == ["Decrypt"]
    now[0] += 1
    reader.get_token("default")
    assert calls == ["Decrypt", "Decrypt"]


@pytest.mark.parametrize("part", [1, 2, 3])
def test_a_tampered_seal_is_refused(aws, key_id, part):
    """One bit flipped in the encrypted data key, the nonce or the ciphertext: nothing opens."""
    store = table(aws, key_id)
    store.put_token("default", {"access_token": ACCESS}, expected_version=None)
    item = raw_item(aws, "TOKEN#default")
    parts = item["sealed"].split(":")
    raw = bytearray(base64.b64decode(parts[part]))
    raw[len(raw) // 2] ^= 0x01
    parts[part] = base64.b64encode(bytes(raw)).decode()
    aws["dynamodb"].Table("sync-test").put_item(Item={**item, "sealed": ":".join(parts)})
    for reader in (store, table(aws, key_id)):  # the writer's cached key does not help either
        with pytest.raises(Exception, match="InvalidCiphertext|fails authentication"):
            reader.get_token("default")


def test_a_tampered_ciphertext_is_refused_as_a_seal_broken(aws, key_id):
    store = table(aws, key_id)
    store.put_token("default", {"access_token": ACCESS}, expected_version=None)
    item = raw_item(aws, "TOKEN#default")
    prefix, key, nonce, ciphertext = item["sealed"].split(":")
    raw = bytearray(base64.b64decode(ciphertext))
    raw[0] ^= 0x80
    aws["dynamodb"].Table("sync-test").put_item(
        Item={**item, "sealed": ":".join([prefix, key, nonce, base64.b64encode(bytes(raw)).decode()])})
    with pytest.raises(SealBroken):
        table(aws, key_id).get_token("default")


def test_a_seal_is_bound_to_its_connection(aws, key_id):
    store = table(aws, key_id)
    store.put_token("default", {"access_token": ACCESS}, expected_version=None)
    stolen = raw_item(aws, "TOKEN#default")
    aws["dynamodb"].Table("sync-test").put_item(Item={**stolen, "PK": "TOKEN#attacker"})
    with pytest.raises(Exception, match="InvalidCiphertext|Decrypt"):
        table(aws, key_id).get_token("attacker")
    # nor in the container that sealed it, which holds the data key in memory: the cache is per
    # connection and AES-GCM authenticates the connection too
    with pytest.raises(Exception, match="InvalidCiphertext|Decrypt"):
        store.get_token("attacker")


def test_a_data_key_moved_to_another_connection_does_not_open_in_a_warm_container(aws, key_id):
    """The attacker's own seal with the victim's encrypted data key: the AAD still refuses it."""
    store = table(aws, key_id)
    store.put_token("default", {"access_token": ACCESS}, expected_version=None)
    store.put_token("attacker", {"access_token": "attacker-access"}, expected_version=None)
    victim = raw_item(aws, "TOKEN#default")["sealed"].split(":")
    aws["dynamodb"].Table("sync-test").put_item(
        Item={**raw_item(aws, "TOKEN#attacker"), "sealed": ":".join(victim)})
    with pytest.raises(Exception, match="InvalidCiphertext|fails authentication"):
        store.get_token("attacker")


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


def test_a_set_sealed_by_the_earlier_direct_kms_format_is_read_and_resealed_on_its_next_write(aws, key_id):
    """Before envelopes, ``sealed`` was the KMS Encrypt blob of the secret fields, base64."""
    blob = kms_client().encrypt(KeyId=key_id, Plaintext=json.dumps({"access_token": ACCESS,
                                                                    "refresh_token": REFRESH}).encode(),
                                EncryptionContext={"connection": "default"})["CiphertextBlob"]
    aws["dynamodb"].Table("sync-test").put_item(Item={
        "PK": "TOKEN#default", "SK": "TOKEN", "sealed": base64.b64encode(blob).decode(), "version": 3,
        "status": "connected"})
    calls: list[str] = []
    store = table(aws, key_id, calls)
    for _ in range(3):
        token = store.get_token("default")
        assert (token["access_token"], token["refresh_token"], token["version"]) == (ACCESS, REFRESH, 3)
    assert calls == ["Decrypt"]
    # bound to its connection as before
    aws["dynamodb"].Table("sync-test").put_item(Item={**raw_item(aws, "TOKEN#default"), "PK": "TOKEN#attacker"})
    with pytest.raises(Exception, match="InvalidCiphertext"):
        table(aws, key_id).get_token("attacker")
    assert store.put_token("default", {**token, "access_token": ACCESS + "-new"}, expected_version=3)
    resealed = raw_item(aws, "TOKEN#default")
    assert resealed["sealed"].startswith("aesgcm1:") and ACCESS not in json.dumps(resealed, default=str)
    assert table(aws, key_id).get_token("default")["refresh_token"] == REFRESH


def test_a_plain_text_set_from_before_sealing_is_read_and_sealed_on_its_next_write(aws, key_id):
    aws["dynamodb"].Table("sync-test").put_item(Item={
        "PK": "TOKEN#default", "SK": "TOKEN", "access_token": ACCESS, "refresh_token": REFRESH,
        "version": 7, "status": "connected"})
    calls: list[str] = []
    store = table(aws, key_id, calls)
    token = store.get_token("default")
    assert (token["access_token"], token["refresh_token"]) == (ACCESS, REFRESH) and calls == []
    assert store.put_token("default", {**token, "access_token": ACCESS + "-new"}, expected_version=7)
    item = raw_item(aws, "TOKEN#default")
    assert "access_token" not in item and "refresh_token" not in item and item["version"] == 8
    text = json.dumps(item, default=str)
    assert ACCESS not in text and REFRESH not in text and item["sealed"].startswith("aesgcm1:")
    again = table(aws, key_id).get_token("default")
    assert (again["access_token"], again["refresh_token"]) == (ACCESS + "-new", REFRESH)
