"""Adapters to outside systems: the Zoho Billing client and its simulator."""
