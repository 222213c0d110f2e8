"""What the reconciliation keeps in the sync table, per Xero organisation (``T#<tenant>``):

| SK | holds |
| --- | --- |
| ``WM#<resource>`` | the last reconciled change, ISO-8601 UTC: Xero's UpdatedDateUTC (Invoices, |
|  | CreditNotes, Payments) or Sugar's date_modified (``CRM#Accounts``, ``CRM#Quotes``...) |
| ``RECONCILE#LAST`` | the last pass: started, finished, repaired and drift counts, errors (JSON) |
| ``META#ORGANISATION`` | the organisation's accounts, tax rates, tracking categories and currencies (JSON) |
| ``AUDIT#CURSOR`` | where the rolling drift audit stopped in the table, and when it last ran |

None of these carries the TTL attribute: they live as long as the tenant does. The stuck-job
search is here too, since only the reconciliation asks it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from shared.state.dynamo import conditional_check_failed, dynamodb_resource
from shared.state.records import Mapping

LAST_RECONCILE = "RECONCILE#LAST"
METADATA = "META#ORGANISATION"
AUDIT_CURSOR = "AUDIT#CURSOR"


def tenant_key(tenant_id: str, sort_key: str) -> dict[str, str]:
    return {"PK": f"T#{tenant_id}", "SK": sort_key}


def watermark_key(tenant_id: str, resource: str) -> dict[str, str]:
    return tenant_key(tenant_id, f"WM#{resource}")


def normalised_instant(value: str | datetime) -> str:
    """One sortable text form for every timestamp kept here (so a conditional ``<`` on the
    stored string compares instants): UTC, milliseconds, ``+00:00``."""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        moment = value
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")


class ReconcileStateTable:
    def __init__(self, table_name: str, *, resource: Any | None = None):
        self._table = (resource or dynamodb_resource()).Table(table_name)

    # ---- watermarks ---------------------------------------------------------------------------
    def get_watermark(self, tenant_id: str, resource: str) -> str | None:
        item = self._table.get_item(Key=watermark_key(tenant_id, resource), ConsistentRead=True).get("Item")
        return str(item["value"]) if item and item.get("value") else None

    def advance_watermark(self, tenant_id: str, resource: str, value: str | datetime) -> bool:
        """Move the watermark forward to ``value``; never back (two passes at once cannot undo
        each other). False when the stored one is already at or past it."""
        instant = normalised_instant(value)
        try:
            self._table.put_item(
                Item={**watermark_key(tenant_id, resource), "value": instant,
                      "updated_at": normalised_instant(datetime.now(UTC))},
                ConditionExpression="attribute_not_exists(PK) OR #v < :v",
                ExpressionAttributeNames={"#v": "value"}, ExpressionAttributeValues={":v": instant})
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise

    # ---- last pass ----------------------------------------------------------------------------
    def put_last_reconcile(self, tenant_id: str, report: dict[str, Any]) -> None:
        self._table.put_item(Item={**tenant_key(tenant_id, LAST_RECONCILE),
                                   "finished": str(report.get("finished") or ""),
                                   "report": json.dumps(report, default=str, separators=(",", ":"))})

    def get_last_reconcile(self, tenant_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=tenant_key(tenant_id, LAST_RECONCILE), ConsistentRead=True).get("Item")
        return json.loads(item["report"]) if item and item.get("report") else None

    def last_reconciles(self, tenant_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        return {tenant_id: self.get_last_reconcile(tenant_id) for tenant_id in tenant_ids}

    # ---- organisation metadata ----------------------------------------------------------------
    def get_metadata(self, tenant_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=tenant_key(tenant_id, METADATA), ConsistentRead=True).get("Item")
        return json.loads(item["metadata"]) if item and item.get("metadata") else None

    def put_metadata(self, tenant_id: str, metadata: dict[str, Any]) -> None:
        self._table.put_item(Item={**tenant_key(tenant_id, METADATA),
                                   "metadata": json.dumps(metadata, default=str, separators=(",", ":"))})

    # ---- once-a-day markers (e.g. the overdue billing rules) ------------------------------------
    def get_marker(self, tenant_id: str, name: str) -> str | None:
        item = self._table.get_item(Key=tenant_key(tenant_id, f"MARK#{name}"), ConsistentRead=True).get("Item")
        return str(item["value"]) if item and "value" in item else None

    def put_marker(self, tenant_id: str, name: str, value: str) -> None:
        self._table.put_item(Item={**tenant_key(tenant_id, f"MARK#{name}"), "value": value})

    # ---- the rolling drift audit --------------------------------------------------------------
    def get_audit_cursor(self, tenant_id: str) -> dict[str, Any]:
        item = self._table.get_item(Key=tenant_key(tenant_id, AUDIT_CURSOR), ConsistentRead=True).get("Item")
        if not item:
            return {}
        return {"start_key": json.loads(item["start_key"]) if item.get("start_key") else None,
                "audited_at": str(item.get("audited_at") or "") or None}

    def put_audit_cursor(self, tenant_id: str, start_key: dict[str, Any] | None, audited_at: str) -> None:
        item: dict[str, Any] = {**tenant_key(tenant_id, AUDIT_CURSOR), "audited_at": audited_at}
        if start_key:
            item["start_key"] = json.dumps(start_key)
        self._table.put_item(Item=item)

    def scan_document_mappings(self, tenant_id: str, start_key: dict[str, Any] | None, *,
                               max_scanned: int = 2000, page_size: int = 500
                               ) -> tuple[list[Mapping], dict[str, Any] | None]:
        """Mappings of pushed trade documents (those with a ``document``) for one tenant, from
        ``start_key`` until about ``max_scanned`` items have been read. Returns them and where
        the next call goes on (None: the table's end). A Scan, but a bounded slice of one per
        call, so a large table is walked over many passes instead of read whole each time."""
        request: dict[str, Any] = {
            "FilterExpression": "begins_with(PK, :prefix) AND SK = :map AND attribute_exists(#doc)",
            "ExpressionAttributeNames": {"#doc": "document"},
            "ExpressionAttributeValues": {":prefix": f"T#{tenant_id}#", ":map": "MAP"},
            "Limit": page_size,
        }
        if start_key:
            request["ExclusiveStartKey"] = start_key
        found: list[Mapping] = []
        scanned = 0
        while True:
            answer = self._table.scan(**request)
            scanned += int(answer.get("ScannedCount", 0))
            for item in answer.get("Items", []):
                found.append(Mapping.model_validate({k: v for k, v in item.items() if k in Mapping.model_fields}))
            next_key = answer.get("LastEvaluatedKey")
            if not next_key or scanned >= max_scanned:
                return found, next_key or None
            request["ExclusiveStartKey"] = next_key

    # ---- stuck jobs ---------------------------------------------------------------------------
    def stuck_jobs(self, older_than: dict[str, str], *, now_epoch: int, max_items: int = 500,
                   page_size: int = 1000) -> list[dict[str, Any]]:
        """Jobs whose status is a key of ``older_than`` and whose ``updated_at`` is before its
        value (``now_iso`` text), not expired. A filtered Scan of the sync table, as
        ``sugar-xero status`` does: bounded because jobs expire (TTL); a table holding millions
        of live jobs would want a GSI on status instead."""
        names = {"#sk": "SK", "#s": "status", "#u": "updated_at", "#e": "expires_at"}
        values: dict[str, Any] = {":job": "JOB", ":now": now_epoch}
        clauses = []
        for index, (status, before) in enumerate(sorted(older_than.items())):
            values[f":s{index}"], values[f":u{index}"] = status, before
            clauses.append(f"(#s = :s{index} AND #u < :u{index})")
        request: dict[str, Any] = {
            "FilterExpression": f"#sk = :job AND (attribute_not_exists(#e) OR #e > :now) AND ({' OR '.join(clauses)})",
            "ProjectionExpression": "job_id, #s, kind, #u, attempts, redrives, #e",
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values, "Limit": page_size,
        }
        found: list[dict[str, Any]] = []
        while len(found) < max_items:
            answer = self._table.scan(**request)
            found += [{k: (int(v) if k in {"attempts", "redrives", "expires_at"} else v) for k, v in item.items()}
                      for item in answer.get("Items", [])]
            if not answer.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found[:max_items]
