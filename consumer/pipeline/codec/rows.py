"""A row image's columns decoded into Python values, and TOAST placeholders filled from `before`.

With a schema each column is read by its field schema; without one, by the column kinds of the entity
spec (from `consumer/sql/source_schema.sql`). A column still holding the placeholder is named in the
returned `unavailable` set and never reaches the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumer.entities.registry import spec_of
from consumer.entities.spec import EntitySpec
from consumer.model.events import UNAVAILABLE, UNAVAILABLE_PLACEHOLDER, EntityType
from consumer.pipeline.codec.column_values import Reader, decode_column, reader_of_kind


def decode_row(
    entity: EntityType, image: Mapping[str, Any], fields: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], frozenset[str]]:
    """The image's columns decoded (by `fields`, the row's field schemas, else by the spec's column
    kinds), and the names of those still holding the TOAST placeholder."""
    if not fields:
        return _decode_schemaless_row(entity, image)
    kinds = spec_of(entity).columns
    row: dict[str, Any] = {}
    unavailable: set[str] = set()
    for name, raw in image.items():
        value = decode_column(name, raw, fields.get(name), kinds.get(name))
        if value is UNAVAILABLE:
            unavailable.add(name)
        else:
            row[name] = value
    return row, frozenset(unavailable)


def _decode_schemaless_row(
    entity: EntityType, image: Mapping[str, Any]
) -> tuple[dict[str, Any], frozenset[str]]:
    """`decode_column` without a schema, with each column's reader looked up once per entity."""
    readers = _readers(entity)
    row: dict[str, Any] = {}
    unavailable: set[str] = set()
    for name, raw in image.items():
        if raw is None:
            row[name] = None
        elif raw == UNAVAILABLE_PLACEHOLDER:
            unavailable.add(name)
        else:
            reader = readers.get(name)
            row[name] = raw if reader is None else reader(name, raw)
    return row, frozenset(unavailable)


_READERS: dict[EntityType, tuple[EntitySpec, dict[str, Reader]]] = {}


def _readers(entity: EntityType) -> dict[str, Reader]:
    """Each column's reader by the entity spec's column kinds (rebuilt when the spec is replaced)."""
    spec = spec_of(entity)
    cached = _READERS.get(entity)
    if cached is None or cached[0] is not spec:
        readers = {name: reader_of_kind(kind) for name, kind in spec.columns.items()}
        cached = _READERS[entity] = (spec, {n: r for n, r in readers.items() if r is not None})
    return cached[1]


def fill_from_before(
    entity: EntityType,
    row: dict[str, Any],
    unavailable: frozenset[str],
    before: Any,
    fields: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Any], frozenset[str]]:
    """Under REPLICA IDENTITY FULL `before` holds every old value: an unchanged TOASTed column is
    the same before and after the update, so its `before` value fills the placeholder."""
    if not isinstance(before, dict):
        return row, unavailable
    old, _ = decode_row(entity, {c: before[c] for c in unavailable if c in before}, fields)
    return {**row, **old}, unavailable - old.keys()
