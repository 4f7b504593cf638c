"""The values the event policy works with: its options, and what each change's decision ends in.

A decision is an `Outcome` (recorded as it is) or `Refused` (the record is dead-lettered, and written);
Zoho refusing our credentials is neither: it stops the sync (`credentials_refused`), no offset moves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consumer.model.call_errors import CredentialsRejected
from consumer.model.events import ChangeEvent
from consumer.model.plan import EntityState, MappingConfig
from consumer.pipeline.decision import entity_map
from consumer.pipeline.decision.row_images import is_whole, state_digest
from consumer.pipeline.durability.recording import Outcome
from consumer.pipeline.durability.rows import EntityUpdate
from consumer.pipeline.effects.dead_lettering import Refusal
from consumer.pipeline.intake.scheduler import FatalSyncError


@dataclass(frozen=True, slots=True)
class Refused:
    """A decision to dead-letter the record; `entity` remembers the refused state."""

    refusal: Refusal
    write_back: bool = False
    entity: EntityUpdate | None = None


Decision = Outcome | Refused


@dataclass(frozen=True)
class PolicyOptions:
    """What the policy needs of the run's settings."""

    mapping: MappingConfig
    resync: bool  # ignore stored payload hashes and check every entity against Zoho
    ignore_stale: bool
    dlq_topic: str
    topic_prefix: str
    payload_settings: tuple[tuple[str, object], ...] = ()  # part of the replay memo's fingerprint


def credentials_refused(exc: CredentialsRejected) -> FatalSyncError:
    return FatalSyncError(
        f"Zoho refused our credentials ({exc}); fix ZOHO_REFRESH_TOKEN / ZOHO_CLIENT_ID / "
        "ZOHO_CLIENT_SECRET and restart: no offsets were advanced."
    )


def remembered_refusal(event: ChangeEvent, state: EntityState | None) -> EntityUpdate | None:
    """The map row remembering this state as refused, for when Zoho (or the mapping) refuses it: None
    when the image is not whole (a partial state cannot be told apart later)."""
    digest = state_digest(event.entity_type, event.row) if is_whole(event) else None  # type: ignore[arg-type]
    return entity_map.rejection(event, state, digest)


def planned_from(decision: Decision, state: EntityState | None) -> Decision:
    """The decision, its map write marked as decided from the version of `state` (the map row read):
    when another process wrote the row in between, the store cannot trust what either says Zoho holds
    (`EntityUpdate.planned_version`). A decision without a map row to read writes unconditionally."""
    entity = decision.entity
    if entity is None or state is None or state.version is None or entity.planned_version is not None:
        return decision
    return replace(decision, entity=replace(entity, planned_version=state.version))
