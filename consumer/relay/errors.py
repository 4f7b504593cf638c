"""Errors the relay reports to the operator: each message is one sentence that says what to do.

`RelayError` is the family the CLI catches; nothing else escapes `zoho-cdc relay` as a traceback.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base class: the relay cannot run; str(exc) is the operator-facing sentence."""


class RelayConfigError(RelayError):
    """A setting (DATABASE_URL, the Debezium base file) is malformed."""


class WalLevelError(RelayError):
    """PostgreSQL is not configured for logical decoding (wal_level != logical)."""


class DatabaseUnreachable(RelayError):
    """PostgreSQL named by DATABASE_URL does not accept the connection."""


class BrokerUnreachable(RelayError):
    """No Kafka broker answers at KAFKA_BOOTSTRAP_SERVERS."""


class PublishError(RelayError):
    """Kafka did not acknowledge every record of a batch; the batch stays uncommitted."""


class StaleOffsetsError(RelayError):
    """Stored offsets point at a WAL position the replication slot no longer has."""


class EngineFailed(RelayError):
    """Debezium stopped with an error it reported through its completion callback."""
