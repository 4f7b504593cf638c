"""A caller's permission to send, withdrawn when the work it does is no longer the caller's to do.

The sync sets a `SendGuard` for each unit of work (one entity's events); the client checks it right
before every HTTP request, after every wait (daily budget, rate window, 429 pause, token back-off). A
revoked guard makes the next send raise `SendRevoked` instead of calling Zoho, and tells the caller
whether a call already went out (then that work is recorded, not abandoned).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from connectors.zoho.wire.at_most_once import in_turn


class SendRevoked(Exception):
    """Raised instead of sending when the caller withdrew permission (e.g. its partition was revoked)."""


@dataclass
class SendGuard:
    revoked: bool = False
    sent: int = 0  # requests that went out under this guard

    def before_send(self) -> None:
        if self.revoked:
            raise SendRevoked("this work was withdrawn before its Zoho call (its partition was revoked)")
        self.sent += 1

    @property
    def abandonable(self) -> bool:
        """True while nothing went out yet: the work can be cancelled without losing a Zoho call."""
        return self.sent == 0


CURRENT_GUARD: ContextVar[SendGuard | None] = ContextVar("zoho_send_guard", default=None)

#: Run once per attempt of every write (not a read), right before it is sent: the sync's check that the
#: entity is still its own to write (`consumer.pipeline.effects.write_lease`); it raises to send nothing.
BEFORE_WRITE: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("zoho_before_write", default=None)


@contextmanager
def before_each_write(step: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """Every write the block sends asks `step` first (after what an enclosing block asks)."""
    reset = BEFORE_WRITE.set(in_turn(BEFORE_WRITE.get(), step))
    try:
        yield
    finally:
        BEFORE_WRITE.reset(reset)
