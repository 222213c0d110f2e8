"""Tokens sealed at rest: Xero's and Sugar's access and refresh tokens never sit in the sync
table in a usable form (a table read, an export or a point-in-time backup yields ciphertext).

The secret fields of a token item are encrypted together with the stack's KMS key
(``TOKEN_KEY_ID``) by KMS ``Encrypt`` (the blob is a few hundred bytes, well under KMS's 4 KB,
so no envelope and no extra package are needed), bound to the connection by an encryption
context, and stored base64 in one attribute, ``sealed``. What a container has decrypted it keeps
in memory by ciphertext, so a warm worker calls KMS ``Decrypt`` once per token version, not per
use. Key rotation (yearly, automatic) keeps old key material for decryption: nothing to re-seal.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from typing import Any

SEALED_FIELDS = ("access_token", "refresh_token")
SEALED_ATTRIBUTE = "sealed"
_CACHE_SIZE = 64


class KmsTokenSealer:
    def __init__(self, key_id: str, *, client: Any | None = None):
        self.key_id = key_id
        if client is None:
            import boto3

            client = boto3.client("kms")
        self._client = client
        self._opened: OrderedDict[str, dict[str, str]] = OrderedDict()
        self.decrypt_calls = 0

    def seal(self, connection_id: str, token: dict[str, Any]) -> dict[str, Any]:
        """``token`` with its secret fields replaced by one ``sealed`` attribute."""
        secret = {name: token[name] for name in SEALED_FIELDS if token.get(name)}
        rest = {k: v for k, v in token.items() if k not in SEALED_FIELDS and k != SEALED_ATTRIBUTE}
        if not secret:
            return rest
        blob = self._client.encrypt(KeyId=self.key_id, Plaintext=json.dumps(secret).encode(),
                                    EncryptionContext={"connection": connection_id})["CiphertextBlob"]
        text = base64.b64encode(blob).decode("ascii")
        self._remember(text, secret)
        return {**rest, SEALED_ATTRIBUTE: text}

    def open(self, connection_id: str, item: dict[str, Any]) -> dict[str, Any]:
        """The item with its secret fields back (and no ``sealed`` attribute)."""
        text = item.get(SEALED_ATTRIBUTE)
        rest = {k: v for k, v in item.items() if k != SEALED_ATTRIBUTE}
        if not text:
            return rest
        secret = self._opened.get(str(text))
        if secret is None:
            self.decrypt_calls += 1
            plain = self._client.decrypt(CiphertextBlob=base64.b64decode(str(text)), KeyId=self.key_id,
                                         EncryptionContext={"connection": connection_id})["Plaintext"]
            secret = json.loads(plain)
            self._remember(str(text), secret)
        else:
            self._opened.move_to_end(str(text))
        return {**rest, **secret}

    def _remember(self, text: str, secret: dict[str, str]) -> None:
        self._opened[text] = secret
        while len(self._opened) > _CACHE_SIZE:
            self._opened.popitem(last=False)
