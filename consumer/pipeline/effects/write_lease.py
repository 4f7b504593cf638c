"""A write to Zoho goes out only while the entity is still this process's to write.

Key locks order one process's work on an entity; a backfill or a reprocess beside the live sync is
another process. Both may plan a write of one entity against the same map row, from different events:
sent together, the older state could land last while the map keeps the newer hash, and nothing would
ever put Zoho right (simulation seeds 196 and 1079). So right before each write request (once its rate
window slot is held), the sync takes the entity's write lease (`WriteLeases.claim`):

- only while the map row is still the version the plan was made from; when it moved on, another
  process synced the entity meanwhile, and the change is decided again against its row
  (`SyncedMeanwhile`: stale when that row is newer);
- only while no other process has a write of it in flight (`LeaseHeld`): this one waits a call's
  deadline, and takes the lease over if it stood unchanged that long (its holder died mid-call).

Each attempt renews the lease, so a holder that is retrying is never taken over while it sends. The
outcome's map write releases it (`EntityUpdate.lease`); a call that fails gives it back. An entity
without a map row has no lease: its create is claimed by its intent (`SyncStore.claim_create`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.zoho.send_guard import before_each_write
from consumer.model.call_errors import SyncedMeanwhile
from consumer.model.events import EntityType


class LeaseHeld(Exception):
    """Raised instead of sending a write while another process's write of the entity is in flight;
    `lease` is that write's token. Nothing was sent by this attempt."""

    def __init__(self, what: str, lease: str | None) -> None:
        super().__init__(f"{what}: another process is writing it to Zoho")
        self.lease = lease


class Leases(Protocol):
    async def claim(
        self, entity_type: EntityType, entity_id: str, *, version: int, holding: str | None
    ) -> str | None: ...

    async def held(self, entity_type: EntityType, entity_id: str) -> tuple[int, str | None] | None: ...

    async def release(self, entity_type: EntityType, entity_id: str, lease: str) -> None: ...


@dataclass
class WriteLease:
    """One apply's lease of one entity, planned from the map row's `version`."""

    leases: Leases
    entity_type: EntityType
    entity_id: str
    version: int
    token: str | None = None  # ours, once a write was claimed
    taking_over: str | None = None  # a lease seen unchanged for a call's deadline: its holder is gone

    @property
    def what(self) -> str:
        return f"{self.entity_type.value} {self.entity_id}"

    def in_force(self) -> AbstractContextManager[None]:
        """Every write the block sends asks `before_write` first."""
        return before_each_write(self.before_write)

    async def before_write(self) -> None:
        for _ in range(2):  # a second claim when the lease was let go between the claim and the read
            claimed = await self.leases.claim(
                self.entity_type, self.entity_id, version=self.version, holding=self.token or self.taking_over
            )
            if claimed is not None:
                self.token, self.taking_over = claimed, None
                return
            if self.token is not None:  # ours stood still past a deadline (a long back-off) and was taken
                raise SyncedMeanwhile(f"{self.what}: another process took its write over; decided again")
            holder = await self._holder()
            if holder is not None:
                raise LeaseHeld(self.what, holder)
            self.taking_over = None
        raise LeaseHeld(self.what, None)

    async def _holder(self) -> str | None:
        """The lease of the write in flight (None: none), once the map row is known not to have moved on
        from the plan's version; else `SyncedMeanwhile`."""
        held = await self.leases.held(self.entity_type, self.entity_id)
        if held is None or held[0] != self.version:
            raise SyncedMeanwhile(f"{self.what}: another process synced it meanwhile; decided again")
        return held[1]

    async def waited(self, held: LeaseHeld) -> None:
        """After a call's deadline spent waiting on `held`: take it over if it did not move since."""
        holder = await self._holder()
        self.taking_over = holder if holder is not None and holder == held.lease else None

    async def give_back(self) -> None:
        """The call failed: no outcome write releases the lease, so it is given back now (best effort:
        a lease left behind is taken over after a deadline)."""
        if self.token is None:
            return
        try:
            await self.leases.release(self.entity_type, self.entity_id, self.token)
        except Exception:  # noqa: BLE001, S110 - see above
            pass


def lease_for(store: Any, entity_type: EntityType, entity_id: str, version: int | None) -> WriteLease | None:
    """The lease an apply planned from map row `version` writes under; None without a map row."""
    leases = getattr(store, "leases", None)
    if version is None or leases is None:
        return None
    return WriteLease(leases, entity_type, entity_id, version)
