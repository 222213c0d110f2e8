"""Tokens sealed at rest: Xero's and Sugar's access and refresh tokens never sit in the sync
table in a usable form (a table read, an export or a point-in-time backup yields ciphertext).

Envelope encryption with the stack's KMS key (``TOKEN_KEY_ID``): KMS ``GenerateDataKey``
(AES-256) gives a data key bound to the connection by an encryption context; the secret fields
are encrypted locally with AES-GCM (``cryptography``'s audited AEAD, the connection as associated
data), and the item stores, in one attribute ``sealed``, the *encrypted* data key, the nonce and
the ciphertext: never the plaintext data key.

Per container (one sealer per container, ``shared/wiring.py``):
- reads: the plaintext data key is cached by (connection, encrypted data key), so a container
  calls KMS ``Decrypt`` once per data key however many token reads follow;
- writes: one ``GenerateDataKey`` per connection, reused for ``WRITE_KEY_MAX_USES`` seals or
  ``WRITE_KEY_MAX_AGE_S`` seconds, whichever comes first. The bound keeps a leaked key (a memory
  dump) to at most an hour's token versions, and makes disabling or replacing the KMS key take
  effect within the hour instead of living on in a warm container; one token refresh per
  30 minutes means a key seals about two versions, far from AES-GCM's random-nonce limit.
  Cached read keys expire after the same age, for the same reason.

Still read: ``sealed`` values of the earlier format (the blob encrypted by KMS ``Encrypt``
directly: plain base64, no prefix) and items written before sealing (plain ``access_token`` /
``refresh_token`` attributes); both are re-sealed in the envelope format on their next write.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SEALED_FIELDS = ("access_token", "refresh_token")
SEALED_ATTRIBUTE = "sealed"
# "aesgcm1:<encrypted data key>:<nonce>:<ciphertext>", each base64 (whose alphabet has no ':');
# a value without the prefix is the earlier direct-KMS format.
ENVELOPE_PREFIX = "aesgcm1"
WRITE_KEY_MAX_USES = 1000
WRITE_KEY_MAX_AGE_S = 3600.0
_CACHE_SIZE = 64
_NONCE_BYTES = 12  # AES-GCM's standard 96-bit nonce, random per seal


class SealBroken(ValueError):
    """A sealed value that does not open: tampered, truncated, or bound to another connection."""


@dataclass
class _DataKey:
    plaintext: bytes
    encrypted: bytes
    created: float
    uses: int = 0


def _context(connection_id: str) -> dict[str, str]:
    return {"connection": connection_id}


def _associated_data(connection_id: str) -> bytes:
    return f"{ENVELOPE_PREFIX}\x00{connection_id}".encode()


class KmsTokenSealer:
    def __init__(self, key_id: str, *, client: Any | None = None, clock: Callable[[], float] = time.monotonic):
        self.key_id = key_id
        if client is None:
            import boto3

            client = boto3.client("kms")
        self._client = client
        self._clock = clock
        self._write_keys: dict[str, _DataKey] = {}
        self._read_keys: OrderedDict[tuple[str, bytes], tuple[bytes, float]] = OrderedDict()
        self.decrypt_calls = 0
        self.generate_calls = 0

    # ---- sealing ------------------------------------------------------------------------------
    def seal(self, connection_id: str, token: dict[str, Any]) -> dict[str, Any]:
        """``token`` with its secret fields replaced by one ``sealed`` attribute."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        secret = {name: token[name] for name in SEALED_FIELDS if token.get(name)}
        rest = {k: v for k, v in token.items() if k not in SEALED_FIELDS and k != SEALED_ATTRIBUTE}
        if not secret:
            return rest
        key = self._write_key(connection_id)
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = AESGCM(key.plaintext).encrypt(nonce, json.dumps(secret).encode(),
                                                   _associated_data(connection_id))
        text = ":".join([ENVELOPE_PREFIX, *(base64.b64encode(part).decode("ascii")
                                            for part in (key.encrypted, nonce, ciphertext))])
        return {**rest, SEALED_ATTRIBUTE: text}

    def _write_key(self, connection_id: str) -> _DataKey:
        key = self._write_keys.get(connection_id)
        now = self._clock()
        if key is None or key.uses >= WRITE_KEY_MAX_USES or now - key.created >= WRITE_KEY_MAX_AGE_S:
            self.generate_calls += 1
            answer = self._client.generate_data_key(KeyId=self.key_id, KeySpec="AES_256",
                                                    EncryptionContext=_context(connection_id))
            key = _DataKey(answer["Plaintext"], answer["CiphertextBlob"], now)
            self._write_keys[connection_id] = key
            # what this container seals it can open without asking KMS
            self._remember((connection_id, key.encrypted), key.plaintext, now)
        key.uses += 1
        return key

    # ---- opening ------------------------------------------------------------------------------
    def open(self, connection_id: str, item: dict[str, Any]) -> dict[str, Any]:
        """The item with its secret fields back (and no ``sealed`` attribute). Plain-text secret
        attributes of an item written before sealing are returned as they are."""
        text = item.get(SEALED_ATTRIBUTE)
        rest = {k: v for k, v in item.items() if k != SEALED_ATTRIBUTE}
        if not text:
            return rest
        text = str(text)
        if text.startswith(ENVELOPE_PREFIX + ":"):
            secret = self._open_envelope(connection_id, text)
        else:
            secret = self._open_direct(connection_id, text)
        return {**rest, **secret}

    def _open_envelope(self, connection_id: str, text: str) -> dict[str, str]:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            encrypted_key, nonce, ciphertext = (base64.b64decode(part, validate=True)
                                                for part in text.split(":")[1:])
        except ValueError as error:
            raise SealBroken(f"sealed token of {connection_id!r} is malformed") from error
        data_key = self._data_key(connection_id, encrypted_key)
        try:
            plain = AESGCM(data_key).decrypt(nonce, ciphertext, _associated_data(connection_id))
        except (InvalidTag, ValueError) as error:
            raise SealBroken(f"sealed token of {connection_id!r} fails authentication") from error
        return json.loads(plain)

    def _data_key(self, connection_id: str, encrypted_key: bytes) -> bytes:
        now = self._clock()
        cached = self._read_keys.get((connection_id, encrypted_key))
        if cached is not None and now - cached[1] < WRITE_KEY_MAX_AGE_S:
            self._read_keys.move_to_end((connection_id, encrypted_key))
            return cached[0]
        # KMS refuses a data key whose encryption context names another connection.
        self.decrypt_calls += 1
        plaintext = self._client.decrypt(CiphertextBlob=encrypted_key, KeyId=self.key_id,
                                         EncryptionContext=_context(connection_id))["Plaintext"]
        self._remember((connection_id, encrypted_key), plaintext, now)
        return plaintext

    def _open_direct(self, connection_id: str, text: str) -> dict[str, str]:
        """The earlier format: the secret fields encrypted by KMS ``Encrypt`` itself, cached by
        blob as before until the next token refresh re-seals it as an envelope."""
        blob = base64.b64decode(text)
        cache_key = (connection_id, b"direct:" + blob)
        now = self._clock()
        cached = self._read_keys.get(cache_key)
        if cached is not None and now - cached[1] < WRITE_KEY_MAX_AGE_S:
            return json.loads(cached[0])
        self.decrypt_calls += 1
        plain = self._client.decrypt(CiphertextBlob=blob, KeyId=self.key_id,
                                     EncryptionContext=_context(connection_id))["Plaintext"]
        self._remember(cache_key, plain, now)
        return json.loads(plain)

    def _remember(self, cache_key: tuple[str, bytes], plaintext: bytes, now: float) -> None:
        self._read_keys[cache_key] = (plaintext, now)
        self._read_keys.move_to_end(cache_key)
        while len(self._read_keys) > _CACHE_SIZE:
            self._read_keys.popitem(last=False)
