"""The calls of each Billing resource: customers, invoices, items, payments."""
