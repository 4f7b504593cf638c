"""The one rule that says whether a change needs a Zoho call, over plain values (`Ground` -> `Verdict`).

The policy decides every change through it, making the reads the rule asks for (`Next`); the replay's
bulk check and memo ask it with only the record and the map rows (`unchanged_without_reads`), and act
only on `NOTHING_TO_SEND`. So a replay ends `unchanged` only where the live policy would. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from consumer.entities.registry import spec_of
from consumer.entities.spec import ParentRecord, PlanInput
from consumer.model.events import ChangeEvent
from consumer.model.plan import Action, EntityState, MappingConfig, Plan
from consumer.pipeline.decision.entity_map import (
    newest_is_this_refused_state,
    older_than_applied,
    refused_before,
)
from consumer.pipeline.decision.row_images import is_partial, is_whole, state_digest


class Next(StrEnum):
    """What the rule found, in the order the policy's steps meet it."""

    STALE = "stale"  # older than what was applied: recorded `stale`
    FILL_IMAGE = "fill_image"  # a partial image: filled from reads first, then asked again
    REFUSED_BEFORE = "refused_before"  # a state Zoho refused, nobody asked to send again: `skipped`
    FIND_PARENT = "find_parent"  # the parent's Zoho record is not known yet (found, or synced first)
    READ_FACTS = "read_facts"  # the plan needs the spec's source reads first
    PLANNED = "planned"  # the plan says what to do: a call, a skip, or Zoho ahead
    NOTHING_TO_SEND = "nothing_to_send"  # planned NOOP: Zoho already holds this state


@dataclass(frozen=True, slots=True)
class Ground:
    """What the rule decides from: the change, its map row, the run's flags and what reads brought."""

    event: ChangeEvent
    state: EntityState | None
    mapping: MappingConfig
    explicit: bool = False  # a resync or a re-driven dead letter may send a state Zoho refused before
    ignore_stale: bool = False
    filled: bool = False  # the image was filled as far as reads can fill it
    parent_known: bool = False  # `parent` is what the reads found (None: no parent in Zoho)
    parent: ParentRecord | None = None
    facts: Mapping[str, Any] | None = None  # the spec's plan facts; None: not read yet


@dataclass(frozen=True, slots=True)
class Verdict:
    """The rule's answer: the next step, and the plan once one was made (`PLANNED`, `NOTHING_TO_SEND`)."""

    next: Next
    plan: Plan | None = None


def verdict(ground: Ground) -> Verdict:
    """The rule. Raises `MappingError` when the row cannot be mapped."""
    event, state = ground.event, ground.state
    if not ground.ignore_stale and older_than_applied(event, state):
        return Verdict(Next.STALE)
    if event.row is not None and is_partial(event) and not ground.filled:
        return Verdict(Next.FILL_IMAGE)
    if _refused_again(ground):
        return Verdict(Next.REFUSED_BEFORE)
    spec = spec_of(event.entity_type)
    if spec.parent is not None and not ground.parent_known:
        return Verdict(Next.FIND_PARENT)
    if ground.facts is None:
        return Verdict(Next.READ_FACTS)
    plan = spec.plan(PlanInput(event, state, ground.mapping, ground.parent, ground.facts))
    return Verdict(Next.NOTHING_TO_SEND if plan.action is Action.NOOP else Next.PLANNED, plan)


class _NeedsReads(Exception):
    """A spec's plan needs source reads: its outcome depends on more than the record and the map row."""


class NoLookups:
    """Source lookups for a plan that must not read: any read raises."""

    async def first_child_value(self, *args: Any) -> str | None:
        raise _NeedsReads


def _refused_again(ground: Ground) -> bool:
    # Only an entity with a refused state on record is compared with it (a digest costs a JSON dump).
    state, event = ground.state, ground.event
    if state is None or state.rejected is None or not is_whole(event):
        return False
    digest = state_digest(event.entity_type, event.row)  # type: ignore[arg-type]
    return refused_before(state, digest, explicit=ground.explicit)


def at_its_position(event: ChangeEvent, state: EntityState | None, *, explicit: bool) -> ChangeEvent:
    """A re-driven letter whose later images only repeated it (its 'failed' write-back's echo, a replay)
    is the newest state: it stands at the newest position, so it is not stale."""
    if explicit and older_than_applied(event, state) and newest_is_this_refused_state(event, state):
        assert state is not None
        return replace(event, lsn=state.last_lsn)
    return event


def row_leaves_nothing_to_look_up(state: EntityState | None) -> bool:
    """A map row a replay can decide from alone: the entity is in it, with no refused state to compare
    and no create intent to resolve (the policy's own steps handle those)."""
    return state is not None and state.rejected is None and not state.pending_create


def names_parent(event: ChangeEvent) -> bool:
    """True when the change's row names a parent that must be in Zoho first."""
    spec = spec_of(event.entity_type)
    return spec.parent is not None and spec.parent_id(event.row) is not None


async def unchanged_without_reads(
    event: ChangeEvent, state: EntityState | None, parent: ParentRecord | None, mapping: MappingConfig
) -> Plan | None:
    """The NOOP plan when the rule, asked with only the record, its map row and its parent's Zoho record
    as the map shows it (`parent`, None when not there), finds nothing to send; None when the policy's
    own steps must decide (a delete, a partial image, a parent to sync, reads to make, not mappable)."""
    if event.row is None or not row_leaves_nothing_to_look_up(state):
        return None
    if names_parent(event) and parent is None:
        return None  # the parent is synced first, under its own key: the pipeline's work
    ground = Ground(event, state, mapping, parent_known=True, parent=parent)
    try:
        facts = await spec_of(event.entity_type).plan_facts(NoLookups(), event, state)
        found = verdict(replace(ground, facts=facts))
    except Exception:  # noqa: BLE001 - not mappable, or needs reads: the policy decides and records it
        return None
    return found.plan if found.next is Next.NOTHING_TO_SEND else None
