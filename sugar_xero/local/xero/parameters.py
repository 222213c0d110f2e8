"""Which query parameters each Accounting API operation takes, as Xero's OpenAPI spec (16.1.0,
``xero_accounting.yaml``) lists them. Xero ignores any other parameter, so the emulator does too:
a parameter the connector sends where Xero has none (``IDs=`` on CreditNotes, ``pageSize`` on
Quotes, ``unitdp`` on Quotes) shows up in tests as the wrong answer it gets from Xero.

``tests/contract/test_emulator_parameters.py`` checks this table against the spec file."""

from __future__ import annotations

QUERY_PARAMETERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/Contacts"): ("where", "order", "IDs", "page", "includeArchived", "summaryOnly", "searchTerm", "pageSize"),
    ("POST", "/Contacts"): ("summarizeErrors",),
    ("PUT", "/Contacts"): ("summarizeErrors",),
    ("GET", "/Contacts/{ContactID}"): (),
    ("POST", "/Contacts/{ContactID}"): (),
    ("GET", "/Items"): ("where", "order", "unitdp"),
    ("POST", "/Items"): ("summarizeErrors", "unitdp"),
    ("PUT", "/Items"): ("summarizeErrors", "unitdp"),
    ("GET", "/Items/{ItemID}"): ("unitdp",),
    ("POST", "/Items/{ItemID}"): ("unitdp",),
    ("GET", "/Invoices"): (
        "where",
        "order",
        "IDs",
        "InvoiceNumbers",
        "ContactIDs",
        "Statuses",
        "page",
        "includeArchived",
        "createdByMyApp",
        "unitdp",
        "summaryOnly",
        "pageSize",
        "searchTerm",
    ),
    ("POST", "/Invoices"): ("summarizeErrors", "unitdp"),
    ("PUT", "/Invoices"): ("summarizeErrors", "unitdp"),
    ("GET", "/Invoices/{InvoiceID}"): ("unitdp",),
    ("POST", "/Invoices/{InvoiceID}"): ("unitdp",),
    ("GET", "/Invoices/{InvoiceID}/OnlineInvoice"): (),
    ("GET", "/Quotes"): (
        "DateFrom",
        "DateTo",
        "ExpiryDateFrom",
        "ExpiryDateTo",
        "ContactID",
        "Status",
        "page",
        "order",
        "QuoteNumber",
    ),
    ("POST", "/Quotes"): ("summarizeErrors",),
    ("PUT", "/Quotes"): ("summarizeErrors",),
    ("GET", "/Quotes/{QuoteID}"): (),
    ("POST", "/Quotes/{QuoteID}"): (),
    ("GET", "/Payments"): ("where", "order", "page", "pageSize"),
    ("POST", "/Payments"): (),
    ("PUT", "/Payments"): ("summarizeErrors",),
    ("GET", "/Payments/{PaymentID}"): (),
    ("POST", "/Payments/{PaymentID}"): (),
    ("GET", "/PurchaseOrders"): ("Status", "DateFrom", "DateTo", "order", "page", "pageSize"),
    ("POST", "/PurchaseOrders"): ("summarizeErrors",),
    ("PUT", "/PurchaseOrders"): ("summarizeErrors",),
    ("GET", "/PurchaseOrders/{PurchaseOrderID}"): (),
    ("POST", "/PurchaseOrders/{PurchaseOrderID}"): (),
    ("GET", "/CreditNotes"): ("where", "order", "page", "unitdp", "pageSize"),
    ("POST", "/CreditNotes"): ("summarizeErrors", "unitdp"),
    ("PUT", "/CreditNotes"): ("summarizeErrors", "unitdp"),
    ("GET", "/CreditNotes/{CreditNoteID}"): ("unitdp",),
    ("POST", "/CreditNotes/{CreditNoteID}"): ("unitdp",),
    ("PUT", "/CreditNotes/{CreditNoteID}/Allocations"): ("summarizeErrors",),
    ("DELETE", "/CreditNotes/{CreditNoteID}/Allocations/{AllocationID}"): (),
    ("GET", "/TaxRates"): ("where", "order"),
    ("GET", "/Accounts"): ("where", "order"),
    ("GET", "/Accounts/{AccountID}"): (),
    ("GET", "/Currencies"): ("where", "order"),
    ("GET", "/TrackingCategories"): ("where", "order", "includeArchived"),
    ("GET", "/TrackingCategories/{TrackingCategoryID}"): (),
    ("GET", "/Organisation"): (),
}


def allowed_parameters(method: str, template: str) -> frozenset[str]:
    """The (lower-cased) query parameters Xero reads on this operation; empty when it reads none."""
    return frozenset(name.lower() for name in QUERY_PARAMETERS.get((method.upper(), template), ()))
