"""What a Xero organisation has: accounts, tax rates, tracking categories and currencies,
refreshed about nightly by the reconciliation and cached in the sync table per tenant.

The invoice worker asks ``unknown_references(body, metadata)`` before it sends a document, so a
mapping naming an account code or tax type the organisation lacks is refused with a message a
person can act on, instead of a Xero ValidationException after the call:

    metadata = load_metadata(wiring.reconcile_state(), tenant_id)
    problems = unknown_references(xero_body, metadata)      # [] when all is known (or no cache yet)
    rate = metadata.tax_rate("OUTPUT") if metadata else None  # Decimal("9") or None

With no cached copy yet (a new install before its first reconciliation) nothing is refused: the
check says what it knows and never blocks on what it does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from shared.mapping.settings import MappingConfig

MAX_AGE = timedelta(hours=24)
RESOURCES = ("Accounts", "TaxRates", "TrackingCategories", "Currencies", "Organisation")
DOCUMENT_COLLECTIONS = ("Invoices", "CreditNotes", "Quotes", "PurchaseOrders", "Items", "BankTransactions")
USABLE = "ACTIVE"


class XeroReader(Protocol):
    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...


class MetadataStore(Protocol):
    def get_metadata(self, tenant_id: str) -> dict[str, Any] | None: ...

    def put_metadata(self, tenant_id: str, metadata: dict[str, Any]) -> None: ...


def _upper(value: Any) -> str:
    return str(value or "").strip().upper()


def _fold(value: Any) -> str:
    return " ".join(str(value or "").split()).casefold()


@dataclass(frozen=True)
class OrganisationMetadata:
    """The cached lists, keyed for lookup: account codes and tax types upper-cased, tracking
    names case-folded (Xero compares them without case)."""

    refreshed_at: str
    accounts: dict[str, dict[str, str]] = field(default_factory=dict)  # code → status, type, tax_type, name
    tax_rates: dict[str, dict[str, str]] = field(default_factory=dict)  # tax type → status, name, rate
    tracking: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → name, status, options{name: status}
    currencies: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()  # the mapping configuration checked against these lists
    lock_date: str | None = None  # ISO date: nothing dated on or before it can be written (period locks)
    timezone: str | None = None  # Organisation.Timezone (Xero's Windows-style name): the organisation's day

    def today(self, now: datetime | None = None) -> date:
        """Today in the organisation's timezone: how Xero dates a document without ``Date``."""
        from shared.xero.timezones import organisation_today

        return organisation_today(self.timezone, now)

    # ---- lookups the invoice worker uses --------------------------------------------------------
    def tax_rate(self, tax_type: str | None) -> Decimal | None:
        """The effective rate in percent of a tax type (``Decimal("9")``), None when unknown."""
        rate = self.tax_rates.get(_upper(tax_type))
        if not rate or rate.get("rate") in (None, ""):
            return None
        try:
            return Decimal(str(rate["rate"]))
        except InvalidOperation:
            return None

    def age(self, now: datetime) -> timedelta:
        return now - datetime.fromisoformat(self.refreshed_at)

    # ---- storage form -------------------------------------------------------------------------
    def as_json(self) -> dict[str, Any]:
        return {"refreshed_at": self.refreshed_at, "accounts": self.accounts, "tax_rates": self.tax_rates,
                "tracking": self.tracking, "currencies": sorted(self.currencies), "problems": list(self.problems),
                "lock_date": self.lock_date, "timezone": self.timezone}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrganisationMetadata:
        return cls(refreshed_at=str(data["refreshed_at"]), accounts=dict(data.get("accounts") or {}),
                   tax_rates=dict(data.get("tax_rates") or {}), tracking=dict(data.get("tracking") or {}),
                   currencies=frozenset(data.get("currencies") or ()), problems=tuple(data.get("problems") or ()),
                   lock_date=data.get("lock_date") or None, timezone=data.get("timezone") or None)

    @classmethod
    def from_xero(cls, lists: dict[str, list[dict[str, Any]]], refreshed_at: datetime) -> OrganisationMetadata:
        """From the four GET answers' lists (``{"Accounts": [...], "TaxRates": [...], ...}``)."""
        accounts = {_upper(a.get("Code")): {"status": _upper(a.get("Status") or USABLE),
                                            "type": str(a.get("Type") or ""),
                                            "tax_type": str(a.get("TaxType") or ""), "name": str(a.get("Name") or "")}
                    for a in lists.get("Accounts") or [] if a.get("Code")}
        tax_rates = {_upper(t.get("TaxType")): {"status": _upper(t.get("Status") or USABLE),
                                                "name": str(t.get("Name") or ""),
                                                "rate": str(t.get("EffectiveRate", t.get("DisplayTaxRate", "")) or "")}
                     for t in lists.get("TaxRates") or [] if t.get("TaxType")}
        tracking = {}
        for category in lists.get("TrackingCategories") or []:
            if not category.get("Name"):
                continue
            options = {_fold(o.get("Name")): _upper(o.get("Status") or USABLE)
                       for o in category.get("Options") or [] if o.get("Name")}
            tracking[_fold(category["Name"])] = {"name": str(category["Name"]),
                                                 "status": _upper(category.get("Status") or USABLE), "options": options}
        currencies = frozenset(_upper(c.get("Code")) for c in lists.get("Currencies") or [] if c.get("Code"))
        organisation = (lists.get("Organisations") or [{}])[0]
        locks = [_iso_day(organisation.get(key)) for key in ("PeriodLockDate", "EndOfYearLockDate")]
        return cls(refreshed_at=refreshed_at.astimezone(UTC).isoformat(timespec="seconds"), accounts=accounts,
                   tax_rates=tax_rates, tracking=tracking, currencies=currencies,
                   lock_date=max((d for d in locks if d), default=None),
                   timezone=str(organisation.get("Timezone") or "") or None)


def _iso_day(value: Any) -> str | None:
    """Xero's ``/Date(ms+0000)/`` or ISO text → ``YYYY-MM-DD``; None when empty or unreadable."""
    from shared.xero.dates import parse_xero_date

    try:
        moment = parse_xero_date(str(value)) if value else None
    except ValueError:
        return None
    return moment.date().isoformat() if moment else None


# ---- the checks ----------------------------------------------------------------------------------
def account_problem(code: Any, metadata: OrganisationMetadata, where: str = "") -> str | None:
    account = metadata.accounts.get(_upper(code))
    if account is None:
        return f"account code {code!s}{where} is not in the Xero organisation's chart of accounts"
    if account["status"] != USABLE:
        return f"account code {code!s}{where} is {account['status'].lower()} in Xero; use an active account"
    return None


def tax_type_problem(tax_type: Any, metadata: OrganisationMetadata, where: str = "") -> str | None:
    rate = metadata.tax_rates.get(_upper(tax_type))
    if rate is None:
        return f"tax type {tax_type!s}{where} is not a tax rate of the Xero organisation"
    if rate["status"] != USABLE:
        return f"tax type {tax_type!s}{where} is {rate['status'].lower()} in Xero; use an active tax rate"
    return None


def tracking_problem(category: Any, option: Any, metadata: OrganisationMetadata, where: str = "") -> str | None:
    known = metadata.tracking.get(_fold(category))
    if known is None:
        return f"tracking category {category!s}{where} does not exist in the Xero organisation"
    if known["status"] != USABLE:
        return f"tracking category {category!s}{where} is {known['status'].lower()} in Xero"
    if option is None:
        return None
    status = known["options"].get(_fold(option))
    if status is None:
        return f"tracking option {option!s}{where} is not an option of tracking category {known['name']}"
    if status != USABLE:
        return f"tracking option {option!s}{where} of {known['name']} is {status.lower()} in Xero"
    return None


def currency_problem(code: Any, metadata: OrganisationMetadata, where: str = "") -> str | None:
    if metadata.currencies and _upper(code) not in metadata.currencies:
        return f"currency {code!s}{where} is not enabled in the Xero organisation"
    return None


def _elements(xero_body: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents in a body: an envelope (``{"Invoices": [...]}``) or one element."""
    for key in DOCUMENT_COLLECTIONS:
        if isinstance(xero_body.get(key), list):
            return [e for e in xero_body[key] if isinstance(e, dict)]
    return [xero_body]


def locked_period_problem(day: Any, metadata: OrganisationMetadata | None, where: str = "") -> str | None:
    """A document dated on or before the organisation's lock date cannot be written in Xero."""
    if not day or metadata is None or not metadata.lock_date:
        return None
    text = str(day)[:10]
    if text > metadata.lock_date:
        return None
    return (f"the date {text}{where} is in a period Xero has locked (up to {metadata.lock_date}): date the "
            "document after it, or ask finance to move the lock date")


def unknown_references(xero_body: dict[str, Any], metadata: OrganisationMetadata | None) -> list[str]:
    """Every account code, tax type, tracking category or option, and currency that ``xero_body``
    names and the organisation does not have (or has archived), one clear message each. An empty
    list when all is known, or when there is no cached metadata to judge by."""
    if metadata is None:
        return []
    problems: list[str] = []
    elements = _elements(xero_body)
    for number, element in enumerate(elements, start=1):
        prefix = f" (document {number})" if len(elements) > 1 else ""
        problems.append(locked_period_problem(element.get("Date"), metadata, prefix) or "")
        if element.get("CurrencyCode"):
            problems.append(currency_problem(element["CurrencyCode"], metadata, prefix) or "")
        for line_number, line in enumerate(element.get("LineItems") or [], start=1):
            where = f" on line {line_number}{prefix}"
            if line.get("AccountCode"):
                problems.append(account_problem(line["AccountCode"], metadata, where) or "")
            if line.get("TaxType"):
                problems.append(tax_type_problem(line["TaxType"], metadata, where) or "")
            for tag in line.get("Tracking") or []:
                problems.append(tracking_problem(tag.get("Name"), tag.get("Option"), metadata, where) or "")
        for details_key, label in (("SalesDetails", "sales"), ("PurchaseDetails", "purchase")):
            details = element.get(details_key)
            if isinstance(details, dict):
                where = f" in the item's {label} details{prefix}"
                if details.get("AccountCode"):
                    problems.append(account_problem(details["AccountCode"], metadata, where) or "")
                if details.get("TaxType"):
                    problems.append(tax_type_problem(details["TaxType"], metadata, where) or "")
    return list(dict.fromkeys(p for p in problems if p))


def check_mapping_config(config: MappingConfig, metadata: OrganisationMetadata) -> list[str]:
    """The mapping configuration's account codes, tax types and tracking categories that the
    organisation does not have: each one would make every document using it fail."""
    problems: list[str] = []

    def account(code: str | None, setting: str) -> None:
        if code:
            problems.append(account_problem(code, metadata, f" (mapping {setting})") or "")

    def tax(types: Iterable[tuple[str, str]], setting: str) -> None:
        for key, tax_type in types:
            problems.append(tax_type_problem(tax_type, metadata, f" (mapping {setting}[{key!r}])") or "")

    account(config.catalogue.sales_account_code, "catalogue.sales_account_code")
    account(config.catalogue.purchase_account_code, "catalogue.purchase_account_code")
    account(config.invoices.rounding.account_code, "invoices.rounding.account_code")
    account(config.invoices.shipping_account_code, "invoices.shipping_account_code")
    tax(config.catalogue.sales_tax_types.items(), "catalogue.sales_tax_types")
    tax(config.catalogue.purchase_tax_types.items(), "catalogue.purchase_tax_types")
    tax(config.invoices.tax_rates.items(), "invoices.tax_rates")
    for index, tracking in enumerate(config.invoices.tracking):
        problems.append(tracking_problem(tracking.category, None, metadata,
                                         f" (mapping invoices.tracking[{index}])") or "")
    for sugar_id, code in config.currencies.items():
        if code:
            problems.append(currency_problem(code, metadata, f" (mapping currencies[{sugar_id!r}])") or "")
    return list(dict.fromkeys(p for p in problems if p))


# ---- refresh and read ------------------------------------------------------------------------
def load_metadata(store: MetadataStore, tenant_id: str) -> OrganisationMetadata | None:
    """The cached copy, or None before the first refresh."""
    data = store.get_metadata(tenant_id)
    return OrganisationMetadata.from_json(data) if data else None


def refresh_due(cached: OrganisationMetadata | None, now: datetime, max_age: timedelta = MAX_AGE) -> bool:
    return cached is None or cached.age(now) >= max_age


def fetch_metadata(xero: XeroReader, now: datetime) -> OrganisationMetadata:
    """Five calls, one per list (the organisation for its lock dates). Archived tracking
    categories are left out by Xero by default; asking for them too lets a check say "archived"
    instead of "does not exist"."""
    lists: dict[str, list[dict[str, Any]]] = {}
    for resource in RESOURCES:
        params = {"includeArchived": "true"} if resource == "TrackingCategories" else None
        key = "Organisations" if resource == "Organisation" else resource  # Xero answers in the plural
        lists[key] = list(xero.get(resource, params).get(key) or [])
    return OrganisationMetadata.from_xero(lists, now)


def refresh_metadata(xero: XeroReader, store: MetadataStore, tenant_id: str, config: MappingConfig, *,
                     now: datetime | None = None, max_age: timedelta = MAX_AGE,
                     force: bool = False) -> tuple[OrganisationMetadata | None, bool]:
    """Refresh the cached copy when it is ``max_age`` old (or ``force``), checking the mapping
    configuration against it. Returns (metadata, refreshed)."""
    now = now or datetime.now(UTC)
    cached = load_metadata(store, tenant_id)
    if not force and not refresh_due(cached, now, max_age):
        return cached, False
    fresh = fetch_metadata(xero, now)
    fresh = OrganisationMetadata(**{**fresh.__dict__, "problems": tuple(check_mapping_config(config, fresh))})
    store.put_metadata(tenant_id, fresh.as_json())
    return fresh, True
