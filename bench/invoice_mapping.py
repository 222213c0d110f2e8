"""Mapping speed (invoices issue): Sugar quotes mapped and validated per second ÷ the same
payloads through a plain ``json.loads``/``json.dumps`` round trip. Target: at least 0.2.

"Mapped and validated" is the whole path a quote takes in the worker, minus the network: the hook
body parsed and validated (``QuoteHook``), its bundles read, the trade document built and
validated (``SalesInvoiceDocument``), Xero's body and arithmetic (``to_xero_document``) and the
JSON sent to Xero (``encode_json``). Both sides run interleaved, best of several rounds, so a busy
machine slows both alike.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from bench.report import Row

ROUNDS = 7
PER_ROUND = 400
TARGET = 0.2


def _fixtures() -> tuple[str, str]:
    from sugar_xero.xero_spec import repository_root

    sugar = repository_root().parent / "shared" / "fixtures" / "sugar"
    return (sugar / "quote_closed_accepted.json").read_text(), (sugar / "quote_product_bundles.json").read_text()


def _best_rate(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(PER_ROUND):
        work()
    return PER_ROUND / (time.perf_counter() - started)


def run() -> list[Row]:
    from shared.mapping.invoices import to_xero_document
    from shared.mapping.settings import MappingConfig
    from shared.mapping.sugar_quotes import quote_documents
    from shared.models.sugar import QuoteHook
    from shared.xero.client import encode_json

    hook_text, bundles_text = _fixtures()
    config = MappingConfig()
    rates = {"OUTPUT": Decimal("9"), "EXEMPTOUTPUT": Decimal("0")}
    today = dt.date(2026, 11, 27)

    def mapped() -> bytes:
        hook = QuoteHook.model_validate_json(hook_text)
        bundles = json.loads(bundles_text)["records"]
        (document,), _ = quote_documents(hook.data, bundles, config, deleted=False, item_codes={})
        body = to_xero_document(document, config, contact_id="5b0e2c0c-4a0e-4a39-9c4e-0d6b0c3b7f11",
                                tax_rates=rates, today=today).body
        return encode_json({"Invoices": [body]})

    def plain() -> tuple[str, str]:
        return json.dumps(json.loads(hook_text)), json.dumps(json.loads(bundles_text))

    mapped(), plain()  # warm caches and imports
    mapped_rates, plain_rates = [], []
    for _ in range(ROUNDS):
        mapped_rates.append(_best_rate(mapped))
        plain_rates.append(_best_rate(plain))
    ratio = max(mapped_rates) / max(plain_rates)
    return [Row("5", "mapping speed: quote hook + lines → validated Xero invoice JSON",
                f"{max(mapped_rates):,.0f} quotes/s vs {max(plain_rates):,.0f} plain JSON round trips/s",
                ratio, f"≥ {TARGET}", ratio >= TARGET)]


if __name__ == "__main__":
    from bench.report import render

    print(render(run()))
    print(Path(__file__).name)
