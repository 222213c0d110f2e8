"""Sync state in DynamoDB: jobs, CRM ⇄ Xero mappings, tokens, connections, watermarks."""
