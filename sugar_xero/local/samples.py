"""Sample Sugar callouts for ``sugar-xero demo`` when the shared fixtures folder is not at hand:
an Account and one of its Contacts, shaped as Sugar's Web Logic Hooks send them (Sugar 12 and
Sugar 8 bodies respectively)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SAMPLE_ACCOUNT_ID = "5b0d7f3a-8c21-4e6b-9f10-3a2c4d5e6f70"
SAMPLE_CONTACT_ID = "6c1e8a4b-9d32-4f7c-a021-4b3d5e6f7081"


def sample_account_hook() -> dict[str, Any]:
    return {
        "bean": "Account",
        "event": "after_save",
        "data": {
            "id": SAMPLE_ACCOUNT_ID,
            "name": "Kowhai Engineering Ltd",
            "account_type": "Customer",
            "date_modified": "2026-11-26T09:00:00+00:00",
            "deleted": False,
            "phone_office": "+64 9 555 0100",
            "website": "https://kowhai.example.nz",
            "billing_address_street": "12 Quay Street",
            "billing_address_city": "Auckland",
            "billing_address_state": "",
            "billing_address_postalcode": "1010",
            "billing_address_country": "New Zealand",
            "email": [
                {
                    "email_address": "accounts@kowhai.example.nz",
                    "primary_address": True,
                    "reply_to_address": False,
                    "invalid_email": False,
                    "opt_out": False,
                }
            ],
            "email1": "accounts@kowhai.example.nz",
            "currency_id": "-99",
            "_module": "Accounts",
        },
        "dataChanges": {},
    }


def sample_contact_hook() -> dict[str, Any]:
    return {
        "isUpdate": False,
        "bean": "Contact",
        "event": "after_save",
        "data": {
            "id": SAMPLE_CONTACT_ID,
            "first_name": "Aroha",
            "last_name": "Ngata",
            "full_name": "Aroha Ngata",
            "title": "Accounts Payable",
            "account_id": SAMPLE_ACCOUNT_ID,
            "account_name": "Kowhai Engineering Ltd",
            "phone_work": "+64 9 555 0101",
            "email": [
                {
                    "email_address": "aroha.ngata@kowhai.example.nz",
                    "primary_address": True,
                    "reply_to_address": False,
                    "invalid_email": False,
                    "opt_out": False,
                }
            ],
            "email1": "aroha.ngata@kowhai.example.nz",
            "primary_address_street": "12 Quay Street",
            "primary_address_city": "Auckland",
            "primary_address_postalcode": "1010",
            "primary_address_country": "New Zealand",
            "date_modified": "2026-11-26T09:05:00+00:00",
            "deleted": False,
            "_module": "Contacts",
        },
        "dataChanges": {},
    }


def fixtures_dir(project_dir: Path | None = None) -> Path:
    """``$SUGAR_XERO_FIXTURES``, else ``<project>/../shared/fixtures``."""
    configured = os.environ.get("SUGAR_XERO_FIXTURES")
    if configured:
        return Path(configured)
    project = project_dir or Path(__file__).resolve().parents[2]
    return project.parent / "shared" / "fixtures"


def demo_callouts(project_dir: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(label, hook body) pairs: the shared fixtures when present, else the samples above."""
    sugar = fixtures_dir(project_dir) / "sugar"
    account, contact = sugar / "account_after_save.json", sugar / "contact_after_save_v8.json"
    if account.exists() and contact.exists():
        found = [(account.name, json.loads(account.read_text())), (contact.name, json.loads(contact.read_text()))]
        # The catalogue entry, then the accepted quote: it becomes a Xero invoice to the cent.
        for extra in (sugar / "product_template_after_save.json", sugar / "quote_closed_accepted.json"):
            if extra.exists():
                found.append((extra.name, json.loads(extra.read_text())))
        return found
    return [("sample account", sample_account_hook()), ("sample contact", sample_contact_hook())]


def sample_seed() -> dict[str, Any]:
    """Seed for the Sugar double built from the samples (when the fixtures are absent)."""
    account, contact = sample_account_hook()["data"], sample_contact_hook()["data"]
    return {
        "records": {"Accounts": [account], "Contacts": [contact]},
        "links": [
            {
                "module": "Accounts",
                "id": account["id"],
                "link": "contacts",
                "related_module": "Contacts",
                "related_id": contact["id"],
            }
        ],
    }
