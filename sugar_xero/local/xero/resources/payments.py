"""Payments against invoices."""

from __future__ import annotations

from copy import deepcopy
from decimal import Decimal
from typing import Any

from ..values import (
    BadValue,
    money,
    to_decimal,
)
from .common import _COMPUTED, Outcome, _document_dates, _echo, _Txn, new_id


def _upsert_payment(txn: _Txn, data: dict[str, Any]) -> Outcome:
    """A new payment against an AUTHORISED invoice (a PaymentID names one to delete): check the
    invoice, account and amount, then store the payment and apply it to the invoice."""
    payment_id = txn.path_id or data.get("PaymentID")
    if payment_id:
        return _delete_payment(txn, payment_id, data)
    errors: list[str] = []
    invoice = _paid_invoice(txn, data, errors)
    account = _payment_account(txn, data.get("Account"), errors)
    amount = _payment_amount(data, invoice, errors)
    dates = _document_dates(txn, data, None, ("Date",), errors)
    if errors:
        return Outcome(_echo(data, "PaymentID", None), errors, [])
    assert invoice is not None and amount is not None and account is not None
    stamp = txn.store.stamp()
    record = {k: deepcopy(v) for k, v in data.items() if k not in _COMPUTED and k not in ("Invoice", "Account")}
    record.update(
        {
            "PaymentID": new_id(),
            "Status": "AUTHORISED",
            "Amount": amount,
            "BankAmount": amount,
            "CurrencyRate": invoice.get("CurrencyRate", Decimal("1")),
            "PaymentType": "ACCRECPAYMENT" if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT",
            "IsReconciled": False,
            "HasAccount": True,
            "HasValidationErrors": False,
            "Account": {"AccountID": account["AccountID"], "Code": account.get("Code", "")},
            "Invoice": {"InvoiceID": invoice["InvoiceID"]},
            **dates,
            **stamp,
        }
    )
    txn.col("payments")[record["PaymentID"]] = record
    _apply_to_invoice(txn, invoice, record, stamp)
    return Outcome(record, [], [])


def _paid_invoice(txn: _Txn, data: dict[str, Any], errors: list[str]) -> dict[str, Any] | None:
    invoices = txn.col("invoices")
    reference = data.get("Invoice") or {}
    invoice = None
    if isinstance(reference, dict) and reference.get("InvoiceID"):
        invoice = invoices.get(reference["InvoiceID"])
    elif isinstance(reference, dict) and reference.get("InvoiceNumber"):
        invoice = next((i for i in invoices.values() if i.get("InvoiceNumber") == reference["InvoiceNumber"]), None)
    if data.get("CreditNote") or data.get("Prepayment") or data.get("Overpayment"):
        errors.append("The emulator applies payments to invoices only")
    elif invoice is None:
        errors.append("The Invoice of a payment must be given by an existing InvoiceID or InvoiceNumber")
    elif invoice["Status"] != "AUTHORISED":
        errors.append(f"Payments can only be applied to AUTHORISED invoices; this one is {invoice['Status']}")
    return invoice


def _payment_amount(data: dict[str, Any], invoice: dict[str, Any] | None, errors: list[str]) -> Decimal | None:
    try:
        amount = money(to_decimal(data.get("Amount"), "Amount")) if data.get("Amount") is not None else None
    except BadValue as error:
        errors.append(str(error))
        amount = None
    if amount is None:
        if not any("Amount" in e for e in errors):
            errors.append("The payment Amount must be specified")
    elif amount <= 0:
        errors.append("The payment Amount must be greater than zero")
    elif invoice is not None and amount > invoice["AmountDue"]:
        errors.append("Payment amount exceeds the amount outstanding on this document")
    return amount


def _apply_to_invoice(txn: _Txn, invoice: dict[str, Any], payment: dict[str, Any], stamp: dict[str, Any]) -> None:
    """The invoice's AmountPaid and AmountDue move; fully paid, it turns PAID."""
    amount = payment["Amount"]
    paid = invoice["AmountPaid"] + amount
    updated = dict(invoice)
    updated["AmountPaid"] = paid
    updated["AmountDue"] = money(invoice["Total"] - paid - invoice["AmountCredited"])
    updated["Payments"] = [
        *invoice.get("Payments", []),
        {
            "PaymentID": payment["PaymentID"],
            "Date": payment["Date"],
            "Amount": amount,
            "Reference": payment.get("Reference", ""),
            "CurrencyRate": payment["CurrencyRate"],
            "HasAccount": True,
            "HasValidationErrors": False,
        },
    ]
    if updated["AmountDue"] == 0:
        updated["Status"] = "PAID"
        updated["FullyPaidOnDate"] = payment["Date"]
    updated.update(stamp)
    txn.col("invoices")[invoice["InvoiceID"]] = updated


def _payment_account(txn: _Txn, reference: Any, errors: list[str]) -> dict[str, Any] | None:
    account = None
    if isinstance(reference, dict):
        if reference.get("AccountID"):
            account = txn.accounts_by_id.get(reference["AccountID"])
        elif reference.get("Code"):
            account = txn.accounts.get(str(reference["Code"]).upper())
    if account is None:
        errors.append("The Account of a payment must be given by an existing AccountID or Code")
    elif account.get("Type") != "BANK" and not account.get("EnablePaymentsToAccount"):
        errors.append(f"Account {account.get('Code')} is not a bank account and does not accept payments")
        return None
    return account


def _delete_payment(txn: _Txn, payment_id: str, data: dict[str, Any]) -> Outcome:
    payments = txn.col("payments")
    invoices = txn.col("invoices")
    payment = payments.get(payment_id)
    if payment is None:
        return Outcome(
            _echo(data, "PaymentID", None),
            [f"Payment with PaymentID {payment_id} was not found"],
            [],
            not_found=bool(txn.path_id),
        )
    if data.get("Status") != "DELETED":
        return Outcome(
            _echo(data, "PaymentID", payment),
            ["Payments cannot be edited; delete it (Status DELETED) and make a new one"],
            [],
        )
    if payment["Status"] == "DELETED":
        return Outcome(payment, [], [])
    stamp = txn.store.stamp()
    deleted = {**payment, "Status": "DELETED", **stamp}
    payments[payment_id] = deleted
    invoice = invoices.get(payment["Invoice"]["InvoiceID"])
    if invoice is not None:
        updated = dict(invoice)
        updated["AmountPaid"] = money(invoice["AmountPaid"] - payment["Amount"])
        updated["AmountDue"] = money(invoice["Total"] - updated["AmountPaid"] - invoice["AmountCredited"])
        updated["Payments"] = [p for p in invoice.get("Payments", []) if p["PaymentID"] != payment_id]
        if invoice["Status"] == "PAID":
            updated["Status"] = "AUTHORISED"
            updated.pop("FullyPaidOnDate", None)
        updated.update(stamp)
        invoices[invoice["InvoiceID"]] = updated
    return Outcome(deleted, [], [])
