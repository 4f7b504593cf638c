"""One Zoho organisation in the simulator: its records, its id counter and its request counters.

Zoho keeps every organisation apart: a record, an id and the per-minute, daily and concurrency limits
belong to one organisation, and a request names its organisation in the
`X-com-zoho-subscriptions-organizationid` header. The simulator serves the organisations in
`SimConfig.organization_id` and `SimConfig.other_organization_ids` the same way, so a test can fill one
and see another untouched. Each organisation hands out ids from its own range: an id of one is never
an id of another (asked of another, it "does not exist", as in Zoho).
"""

from __future__ import annotations

from collections import Counter, deque

from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.resources.customers import Customers
from connectors.zoho_sim.resources.invoices import Invoices
from connectors.zoho_sim.resources.items import Items
from connectors.zoho_sim.resources.payments import Payments
from connectors.zoho_sim.store import FIRST_ID, RecordStore

# The id ranges of the organisations, in their order in the config (Zoho's ids are long numbers that
# never repeat across organisations).
ID_RANGE = 1_000_000_000_000


class Organisation:
    """The records and counters of one organisation; resource operations take it as their subject."""

    def __init__(self, organization_id: str, config: SimConfig, position: int) -> None:
        self.organization_id = organization_id
        self.config = config
        db_path = (
            config.db_path if position == 0 or not config.db_path else f"{config.db_path}.{organization_id}"
        )
        self.store = RecordStore(db_path, first_id=FIRST_ID + position * ID_RANGE)
        self.customers = Customers(config, self.store)
        self.invoices = Invoices(config, self.store)
        self.items = Items(config, self.store)
        self.payments = Payments(config, self.store)
        self.reset_counters()

    def reset_counters(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.accepted_log: deque[float] = deque()  # accepted requests' times, for the per-window limit
        self.daily: Counter[str] = Counter()
        self.accepted = 0  # every accepted request, whatever its day
        self.last_accepted_at: float | None = None  # the clock's time of the latest (quiescence checks)
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_in_window = 0
        self.faults_played: Counter[str] = Counter()
        # 429s by the limit that refused them ("burst" is an injected one), for the simulation's checks.
        self.refusals: Counter[str] = Counter()

    def count(self, endpoint: str, status: int | str) -> None:
        self.calls[(endpoint, str(status))] += 1

    def release(self) -> None:
        self.in_flight -= 1


def organisation_ids(config: SimConfig) -> tuple[str, ...]:
    """The organisations the simulator serves, the default one first."""
    others = [o for o in config.other_organization_ids if o != config.organization_id]
    return (config.organization_id, *dict.fromkeys(others))
