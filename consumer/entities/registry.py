"""The registry of synced entities: one `EntitySpec` per source table, looked up by entity or topic.

The built-in specs (customers, invoices) are registered when `consumer.entities` is imported; a test or
an extension registers its own with `register`. Looking up an entity without a spec raises.
"""

from __future__ import annotations

from collections.abc import Iterator

from consumer.entities.comparison import EntityComparison
from consumer.entities.customers import spec as customers
from consumer.entities.invoices import spec as invoices
from consumer.entities.spec import EntitySpec
from consumer.model.events import DecodeError, EntityType

_SPECS: dict[EntityType, EntitySpec] = {}
# What `specs()` and `entity_for_topic` derive from _SPECS, kept until the registry changes: every
# record decoded asks for its topic's entity, so the lookups are dictionary reads, not loops.
_ORDERED: list[EntitySpec] | None = None
_BY_TOPIC: dict[tuple[str, str], EntityType] = {}


def register(spec: EntitySpec) -> EntitySpec:
    """Add (or replace) the spec of an entity; returns it."""
    _SPECS[spec.entity] = spec
    _changed()
    return spec


def unregister(entity: EntityType) -> None:
    """Remove an entity's spec and, unless it is a built-in one, its name (tests register their own)."""
    _SPECS.pop(entity, None)
    EntityType.forget(entity)
    _changed()


def _changed() -> None:
    global _ORDERED
    _ORDERED = None
    _BY_TOPIC.clear()


def spec_of(entity: EntityType | str) -> EntitySpec:
    spec = _SPECS.get(entity)  # type: ignore[call-overload]  # an entity is the string of its name
    if spec is not None:
        return spec
    try:
        return _SPECS[EntityType(entity)]
    except (KeyError, ValueError):  # an entity never defined, or defined without a spec
        raise LookupError(f"no spec is registered for entity {entity!r}") from None


def specs() -> Iterator[EntitySpec]:
    """Every registered spec, parents before their children (the order a repair must follow)."""
    global _ORDERED
    if _ORDERED is None:
        _ORDERED = _parents_first(list(_SPECS.values()))
    return iter(_ORDERED)


def _parents_first(pending: list[EntitySpec]) -> list[EntitySpec]:
    done: list[EntitySpec] = []
    while pending:
        ready = [s for s in pending if s.parent is None or s.parent.entity in {d.entity for d in done}]
        if not ready:  # a parent that is not registered: keep the rest in registration order
            ready = pending[:1]
        done += ready
        pending = [s for s in pending if s not in ready]
    return done


def registered() -> list[EntityType]:
    """The entities with a spec, parents before their children."""
    return [spec.entity for spec in specs()]


def source_topics(topic_prefix: str) -> tuple[str, ...]:
    """The Debezium topics of every registered entity, parents first: what the live sync subscribes to."""
    return tuple(spec.entity.topic(topic_prefix) for spec in specs())


def comparison_of(entity: EntityType) -> EntityComparison:
    """How reconcile and a resync compare the entity with Zoho; raises for an entity that has none."""
    comparison = spec_of(entity).comparison
    if comparison is None:
        raise LookupError(f"entity {entity} has no comparison with Zoho: it cannot be reconciled")
    return comparison


def entity_for_topic(topic: str, *, topic_prefix: str) -> EntityType:
    """The entity a Debezium topic carries, or DecodeError for any other topic."""
    entity = _BY_TOPIC.get((topic_prefix, topic))
    if entity is not None:
        return entity
    for spec in specs():
        if topic == spec.entity.topic(topic_prefix):
            _BY_TOPIC[(topic_prefix, topic)] = spec.entity
            return spec.entity
    raise DecodeError(f"topic {topic!r} is not a synced table topic for prefix {topic_prefix!r}")


def register_builtins() -> None:
    """Register the built-in specs, customers then invoices (importing `consumer.entities` does)."""
    register(customers.SPEC)
    register(invoices.SPEC)
