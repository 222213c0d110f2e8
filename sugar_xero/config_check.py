"""`sugar-xero config-check [FILE]`: validate a mapping configuration before deploying it."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from shared.mapping.settings import DEFAULT_PATH, MappingConfigError, load_mapping_file


def run(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="sugar-xero config-check",
        description="Validate a mapping configuration (default: $MAPPING_CONFIG, else the shipped "
                    "defaults). Exit 0 when it can be used, 1 with what to change when not.")
    parser.add_argument("file", nargs="?", default=None, help="the YAML file to check")
    args = parser.parse_args(argv)
    try:
        mapping = load_mapping_file(args.file)
    except MappingConfigError as error:
        print(f"not usable: {error}", file=out)
        return 1
    defaults = mapping.defaults
    print(f"ok: {args.file or 'MAPPING_CONFIG or ' + str(DEFAULT_PATH)}", file=out)
    print(f"  contacts: name clash → {defaults.contacts.name_conflict}, archived → "
          f"{defaults.contacts.archived_contact}, Sugar Contacts as {defaults.contacts.sugar_contacts_as}",
          file=out)
    print(f"  catalogue: sales {defaults.catalogue.sales_account_code}, purchases "
          f"{defaults.catalogue.purchase_account_code}", file=out)
    print(f"  write-back: {'on' if defaults.write_back.enabled else 'off'} "
          f"({len(defaults.write_back.fields)} fields)", file=out)
    if mapping.tenants:
        print(f"  overrides for {len(mapping.tenants)} organisation(s): {', '.join(sorted(mapping.tenants))}",
              file=out)
    return 0
