"""The ``sugar-xero`` command line and its local stack (not deployed to Lambda)."""

# The one place the version is written: pyproject.toml reads it, the OpenAPI document carries it,
# and the README's changelog starts with it (tests/unit/test_version.py).
__version__ = "0.3.0"
