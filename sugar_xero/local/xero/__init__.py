"""The Xero emulator: a thin layer over the ``localstack-xero`` package (``xero_local``).

Import the public API from ``sugar_xero.local.xero_emulator``.
"""
