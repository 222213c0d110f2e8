"""The ``sugar-xero`` command line and its local stack (not deployed to Lambda)."""
