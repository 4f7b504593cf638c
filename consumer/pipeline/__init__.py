"""The sync pipeline: one Kafka record in, one durable sync-log outcome out, offsets committed after it.

Path of a record: `runner` (fetch, commit) -> `engine` (key-ordered scheduling) -> `decode` -> `plan`
-> `apply` (the Zoho call) -> `store` (sync log, entity map) -> `watermark` (what may be committed).
The pipeline reads entities from `consumer.entities`; it does not know which tables exist.
"""
