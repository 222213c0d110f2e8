"""Xero adapters: OAuth2 token management, the Accounting API client, webhook signatures."""
