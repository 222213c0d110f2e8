"""Where a job's payload lives: in its DynamoDB item while it fits, else in S3 with the item
pointing at it. Nothing a caller was told is accepted may be lost to DynamoDB's 400 KB item limit.

Payloads are written as compact UTF-8 JSON (no ``\\u`` escapes, no spaces): an ``é`` costs two
bytes, not six, so a quote with long accented, Chinese or Thai descriptions still fits an item.
"""

from __future__ import annotations

import json
from typing import Any

from shared.errors import BadInput

# DynamoDB's item limit is 400 KB counting attribute names and values (UTF-8); the job's other
# attributes take a few hundred bytes. Anything larger than this goes to S3.
ITEM_PAYLOAD_LIMIT = 350 * 1024
S3_PREFIX = "payloads/"


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class PayloadTooLarge(BadInput):
    def __init__(self, size: int):
        super().__init__("payload_too_large",
                         f"The document is {size} bytes once stored; without a payload bucket the connector "
                         f"keeps at most {ITEM_PAYLOAD_LIMIT}. Send fewer or shorter lines.", status=413)


class S3PayloadStore:
    """The stack's payload bucket (encrypted, objects expire after the jobs that point at them)."""

    def __init__(self, bucket: str, *, client: Any | None = None):
        self.bucket = bucket
        if client is None:
            import boto3  # on first use only: most payloads never reach S3

            client = boto3.client("s3")
        self._client = client

    def put(self, job_id: str, text: str) -> str:
        key = f"{S3_PREFIX}{job_id}.json"
        self._client.put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"),
                                ContentType="application/json; charset=utf-8")
        return key

    def get(self, key: str) -> str:
        return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")


def payload_attributes(job_id: str, payload: Any, store: S3PayloadStore | None) -> dict[str, str]:
    """The item attributes that hold ``payload``: ``payload`` itself, or ``payload_s3_key``.
    Raises PayloadTooLarge (413) before anything is written when it can be stored nowhere."""
    text = compact_json(payload)
    size = len(text.encode("utf-8"))
    if size <= ITEM_PAYLOAD_LIMIT:
        return {"payload": text}
    if store is None:
        raise PayloadTooLarge(size)
    return {"payload_s3_key": store.put(job_id, text)}


def read_payload(item: dict[str, Any], store: S3PayloadStore | None) -> dict[str, Any] | None:
    if "payload" in item:
        return json.loads(item["payload"])
    key = item.get("payload_s3_key")
    if key and store is not None:
        return json.loads(store.get(str(key)))
    return None
