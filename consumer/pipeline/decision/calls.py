"""One planned Zoho call, made and turned into its outcome: `synced`, `zoho_ahead` or refused.

The call is retried while PostgreSQL is briefly gone (a restart): safe, because creates are guarded by
the intent and the natural-key lookup. Zoho's refusal becomes a `Refused` (dead-lettered by the policy);
a refusal of our credentials stops the sync.
"""

from __future__ import annotations

from typing import Any, Final

import structlog

from connectors import clock
from consumer.entities.spec import ParentRecord
from consumer.model.call_errors import CallError, CredentialsRejected, SyncedMeanwhile, ZohoAhead
from consumer.model.events import ChangeEvent, Op
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import EntityState, Plan
from consumer.pipeline.decision import entity_map
from consumer.pipeline.decision.decisions import Decision, Refused, credentials_refused, remembered_refusal
from consumer.pipeline.decision.no_call import NoCallOutcomes
from consumer.pipeline.decision.nothing_to_send import Ground
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.effects.apply import Applied, Applier
from consumer.pipeline.effects.dead_lettering import Refusal
from consumer.pipeline.effects.write_back import WriteBack
from consumer.pipeline.intake.scheduler import WorkItem

log = structlog.get_logger(__name__)

#: How often a change is decided again after another process synced its entity first (`SyncedMeanwhile`).
DECIDED_AGAIN_ROUNDS: Final = 3

NEVER_REACHED_ZOHO: Final = "its create never reached Zoho: nothing there to void or mark inactive"


class PlannedCall:
    """Makes a plan's call and says what it became."""

    def __init__(self, recorder: OutcomeRecorder, applier: Applier, no_call: NoCallOutcomes) -> None:
        self.recorder = recorder
        self._applier = applier
        self._no_call = no_call

    async def apply(self, event: ChangeEvent, plan: Plan, state: EntityState | None) -> Applied:
        """One planned call. The client keeps its token and daily budget in PostgreSQL: if the database is
        briefly gone (a restart), the call is retried. When the entity map showed no intent, the first
        attempt skips the intent read; a failed attempt may have written one, so later attempts read it."""
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._applier.apply(
                event.entity_type,
                event.entity_id,
                plan,
                event.row,
                state.zoho_id if state else None,
                intent_left=(state is not None and state.pending_create) or attempts > 1,
                version=state.version if state else None,
            )

        return await self.recorder.retrying(attempt, what="zoho call (database unavailable)")

    async def make(
        self, item: WorkItem, ground: Ground, plan: Plan, started: float, *, decided_again: int = 0
    ) -> Decision:
        """The call of a plan that makes one (planned from `ground`), and its outcome. `SyncedMeanwhile`
        (nothing sent) is raised for the policy to decide the change again, `DECIDED_AGAIN_ROUNDS` times at
        most (other processes writing the entity all the while: it is refused as unavailable)."""
        event, state, metrics = ground.event, ground.state, self.recorder.metrics
        try:
            applied = await self.apply(event, plan, state)
        except ZohoAhead as found:
            metrics.zoho_calls(found.calls)
            metrics.zoho_ahead_found(event.entity_type.value)
            log.warning(
                "Zoho is ahead: not sent",
                entity=str(event.entity_type),
                entity_id=event.entity_id,
                zoho_status=found.status,
            )
            update = entity_map.zoho_ahead(event, state, plan, found)
            return self._no_call.zoho_ahead(
                item, event, found.reason, found.zoho_id, update, found, str(plan.action)
            )
        except CredentialsRejected as exc:
            raise credentials_refused(exc) from exc
        except CallError as exc:
            if isinstance(exc, SyncedMeanwhile) and decided_again < DECIDED_AGAIN_ROUNDS:
                raise
            refusal = Refusal.of_error(f"{plan.action}: {exc}", exc)
            metrics.zoho_calls(refusal.attempts)
            return Refused(refusal, event.op is not Op.DELETE, remembered_refusal(event, state))
        metrics.zoho_calls(applied.calls)
        self._no_call.moved_on()
        return await self._outcome(item, event, state, plan, ground.parent, started, applied)

    async def _outcome(
        self,
        item: WorkItem,
        event: ChangeEvent,
        state: EntityState | None,
        plan: Plan,
        parent: ParentRecord | None,
        started: float,
        applied: Applied,
    ) -> Outcome:
        metrics = self.recorder.metrics
        done = (event.entity_type, event.entity_id)
        if applied.zoho_id is None:  # a delete (or void) whose unresolved create never reached Zoho
            metrics.outcome(SyncOutcome.SKIPPED)
            row = self.recorder.row(item, SyncOutcome.SKIPPED, operation="none", error=NEVER_REACHED_ZOHO)
            return Outcome([row], clear_intent=done)
        metrics.outcome(SyncOutcome.SYNCED)
        if event.source_ts_ms:
            metrics.latency(clock.wall() - event.source_ts_ms / 1000)
        row = self.recorder.row(
            item,
            SyncOutcome.SYNCED,
            operation=str(plan.action),
            zoho_id=applied.zoho_id,
            http_status=applied.http_status,
            attempts=applied.attempts,
            duration_ms=int((clock.monotonic() - started) * 1000),
            error=applied.note,  # how the record was found: adopted by stored id, by which rule, created
        )
        write_back = None
        if event.op is not Op.DELETE:
            write_back = WriteBack(event.entity_type, event.entity_id, applied.zoho_id, "synced")
        synced = entity_map.synced(event, plan, applied)
        update = await self._no_call.with_memo(item, state, synced, parent, True)
        return Outcome([row], update, write_back, done)
