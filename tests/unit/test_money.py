"""shared/money.py: one place amounts are read and rounded, one rule per purpose, never a silent 0."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.mapping.xero_documents import document_state
from shared.money import UnreadableAmount, cents, quantity, to_decimal, unit_price, xero_amount


def test_each_purpose_rounds_half_up_to_its_places():
    # Xero: 11.445 → 11.45 ("Rounding in Xero", one line of 76.30 at 15%), 19.125 → 19.13 (Xero staff)
    assert cents(Decimal("11.445")) == Decimal("11.45") and cents(Decimal("19.125")) == Decimal("19.13")
    assert unit_price(Decimal("1.23445")) == Decimal("1.2345")
    assert quantity(Decimal("2.50005")) == Decimal("2.5001")


@pytest.mark.parametrize("value", ["abc", "1.2.3", "NaN", "Infinity", True, [1], {"a": 1}])
def test_an_unreadable_amount_is_an_error_never_zero(value):
    with pytest.raises(UnreadableAmount):
        xero_amount(value, "Total")


def test_absent_is_zero_only_where_xero_leaves_zero_amounts_out():
    assert xero_amount(None) == Decimal("0.00") and xero_amount("") == Decimal("0.00")
    assert to_decimal(None) is None and to_decimal("  ") is None


def test_a_xero_document_with_an_unreadable_total_is_refused_not_read_as_zero():
    with pytest.raises(UnreadableAmount):
        document_state("Invoices", {"InvoiceID": "i", "Type": "ACCREC", "Status": "AUTHORISED", "Total": "n/a"})


@given(st.decimals(min_value=-10**9, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_decimals_and_their_text_read_the_same(value):
    assert to_decimal(value) == to_decimal(str(value)) == value
