"""The invoice entity: its spec, payload, status stages, item catalogue, Zoho calls and comparison."""
