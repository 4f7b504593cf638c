"""Every registered entity spec is complete, and matches the source schema it reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import consumer
from consumer.entities.registry import entity_for_topic, spec_of, specs
from consumer.model.events import DecodeError, EntityType

SCHEMA = (Path(consumer.__file__).parent / "sql" / "source_schema.sql").read_text()


def _schema_columns(table: str) -> set[str]:
    body = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\);", SCHEMA, re.S)
    assert body is not None, f"table {table} is not in source_schema.sql"
    return {line.split()[0] for line in body.group(1).strip().splitlines() if line.strip()}


@pytest.mark.parametrize("spec", list(specs()), ids=lambda s: str(s.entity))
def test_every_registered_spec_is_complete(spec) -> None:  # type: ignore[no-untyped-def]
    assert spec.missing_parts() == []
    assert spec.calls is not None, "a built-in entity needs its Zoho calls"
    assert spec.mapped_columns <= spec.remembered_columns <= set(spec.columns)


@pytest.mark.parametrize("spec", list(specs()), ids=lambda s: str(s.entity))
def test_every_spec_names_exactly_the_columns_of_its_source_table(spec) -> None:  # type: ignore[no-untyped-def]
    assert set(spec.columns) == _schema_columns(spec.entity.table)


def test_parents_come_before_their_children() -> None:
    order = [spec.entity for spec in specs()]
    for spec in specs():
        if spec.parent is not None:
            assert order.index(spec.parent.entity) < order.index(spec.entity)


def test_every_defined_entity_has_a_spec_and_unknown_entities_fail_loudly() -> None:
    assert {spec.entity for spec in specs()} == set(EntityType)
    with pytest.raises(ValueError, match="not a synced entity"):
        EntityType("payment")
    with pytest.raises(LookupError):
        spec_of("payment")
    with pytest.raises(DecodeError, match="not a synced table topic"):
        entity_for_topic("billing.public.payments", topic_prefix="billing")


def test_a_spec_missing_its_columns_is_reported_incomplete() -> None:
    from dataclasses import replace

    broken = replace(spec_of(EntityType.INVOICE), columns={"id": spec_of(EntityType.INVOICE).columns["id"]})
    missing = broken.missing_parts()
    assert any("invoice_number" in part for part in missing)
    assert any("customer_id" in part for part in missing)


def test_the_pipeline_names_no_entity_outside_the_built_in_names() -> None:
    """The pipeline reads specs: no module of it branches on customers or invoices."""
    pipeline = Path(consumer.__file__).parent / "pipeline"
    modules = sorted(pipeline.rglob("*.py"))
    assert len(modules) > 30  # the whole pipeline, every sub-package (events.py, naming them, is in model/)
    for path in modules:
        text = path.read_text()
        assert "EntityType.CUSTOMER" not in text and "EntityType.INVOICE" not in text, path.name


def test_lookups_follow_the_registry_as_it_changes() -> None:
    """`specs()` and `entity_for_topic` are cached: registering or removing a spec must show at once."""
    from dataclasses import replace

    from consumer.entities.registry import register, unregister
    from consumer.pipeline.codec.decode import decode_event

    topic = "billing.public.support_tickets"
    with pytest.raises(DecodeError):
        entity_for_topic(topic, topic_prefix="billing")  # asked (and missed) before it exists
    ticket = EntityType.define("ticket", table="support_tickets")
    columns = {"id": spec_of(EntityType.CUSTOMER).columns["id"]}
    register(replace(spec_of(EntityType.CUSTOMER), entity=ticket, columns=columns, parent=None))
    try:
        assert entity_for_topic(topic, topic_prefix="billing") is ticket
        assert ticket in [spec.entity for spec in specs()]
        key, value = b'{"id": "t-1"}', b'{"op": "c", "after": {"id": "t-1", "note": 5}, "source": {}}'
        assert decode_event(topic, key, value, topic_prefix="billing").row == {"id": "t-1", "note": 5}
        # the spec replaced: its columns are read by the new kinds (a number is no text)
        register(replace(spec_of(ticket), columns={**columns, "note": columns["id"]}))
        with pytest.raises(DecodeError, match="column note is a JSON number"):
            decode_event(topic, key, value, topic_prefix="billing")
    finally:
        unregister(ticket)
    assert ticket not in [spec.entity for spec in specs()]
    with pytest.raises(DecodeError):
        entity_for_topic(topic, topic_prefix="billing")
