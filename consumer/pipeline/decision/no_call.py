"""The outcomes of changes that make no Zoho call (stale, unchanged, Zoho ahead, known by a replay memo),
and the replay memo each map row the policy writes carries (`consumer.pipeline.replay.memo`).

Stale outcomes are counted in a row: a long streak means the source moved backwards (a restored
database), which is logged as an error naming the fix; any other outcome ends the streak.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from consumer.entities.spec import ParentRecord
from consumer.jobs.health import MOVED_BACK_MIN_STALE
from consumer.model.call_errors import ZohoAhead
from consumer.model.events import ChangeEvent
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import EntityState, Plan
from consumer.pipeline.decision import entity_map
from consumer.pipeline.decision.decisions import PolicyOptions
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.rows import EntityUpdate, OutcomeRow
from consumer.pipeline.intake.scheduler import WorkItem
from consumer.pipeline.replay.memo import mapping_fingerprint, memo_for, row_after

log = structlog.get_logger(__name__)


class NoCallOutcomes:
    """Builds the outcome of a change that needs no call; shared by the policy and the replay's bulk check."""

    def __init__(self, options: PolicyOptions, recorder: OutcomeRecorder) -> None:
        self.options = options
        self.recorder = recorder
        self._stale_streak = 0  # stale outcomes in a row: a long streak means the source moved backwards
        self._fingerprint: str | None = None
        self._fingerprint_known = False

    @property
    def memo_fingerprint(self) -> str | None:
        """The mapping's fingerprint for replay memos (`replay.memo.mapping_fingerprint`): read once, at
        first use, when every spec is registered; None turns memos off."""
        if not self._fingerprint_known:
            self._fingerprint = mapping_fingerprint(self.options.mapping, self.options.payload_settings)
            self._fingerprint_known = True
        return self._fingerprint

    def moved_on(self) -> None:
        """A change was applied (or found in step): the source is not moving backwards."""
        self._stale_streak = 0

    def stale(self, item: WorkItem, event: ChangeEvent, state: EntityState | None) -> Outcome:
        self.recorder.metrics.outcome(SyncOutcome.STALE)
        self._stale_streak += 1
        if self._stale_streak in (MOVED_BACK_MIN_STALE, 1000 * MOVED_BACK_MIN_STALE):
            log.error(
                "source positions moved backwards for every entity: was the database restored into a new"
                " cluster? Changes are being skipped as stale; run `zoho-cdc backfill --resync`",
                stale_in_a_row=self._stale_streak,
            )
        assert state is not None
        error = f"source lsn {event.lsn} older than applied {state.last_lsn}"
        return Outcome([self.recorder.row(item, SyncOutcome.STALE, error=error)])

    def zoho_ahead(
        self,
        item: WorkItem,
        event: ChangeEvent,
        reason: str,
        zoho_id: str | None,
        update: EntityUpdate,
        found: ZohoAhead | None = None,
        operation: str = "none",
    ) -> Outcome:
        """The outcome of a change Zoho is ahead of: recorded `zoho_ahead`, no dead letter, the entity map on
        Zoho's status, and the source row left (or put back) `synced`: nothing is wrong with it."""
        self.recorder.metrics.outcome(SyncOutcome.ZOHO_AHEAD)
        self.moved_on()
        row = self.recorder.row(
            item,
            SyncOutcome.ZOHO_AHEAD,
            operation=operation,
            zoho_id=zoho_id,
            error=reason,
            attempts=found.calls if found else 0,
            http_status=found.http_status if found else None,
        )
        return Outcome([row], update, entity_map.missing_write_back(event, zoho_id))

    async def unchanged(
        self,
        item: WorkItem,
        event: ChangeEvent,
        state: EntityState | None,
        plan: Plan,
        parent: ParentRecord | None,
    ) -> Outcome:
        """The outcome of a change Zoho already matches (the rule found nothing to send); a replay's bulk
        check of its newest records (`consumer.pipeline.replay.bulk_check`) ends the same way."""
        self.recorder.metrics.outcome(SyncOutcome.UNCHANGED)
        self.moved_on()
        zoho_id = state.zoho_id if state else None
        row = self.recorder.row(item, SyncOutcome.UNCHANGED, operation="none", zoho_id=zoho_id)
        update = entity_map.unchanged(event, state, plan)
        if update is not None:
            update = await self.with_memo(item, state, update, parent, False)
        elif state is not None:
            update = await self._memo_only(item, state, parent)
        return Outcome([row], update, entity_map.missing_write_back(event, zoho_id))

    async def _memo_only(
        self, item: WorkItem, state: EntityState, parent: ParentRecord | None
    ) -> EntityUpdate | None:
        """A map row that already says everything but holds no memo of this record (written before memos
        existed, or under another mapping): the row is written again as it is, with the memo, so the next
        replay knows the record. None when no memo can be stored or the row holds it already."""
        if state.rejected is not None:
            return None  # the row's write would clear the refusal on record
        event = item.event
        assert event is not None
        kept = EntityUpdate(
            event.entity_type,
            event.entity_id,
            state.zoho_id,
            state.payload_hash,
            state.last_lsn,
            state.status,
            None,
        )
        update = await self.with_memo(item, state, kept, parent, False)
        return None if update.replay_memo in (None, state.replay_memo) else update

    def already_applied(self, row: OutcomeRow) -> Outcome:
        """The outcome of a replayed record whose replay memo matches: what `unchanged` gives for it,
        known without decoding or planning it (`consumer.pipeline.replay.memo`)."""
        self.recorder.metrics.outcome(SyncOutcome.UNCHANGED)
        self.recorder.metrics.replay_already_applied()
        self.moved_on()
        return Outcome([row])

    async def with_memo(
        self,
        item: WorkItem,
        state: EntityState | None,
        update: EntityUpdate,
        parent: ParentRecord | None,
        intent_cleared: bool,
    ) -> EntityUpdate:
        """The map row with the replay memo of the record that leaves it (`replay.memo.memo_for`): of the
        record alone, as a replay decodes it. A resync's state is what Zoho's listing shows, not the
        stored row, so it leaves none."""
        if self.options.resync or item.event is None:
            return update
        mapping = self.options.mapping
        after = row_after(state, update, intent_cleared=intent_cleared)
        memo = await memo_for(self.memo_fingerprint, item.event, item.record.value, after, parent, mapping)
        return update if memo is None else replace(update, replay_memo=memo)
