"""Pydantic models of what arrives (Sugar hooks, the connector's own documents, Xero webhooks)
and of the connector's own records (jobs)."""
