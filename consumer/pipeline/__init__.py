"""The sync pipeline: one Kafka record in, one durable sync-log outcome out, offsets committed after it.

Sub-packages, in the order a record meets them: `intake` (poll loop, per-key scheduling, the commit
watermark), `codec` (Debezium envelopes decoded), `decision` (the policy: what Zoho call a change needs),
`effects` (the call, its write-back, dead letters; `adoption` finds a record before a create),
`durability` (sync log and entity map, durable before the offset moves), `replay` (a backfill's two
passes). Entities come from `consumer.entities`: the pipeline does not know which tables exist.
"""
