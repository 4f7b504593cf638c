"""What one process holds of its organisation's rate window between two reservations, as plain state.

A block of send slots (spaced, valid until its end), in-flight permits, a pause and a member lease, each
with the loop-clock time it lapses; `absorb` reads a store's `Grant` into it. No awaits and no store:
`SharedWindow` waits on it and talks to the store around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from connectors.zoho.limits.window import Grant

#: (block id, slots used, seconds since its last send), as the store's `returned_block` takes it.
ReturnedBlock = tuple[int, int, float]


@dataclass
class HeldBlock:
    """A block of send slots granted to this process, as it spends them."""

    id: int | None
    left: int
    next_at: float
    spacing: float
    valid_until: float
    asked: float = 0.0  # when this block was asked for (the loop's clock)
    used: int = 0
    last_send: float = 0.0
    pending: int = 0  # slots taken whose call has not gone out yet (a token refresh, an intent write)

    def handed_back(self, now: float) -> ReturnedBlock:
        """(block id, slots used, seconds since its last send), as the store's `returned_block` takes it.
        A taken slot whose call has not gone out yet may still send until the block's end: then the block
        is handed back with its end kept (a negative idle time), never shrunk to before that send."""
        assert self.id is not None
        if self.pending:
            return (self.id, self.used, now - self.valid_until)
        return (self.id, self.used, now - self.last_send if self.used else now)

    def take(self, now: float) -> None:
        """Spend one slot at `now`; the next is due one spacing later (at once when unspaced)."""
        self.left -= 1
        self.used += 1
        self.pending += 1
        self.last_send = now
        self.next_at = max(self.next_at + self.spacing, now) if self.spacing else now

    def slot_done(self, now: float, *, sent: bool) -> None:
        """A taken slot's call went out (`sent`) or was given up; a late send moves the block's last send."""
        self.pending -= 1
        if sent:
            self.last_send = max(self.last_send, now)


@dataclass
class Holding:
    """This process's block, permits, pause and lease, with when each is next worth asking the store about."""

    fair_permits: int
    block: HeldBlock | None = None
    permits: int = 0
    paused_until: float = 0.0
    last_decrease: float = -math.inf
    slot_refresh_at: float = 0.0
    permit_refresh_at: float = 0.0
    renew_at: float = 0.0
    lease_until: float = 0.0
    window_open: bool = False  # the last reservation: granted in full, at once, with room left

    def usable(self, now: float) -> bool:
        b = self.block
        return b is not None and b.left > 0 and now < b.valid_until

    def open_now(self, now: float) -> bool:
        """No pause, a running lease, a permit, and either a slot due now or a last reservation granted in
        full, at once, with room left (see `SharedWindow.open_now`)."""
        if now < self.paused_until or now >= self.lease_until or self.permits == 0:
            return False
        b = self.block
        if b is not None and self.usable(now):
            return now >= b.next_at
        return self.window_open

    def slot_due(self, now: float, in_flight: int) -> HeldBlock | None:
        """The block whose next slot may be spent now (no pause, lease running, a permit free), or None."""
        b = self.block
        if not self.usable(now) or now < self.paused_until or now >= self.lease_until:
            return None
        if in_flight >= self.permits:
            return None
        assert b is not None
        return b if now >= b.next_at else None

    def wants_refresh(self, now: float, waiting: int, in_flight: int) -> bool:
        """True when the store is worth asking now: no usable block, fewer permits than the work wants, or
        the lease to renew while calls wait."""
        if now < self.paused_until:
            return False
        if not self.usable(now) and now >= self.slot_refresh_at:
            return True
        wanted = min(self.fair_permits, waiting + in_flight)
        if now >= self.permit_refresh_at and self.permits < wanted:
            return True
        return waiting > 0 and now >= self.renew_at

    def next_check(self, now: float, longest_sleep: float) -> float:
        """When something held may change: the pause ends, a refresh is due, the next slot is."""
        times = [now + longest_sleep, self.paused_until, self.slot_refresh_at, self.permit_refresh_at]
        if self.block is not None and self.usable(now):
            times.append(self.block.next_at)
        later = [t for t in times if t > now]
        return min(later) if later else now + 0.005

    def hand_back(self, now: float) -> ReturnedBlock | None:
        """Give up the block this process holds, if the store knows it; what to tell the store, or None."""
        b = self.block
        if b is None or b.id is None:
            return None
        self.block = None
        return b.handed_back(now)

    def absorb(
        self, grant: Grant, *, want: int, asked: float, replied: float, lease: float, permit_poll: float
    ) -> None:
        """Read the store's reply to a reservation asked at `asked` and answered at `replied`."""
        self.permits = grant.permits
        self.fair_permits = grant.fair_permits
        self.paused_until = replied + grant.paused_for if grant.paused_for else 0.0
        if math.isfinite(grant.since_decrease):
            self.last_decrease = max(self.last_decrease, replied - grant.since_decrease)
        if want:
            self.window_open = _open_after(grant, want)
        if grant.slots:
            self.block = HeldBlock(
                grant.block_id,
                grant.slots,
                replied + grant.start_in,
                grant.spacing,
                asked + grant.valid_for,
                asked,
            )
        self.slot_refresh_at = replied + grant.retry_in if want and not grant.slots else replied
        self.permit_refresh_at = replied + permit_poll
        self.renew_at = asked + lease / 2
        self.lease_until = asked + lease


#: A send spaced less than this after the last one counts as going out at once.
SHORT_WAIT_SECONDS = 0.05


def _open_after(grant: Grant, want: int) -> bool:
    """Granted in full, at once, unspaced, unpaused, with room left in the organisation's window."""
    return (
        grant.slots >= want
        and grant.start_in <= 0
        and grant.spacing < SHORT_WAIT_SECONDS
        and not grant.paused_for
        and grant.used_in_window < math.floor(grant.rate)
    )
