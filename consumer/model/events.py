"""The decoded form of one Debezium change event: plain frozen data, no Kafka or JSON types.

`consumer.pipeline.codec.decode` is the only producer of `ChangeEvent`; everything downstream (routing,
coalescing, planning Zoho calls) works on these values. A `ChangeEvent.row` never holds the
TOAST placeholder: unavailable columns are absent from the row and named in `unavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, ClassVar, Final, NamedTuple


class Op(StrEnum):
    """What happened to the row; the values are Debezium's `op` codes (tombstone has none)."""

    CREATE = "c"
    READ = "r"  # snapshot read (initial or incremental): treated as an upsert
    UPDATE = "u"
    DELETE = "d"
    TOMBSTONE = "tombstone"  # Kafka message with a null value after a delete, for log compaction


class _Registry(type):
    """Lets `for entity in EntityType` list the defined entities, as an Enum would."""

    def __iter__(cls) -> Iterator[EntityType]:
        return iter(list(cls._defined.values()))  # type: ignore[attr-defined]


class EntityType(str, metaclass=_Registry):
    """A synced entity, named by the Zoho record it becomes; a string equal to its name.

    One instance per name: `EntityType("customer")` returns the defined one and an unknown name raises,
    so a misspelt or unregistered entity fails loudly instead of being taken for another. What an
    entity *is* (columns, mapping, Zoho calls) lives in its spec in `consumer.entities`; this value
    only names it, its source table and its topic.
    """

    __slots__ = ("table",)
    _defined: ClassVar[dict[str, EntityType]] = {}
    table: str  # the source table in schema `public`

    CUSTOMER: ClassVar[EntityType]
    INVOICE: ClassVar[EntityType]

    def __new__(cls, name: str) -> EntityType:
        try:
            return cls._defined[name]
        except KeyError:
            known = ", ".join(sorted(cls._defined))
            raise ValueError(f"{name!r} is not a synced entity (known: {known})") from None

    @classmethod
    def define(cls, name: str, *, table: str) -> EntityType:
        """Name a new entity and its source table (once; defining it again returns the same value)."""
        existing = cls._defined.get(name)
        if existing is not None:
            if existing.table != table:
                raise ValueError(f"entity {name!r} is already defined for table {existing.table!r}")
            return existing
        entity = str.__new__(cls, name)
        entity.table = table
        cls._defined[name] = entity
        return entity

    @classmethod
    def forget(cls, entity: EntityType) -> None:
        """Undo `define` for an entity of one's own; the built-in entities stay."""
        if entity not in (cls.CUSTOMER, cls.INVOICE):
            cls._defined.pop(entity.value, None)

    @property
    def value(self) -> str:
        return str.__str__(self)

    def topic(self, topic_prefix: str) -> str:
        """The Debezium topic of the entity's table: the one place topic names are built."""
        return f"{topic_prefix}.public.{self.table}"

    def __repr__(self) -> str:
        return f"EntityType({self.value!r})"

    def __str__(self) -> str:
        return self.value

    def __reduce__(self) -> tuple[Any, ...]:
        return (EntityType, (self.value,))


# The built-in entities' names; everything else about them is in consumer.entities.customers.spec/invoices.
EntityType.CUSTOMER = EntityType.define("customer", table="customers")
EntityType.INVOICE = EntityType.define("invoice", table="customer_invoices")


class ColumnKind(Enum):
    """How a source column is represented in a Debezium event."""

    TEXT = "text"  # text, uuid, char(n): a JSON string
    NUMERIC = "numeric"  # numeric(12,2): string, base64 unscaled int, or JSON number
    DATE = "date"  # io.debezium.time.Date: days since 1970-01-01
    TIMESTAMPTZ = "timestamptz"  # io.debezium.time.ZonedTimestamp: ISO-8601 string
    JSONB = "jsonb"  # io.debezium.data.Json: JSON text


class _Unavailable:
    """Type of `UNAVAILABLE`: one instance, falsy, never equal to a real value."""

    __slots__ = ()
    _instance: _Unavailable | None = None

    def __new__(cls) -> _Unavailable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNAVAILABLE"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNAVAILABLE"


#: Stands for a column Debezium sent as `__debezium_unavailable_value` (an unchanged TOASTed value
#: under REPLICA IDENTITY DEFAULT). It is never a value to send anywhere.
UNAVAILABLE: Final = _Unavailable()

#: Debezium's default `unavailable.value.placeholder`.
UNAVAILABLE_PLACEHOLDER: Final = "__debezium_unavailable_value"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change of a synced table, decoded and typed.

    `row` is the decoded `after` image for c/r/u and None for d and tombstone (under the default
    replica identity `before` of a delete holds only the key plus placeholder defaults, so
    nothing but the key is trusted). Row values are str, Decimal (numerics), datetime.date,
    tz-aware datetime, parsed JSON (dict/list) or None.
    """

    entity_type: EntityType
    entity_id: str
    op: Op
    row: Mapping[str, Any] | None
    unavailable: frozenset[str]
    lsn: int | None
    tx_id: int | None
    snapshot: bool
    source_ts_ms: int | None

    @property
    def version(self) -> tuple[int, int]:
        """Ordering key for stale detection of *one row*: `(lsn or 0, 0)`.

        `source.lsn` is not a total order across interleaved transactions, but it is monotonic for a single
        row: a second transaction changing the same row waits for the first one's row lock, so its change
        is written after the first commits; stale detection compares versions of one entity only. A
        snapshot read carries the LSN its snapshot started at, so a later streamed change is higher; equal
        versions are redeliveries (or reads of one snapshot), never stale. The second element is reserved
        for finer ordering (e.g. `source.sequence`), 0 today. Without an LSN an event sorts lowest: callers
        should not stale-skip it."""
        return (self.lsn or 0, 0)

    @property
    def position(self) -> int | None:
        """The source position this change is ordered by against the entity's other changes (see
        `order_position`)."""
        return order_position(self.lsn, self.snapshot)

    @property
    def is_removal(self) -> bool:
        """True for deletes and tombstones: the row no longer exists in the source."""
        return self.op in (Op.DELETE, Op.TOMBSTONE)


class ChangeSummary(NamedTuple):
    """What a replay needs of most records: whose change it is, where it stands in the source, and
    whether its image is whole (no column left unavailable), read without decoding the row
    (`consumer.pipeline.codec.decode.summarize_change`). Fields named as `ChangeEvent`'s."""

    entity_type: EntityType
    entity_id: str
    op: Op
    lsn: int | None
    source_ts_ms: int | None
    whole: bool
    snapshot: bool

    @classmethod
    def of(cls, event: ChangeEvent) -> ChangeSummary:
        whole = event.row is None or not event.unavailable
        return cls(
            event.entity_type, event.entity_id, event.op, event.lsn, event.source_ts_ms, whole, event.snapshot
        )

    @property
    def position(self) -> int | None:
        """As `ChangeEvent.position`."""
        return order_position(self.lsn, self.snapshot)


def order_position(lsn: int | None, snapshot: bool) -> int | None:
    """The position that tells which of one entity's changes is newer, for the live path and a replay
    alike: a streamed change's LSN; None for a snapshot read, and for a change without an LSN.

    A snapshot read's LSN is where its snapshot began: a transaction open then but committed after it is
    streamed after the read with a lower LSN, and is the newer state. So a change without a position is
    ordered by arrival in the topic: a streamed change is newer than a snapshot read before it. Streamed
    changes of one row are in LSN order (a second transaction waits for the first one's row lock), so
    where every change has a position the greater is newer (equal: redeliveries, the later arrival
    stands), even across partitions."""
    return None if snapshot else lsn


def snapshot_read(
    entity_type: EntityType, entity_id: str, row: Mapping[str, Any], *, read_at_ms: int | None = None
) -> ChangeEvent:
    """The change a read of the current source row stands for: the whole row, no position in the WAL
    (so it never makes a later streamed change look stale)."""
    return ChangeEvent(entity_type, entity_id, Op.READ, row, frozenset(), None, None, True, read_at_ms)


class DecodeError(Exception):
    """Raised when a Kafka message cannot be decoded into a `ChangeEvent`; it goes to the DLQ at once.

    `reason` is one sentence naming what was wrong (never the message contents, which may be large).
    """

    def __init__(self, reason: str) -> None:
        if len(reason) > _MAX_REASON:  # e.g. quoting a huge unknown op: the reason stays one short sentence
            reason = reason[: _MAX_REASON - 1] + "…"
        super().__init__(reason)
        self.reason = reason


_MAX_REASON: Final = 300
