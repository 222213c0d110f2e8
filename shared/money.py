"""Money and quantities: the one place amounts are read and rounded, one rule per purpose.

Every amount is a ``Decimal``, never a float. Xero's answers are parsed with
``json.loads(..., parse_float=Decimal)`` (``shared.xero.client.parse_json``) and Sugar's the same way
(``shared.sugar.transport``), so what arrives here is already exact.

Rounding, each half up ("Rounding in Xero", developer.xero.com/documentation/guides/how-to-guides/
rounding-in-xero: line amounts and per-line tax to two places, then summed):
- ``cents``: amounts Xero keeps to the cent (line amounts, per-line tax, totals, payments);
- ``unit_price``: unit prices to 4 places (what Xero keeps when asked with ``unitdp=4``);
- ``quantity``: quantities to 4 places (Xero's Quantity precision).

An amount that cannot be read is an error (``UnreadableAmount``), never a silent 0.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
UNIT = Decimal("0.0001")
ZERO = Decimal("0.00")


class UnreadableAmount(ValueError):
    """A value that should be an amount is not one; the message names it."""


def to_decimal(value: Any, what: str = "amount") -> Decimal | None:
    """A Decimal from a JSON number (int, Decimal) or text; None for None or "" (absent).
    Floats are taken by their shortest repr (``0.1`` is 0.1), bools and anything else refused."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise UnreadableAmount(f"{what} {value!r} is not an amount")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip().replace(",", "")) if isinstance(value, str) else Decimal(str(value))
        except InvalidOperation as error:
            raise UnreadableAmount(f"{what} {value!r} is not an amount") from error
    else:
        raise UnreadableAmount(f"{what} {value!r} is not an amount")
    if not number.is_finite():
        raise UnreadableAmount(f"{what} {value!r} is not a finite amount")
    return number


def cents(value: Decimal) -> Decimal:
    """An amount to the cent, half up (Xero's rounding of line amounts, tax and totals)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def unit_price(value: Decimal) -> Decimal:
    """A unit price to 4 places, half up (Xero's precision with ``unitdp=4``)."""
    return value.quantize(UNIT, rounding=ROUND_HALF_UP)


def quantity(value: Decimal) -> Decimal:
    """A quantity to 4 places, half up (Xero's precision for Quantity)."""
    return value.quantize(UNIT, rounding=ROUND_HALF_UP)


def xero_amount(value: Any, what: str = "amount") -> Decimal:
    """An amount from a Xero answer, to the cent. Xero leaves out amounts that are zero on some
    documents (AmountCredited on a new invoice), so absent is 0.00; unreadable raises."""
    number = to_decimal(value, what)
    return ZERO if number is None else cents(number)
