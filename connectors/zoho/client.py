"""The async Zoho Billing client used by the consumer: customers, invoices, payments and items.

`ZohoClient` is the one object callers hold: the calls of each Billing resource (`customers.py`,
`invoices.py`, `payments.py`, `items.py`) on the one request path of `transport.py`, which gates every
attempt on the daily budget, the token and the organisation's shared window, and retries by family.
"""

from __future__ import annotations

from connectors.zoho.resources.customers import CustomerEndpoints
from connectors.zoho.resources.items import ItemEndpoints
from connectors.zoho.resources.payments import PaymentEndpoints


class ZohoClient(CustomerEndpoints, PaymentEndpoints, ItemEndpoints):
    """One organisation's Zoho Billing API: `async with ZohoClient(config) as client: ...`."""

    def __repr__(self) -> str:
        return f"<ZohoClient org={self.config.organization_id!r} api={self.config.api_base!r}>"
