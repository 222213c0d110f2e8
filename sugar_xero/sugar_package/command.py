"""`sugar-xero sugar-package --out FILE.zip [--config MAPPING] [--rules BILLING] [--api-url URL]`:
build the Module Loadable Package that sets the CRM up for a configuration."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from shared.billing.rules import BillingRulesError, load_rules_file
from shared.mapping.settings import MappingConfigError, load_mapping_file
from shared.sugar.schema import HOOKS, mask_token, required_fields
from sugar_xero.sugar_package.build import build_package
from sugar_xero.sugar_package.invoices_module import XeroInvoicesModule


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sugar-xero sugar-package",
        description="Build a Sugar Module Loadable Package (Sugar 12-14; Professional, Enterprise, Sell) "
                    "with every custom field the mapping configuration and the billing rules name and, "
                    "with --api-url, the Web Logic Hooks that call the connector. Upload it in "
                    "Admin > Module Loader, then run `sugar-xero sugar-check`.")
    parser.add_argument("--out", type=Path, required=True, help="the .zip to write")
    parser.add_argument("--config", default=None, help="mapping configuration (default $MAPPING_CONFIG or the "
                                                       "shipped defaults)")
    parser.add_argument("--rules", default=None, help="billing rules (default $BILLING_RULES or the shipped file)")
    parser.add_argument("--api-url", default=None,
                        help="the connector's API root (the stack's ApiUrl); adds the Web Logic Hooks")
    parser.add_argument("--token", default=None,
                        help="the CRM token the hooks send as ?token= (default $CRM_TOKEN); the package "
                             "then holds it: keep the file as you keep the secret")
    parser.add_argument("--version", default="1.0.0", help="the package version Module Loader shows")
    parser.add_argument("--no-invoices-module", action="store_true",
                        help="leave the Xero Invoices module (every Xero invoice, bill and credit note as a "
                             "CRM record) out of the package")
    return parser


def run(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        mapping = load_mapping_file(args.config)
        rules = load_rules_file(args.rules)
    except (MappingConfigError, BillingRulesError) as error:
        print(f"not built: {error}", file=out)
        return 1
    hooks = []
    if args.api_url:
        parsed = urlparse(args.api_url)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            print(f"not built: --api-url {args.api_url!r} is not an http(s) URL", file=out)
            return 1
        token = args.token or os.environ.get("CRM_TOKEN")
        if not token:
            print("not built: the hooks need the CRM token: give --token or set CRM_TOKEN", file=out)
            return 1
        hooks = [(hook, hook.url(args.api_url, token)) for hook in HOOKS]
    extra = None if args.no_invoices_module else XeroInvoicesModule()
    package = build_package(required_fields(mapping, rules), hooks=hooks, version=args.version, extra=extra)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(package.zip_bytes())
    print(f"wrote {args.out}: {len(package.fields)} custom fields on "
          f"{len({f.module for f in package.fields})} modules, {len(package.hooks)} Web Logic Hooks"
          + (f", module(s) {', '.join(package.modules)}" if package.modules else ""), file=out)
    for item in package.fields:
        print(f"  {item.module:<18} {item.name:<28} {item.type:<14}{' read-only' if item.readonly else ''}",
              file=out)
    for hook, url in package.hooks:
        print(f"  hook {hook.module} {hook.event} → {mask_token(url)}", file=out)
    return 0
