"""DynamoDB adapter for the sync table (single-table design, ``design/architecture.md``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from shared.models.jobs import Job
from shared.state.payloads import S3PayloadStore, payload_attributes, read_payload
from shared.state.records import Intent, Mapping, connection_key, intent_key, job_key, mapping_key, token_key
from shared.state.sealing import SEALED_ATTRIBUTE, SEALED_FIELDS, KmsTokenSealer

XERO_ID_INDEX = "by-xero-id"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def conditional_check_failed(error: Exception) -> bool:
    """True for botocore's ClientError saying a ConditionExpression did not hold. Checked by
    shape, so that this module (imported by every handler) does not import botocore."""
    response = getattr(error, "response", None)
    return isinstance(response, dict) and \
        response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def dynamodb_resource() -> Any:
    """The default DynamoDB resource, built on first use: importing boto3 costs a cold start
    hundreds of milliseconds, so handlers pay it only when they touch state."""
    import boto3

    return boto3.resource("dynamodb")


BATCH_GET_LIMIT = 100  # keys one BatchGetItem takes
UNPROCESSED_ROUNDS = 8


def batch_get(table: Any, keys: list[dict[str, Any]], *, projection: str | None = None,
              sleep: Any = time.sleep) -> Iterator[dict[str, Any]]:
    """Every item of ``keys`` that exists, read consistently, 100 keys a call. Keys DynamoDB
    leaves unprocessed are asked again with a short backoff, a bounded number of times."""
    client = table.meta.client
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        wanted: dict[str, Any] = {"Keys": keys[start:start + BATCH_GET_LIMIT], "ConsistentRead": True}
        if projection:
            wanted["ProjectionExpression"] = projection
        request: dict[str, Any] = {table.name: wanted}
        for round_ in range(UNPROCESSED_ROUNDS):
            answer = client.batch_get_item(RequestItems=request)
            yield from answer.get("Responses", {}).get(table.name, [])
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
            sleep(0.05 * 2 ** round_)
        if request:
            raise RuntimeError("DynamoDB left keys unprocessed after retries")


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB hands numbers back as Decimal; jobs only hold ints."""
    return {k: (int(v) if k in ("attempts", "attempt") else v) for k, v in item.items()}


class SyncStateTable:
    def __init__(self, table_name: str, *, resource: Any | None = None, job_ttl_days: int = 30,
                 payloads: S3PayloadStore | None = None, sealer: KmsTokenSealer | None = None):
        self._table = (resource or dynamodb_resource()).Table(table_name)
        self._job_ttl_seconds = job_ttl_days * 86400
        self._payloads = payloads
        # Seals access and refresh tokens (Xero's and Sugar's) with the stack's KMS key.
        self._sealer = sealer

    # ---- jobs -------------------------------------------------------------------------------
    def create_job(self, job: Job, payload: dict[str, Any]) -> tuple[Job, bool]:
        """Raises PayloadTooLarge (413) before writing anything when the payload fits no item and
        there is no payload bucket; over the item limit it goes to S3 first, then the item."""
        item = {**job_key(job.job_id), **job.model_dump(mode="json"),
                **payload_attributes(job.job_id, payload, self._payloads),
                "expires_at": int(time.time()) + self._job_ttl_seconds}
        item = {k: v for k, v in item.items() if v is not None}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(PK)")
            return job, True
        except Exception as error:
            if not conditional_check_failed(error):
                raise
        existing = self.get_job(job.job_id)
        assert existing is not None  # the condition failed because it exists
        return existing, False

    def get_job(self, job_id: str) -> Job | None:
        item = self._table.get_item(Key=job_key(job_id), ConsistentRead=True).get("Item")
        if not item:
            return None
        return Job.model_validate(_plain({k: v for k, v in item.items() if k in Job.model_fields}))

    def get_job_payload(self, job_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=job_key(job_id), ConsistentRead=True,
                                    ProjectionExpression="payload, payload_s3_key").get("Item")
        return read_payload(item, self._payloads) if item else None

    def delete_job(self, job_id: str) -> None:
        self._table.delete_item(Key=job_key(job_id))

    def update_job(self, job_id: str, **changes: Any) -> None:
        changes["updated_at"] = now_iso()
        names = {f"#{k}": k for k in changes}
        values = {f":{k}": v for k, v in changes.items()}
        expression = "SET " + ", ".join(f"#{k} = :{k}" for k in changes)
        self._table.update_item(Key=job_key(job_id), UpdateExpression=expression,
                                ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def start_attempt(self, job_id: str) -> None:
        self._table.update_item(
            Key=job_key(job_id),
            UpdateExpression="SET #s = :s, updated_at = :u ADD attempts :one",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": "in_progress", ":u": now_iso(), ":one": 1},
        )

    # ---- mappings ---------------------------------------------------------------------------
    def get_mappings(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Mapping]:
        found: dict[str, Mapping] = {}
        keys = [mapping_key(tenant_id, module, crm_id) for crm_id in dict.fromkeys(crm_ids)]
        for item in batch_get(self._table, keys):
            mapping = Mapping.model_validate({k: v for k, v in item.items() if k in Mapping.model_fields})
            found[mapping.crm_id] = mapping
        return found

    def put_mapping(self, mapping: Mapping) -> None:
        mapping = mapping.model_copy(update={"updated_at": now_iso()})
        item = {**mapping_key(mapping.tenant_id, mapping.module, mapping.crm_id),
                **mapping.model_dump(exclude_none=True)}
        self._table.put_item(Item=item)

    def find_by_xero_id(self, xero_id: str) -> Mapping | None:
        answer = self._table.query(IndexName=XERO_ID_INDEX,
                                   KeyConditionExpression="xero_id = :x",
                                   ExpressionAttributeValues={":x": xero_id}, Limit=1)
        items = answer.get("Items", [])
        if not items:
            return None
        return Mapping.model_validate({k: v for k, v in items[0].items() if k in Mapping.model_fields})

    # Added for Xero's updates (shared/usecases/xero_updates.py): batched lookup by Xero id,
    # a conditional store of a document's Xero state, and a create-if-absent mapping.
    def find_by_xero_ids(self, tenant_id: str, xero_ids: list[str], *,
                         workers: int = 8) -> dict[str, list[Mapping]]:
        """Every mapping of ``tenant_id`` whose Xero id is in ``xero_ids``, by Xero id.

        A GSI cannot be batch-read, so its queries run side by side (keys only); the mappings
        themselves are then read consistently from the table (100 a call), because a GSI can
        lag behind a mapping written moments ago."""
        unique = list(dict.fromkeys(i for i in xero_ids if i))
        if not unique:
            return {}
        client = self._table.meta.client  # clients are thread-safe; resources are not

        def keys_for(xero_id: str) -> list[dict[str, Any]]:
            request: dict[str, Any] = {
                "TableName": self._table.name, "IndexName": XERO_ID_INDEX,
                "KeyConditionExpression": "xero_id = :x", "FilterExpression": "tenant_id = :t",
                "ProjectionExpression": "PK, SK", "ExpressionAttributeValues": {":x": xero_id, ":t": tenant_id}}
            found: list[dict[str, Any]] = []
            while True:
                answer = client.query(**request)
                found += answer.get("Items", [])
                if not answer.get("LastEvaluatedKey"):
                    return found
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

        if len(unique) == 1:
            key_lists = [keys_for(unique[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(workers, len(unique))) as pool:
                key_lists = list(pool.map(keys_for, unique))
        keys = list({k["PK"]: {"PK": k["PK"], "SK": k["SK"]} for ks in key_lists for k in ks
                     if k.get("SK") == "MAP"}.values())
        found: dict[str, list[Mapping]] = {}
        for item in batch_get(self._table, keys):
            mapping = Mapping.model_validate({k: v for k, v in item.items() if k in Mapping.model_fields})
            if mapping.tenant_id == tenant_id and mapping.xero_id in unique:
                found.setdefault(mapping.xero_id, []).append(mapping)
        return found

    def put_document_state(self, mapping: Mapping, document: dict[str, Any], *,
                           expected_updated_utc: str | None) -> bool:
        """Store a document's Xero state on its existing mapping, only if the stored state is
        still the one read (its ``updated_utc`` is ``expected_updated_utc``; None: no state or
        no timestamp yet). False when another writer moved it meanwhile."""
        values: dict[str, Any] = {":doc": document, ":now": now_iso(),
                                  ":xu": document.get("updated_utc"), ":num": document.get("number")}
        if expected_updated_utc is None:
            condition = ("attribute_exists(PK) AND (attribute_not_exists(#d) OR attribute_not_exists(#d.#u) "
                         "OR attribute_type(#d.#u, :null))")
            values[":null"] = "NULL"
        else:
            condition = "attribute_exists(PK) AND #d.#u = :expected"
            values[":expected"] = expected_updated_utc
        try:
            self._table.update_item(
                Key=mapping_key(mapping.tenant_id, mapping.module, mapping.crm_id),
                UpdateExpression="SET #d = :doc, xero_updated = :xu, xero_number = :num, updated_at = :now",
                ConditionExpression=condition, ExpressionAttributeNames={"#d": "document", "#u": "updated_utc"},
                ExpressionAttributeValues=values)
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise

    def create_mapping(self, mapping: Mapping) -> bool:
        """``put_mapping`` only when the mapping does not exist yet; False when it does."""
        mapping = mapping.model_copy(update={"updated_at": now_iso()})
        item = {**mapping_key(mapping.tenant_id, mapping.module, mapping.crm_id),
                **mapping.model_dump(exclude_none=True)}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(PK)")
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise

    # ---- the write-ahead journal (shared/usecases/journal.py) ---------------------------------
    def get_intents(self, tenant_id: str, module: str, crm_ids: list[str]) -> dict[str, Intent]:
        found: dict[str, Intent] = {}
        keys = [intent_key(tenant_id, module, crm_id) for crm_id in dict.fromkeys(crm_ids)]
        for item in batch_get(self._table, keys):
            intent = Intent.model_validate({k: (int(v) if k == "attempt" else v) for k, v in item.items()
                                            if k in Intent.model_fields})
            found[intent.crm_id] = intent
        return found

    def record_intent(self, intent: Intent) -> Intent | None:
        """Record a new attempt (attempt + 1, state ``intent``) before its Xero call. Refused
        (None) when a newer CRM save was already intended for the record: the condition is
        the one place that decides newest-wins between concurrent workers."""
        fields = {"tenant_id": intent.tenant_id, "module": intent.module, "crm_id": intent.crm_id,
                  "resource": intent.resource, "state": "intent", "body_hash": intent.body_hash,
                  "idempotency_key": intent.idempotency_key, "marker_field": intent.marker_field,
                  "marker_value": intent.marker_value, "job_ids": intent.job_ids, "updated_at": now_iso()}
        if intent.version is not None:
            fields["version"] = intent.version
        if intent.found_id is not None:
            fields["found_id"] = intent.found_id
        names = {f"#{k}": k for k in fields}
        values: dict[str, Any] = {f":{k}": v for k, v in fields.items()}
        values[":one"] = 1
        request: dict[str, Any] = {}
        if intent.version is not None:
            request["ConditionExpression"] = "attribute_not_exists(#version) OR #version <= :version"
        names["#attempt"], names["#error"] = "attempt", "error"
        try:
            answer = self._table.update_item(
                Key=intent_key(intent.tenant_id, intent.module, intent.crm_id),
                UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in fields) + " REMOVE #error"
                                 " ADD #attempt :one",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values, ReturnValues="ALL_NEW",
                **request)
        except Exception as error:
            if conditional_check_failed(error):
                return None
            raise
        item = answer["Attributes"]
        return Intent.model_validate({k: (int(v) if k == "attempt" else v) for k, v in item.items()
                                      if k in Intent.model_fields})

    def settle_intent(self, intent: Intent, state: str, *, found_id: str | None = None,
                      error: str | None = None) -> bool:
        """Move ``intent``'s attempt to ``state``; False (nothing written) when a later attempt
        was recorded meanwhile: that attempt's outcome is not this one's to settle."""
        fields: dict[str, Any] = {"state": state, "updated_at": now_iso()}
        if found_id is not None:
            fields["found_id"] = found_id
        if error is not None:
            fields["error"] = error[:1000]
        names = {f"#{k}": k for k in fields}
        names["#attempt"] = "attempt"
        values = {f":{k}": v for k, v in fields.items()}
        values[":attempt"] = intent.attempt
        try:
            self._table.update_item(
                Key=intent_key(intent.tenant_id, intent.module, intent.crm_id),
                UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in fields),
                ConditionExpression="#attempt = :attempt",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values)
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise

    # ---- tokens and connections --------------------------------------------------------------
    def get_token(self, connection_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=token_key(connection_id), ConsistentRead=True).get("Item")
        if item and SEALED_ATTRIBUTE in item:
            if self._sealer is None:
                raise RuntimeError("the token set is sealed and no KMS key (TOKEN_KEY_ID) is configured")
            return self._sealer.open(connection_id, item)
        return item

    def get_token_status(self, connection_id: str) -> dict[str, Any] | None:
        """The token item without its (sealed) secrets: status, version, expiry. Needs no key."""
        item = self._table.get_item(Key=token_key(connection_id), ConsistentRead=True).get("Item")
        return {k: v for k, v in item.items() if k not in (SEALED_ATTRIBUTE, *SEALED_FIELDS)} if item else None

    def put_token(self, connection_id: str, token: dict[str, Any], *, expected_version: int | None) -> bool:
        """Compare-and-set: write only if the stored version is still ``expected_version``
        (None: only if there is no token yet). Returns False when another writer won."""
        new_version = (expected_version or 0) + 1
        if self._sealer is not None:
            token = self._sealer.seal(connection_id, token)
        item = {**token_key(connection_id), **token, "version": new_version}
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(PK)"} if expected_version is None
            else {"ConditionExpression": "#version = :expected",
                  "ExpressionAttributeNames": {"#version": "version"},
                  "ExpressionAttributeValues": {":expected": expected_version}})
        try:
            self._table.put_item(Item=item, **condition)
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise

    def get_connection(self, connection_id: str) -> dict[str, Any] | None:
        return self._table.get_item(Key=connection_key(connection_id), ConsistentRead=True).get("Item")

    def put_connection(self, connection_id: str, **fields: Any) -> None:
        self._table.put_item(Item={**connection_key(connection_id), **fields, "updated_at": now_iso()})

    # ---- read-only overview (``sugar-xero status``) -------------------------------------------
    def scan_status_items(self, *, page_size: int = 1000) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every job, token and connection item, as ``(kind, id, attributes)`` with kind ``job``
        (id: the job id), ``token`` or ``connection`` (id: the connection id).

        One paginated Scan, filtered to those item types and projected to what a status report
        shows: token and secret values are never read (``_STATUS_ATTRIBUTES``). The Scan reads
        the whole table, which is bounded because jobs expire after ``job_ttl_days`` (TTL); a
        deployed table holding millions of jobs would want a GSI on ``status`` instead.
        """
        names = {f"#a{i}": name for i, name in enumerate(_STATUS_ATTRIBUTES)}
        request: dict[str, Any] = {
            "FilterExpression": "#sk IN (:job, :token, :conn)",
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": {**names, "#sk": "SK"},
            "ExpressionAttributeValues": {":job": "JOB", ":token": "TOKEN", ":conn": "CONN"},
            "Limit": page_size,
        }
        while True:
            answer = self._table.scan(**request)
            for item in answer.get("Items", []):
                kind, prefix = _STATUS_KINDS[str(item["SK"])]
                yield kind, str(item["PK"]).removeprefix(prefix), item
            if not answer.get("LastEvaluatedKey"):
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


_STATUS_KINDS = {"JOB": ("job", "JOB#"), "TOKEN": ("token", "TOKEN#"), "CONN": ("connection", "CONN#")}
# What ``scan_status_items`` reads. Never access_token, refresh_token or lease holders' secrets.
_STATUS_ATTRIBUTES = (
    "PK", "SK", "job_id", "status", "kind", "crm", "error", "attempts", "created_at", "updated_at",
    "expires_at", "access_expires_at", "refresh_expires_at", "disconnected_at", "renewed_at", "lease_until",
    "login_refused_until", "login_refused_label", "version", "tenant_id", "tenant_name", "tenant_type",
    "tenants", "tenant_count", "parent_connection",
)
