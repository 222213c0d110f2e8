"""Pure functions between CRM shapes, the connector's documents and Xero bodies. No I/O here."""
