"""The sync pipeline: one Kafka record in, one durable sync-log outcome out, offsets committed after it.

In the order a record meets them: `intake` (poll loop, per-key scheduling, commit watermark), `codec`,
`decision` (what Zoho call a change needs), `effects` (the call, write-back, dead letters; `adoption`),
`durability` (rows durable before the offset moves), `replay`. It knows no table: `consumer.entities` does.
"""
