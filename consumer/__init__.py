"""zoho-cdc: keeps Zoho Billing in step with PostgreSQL through Debezium change events."""

__version__ = "0.1.0"
