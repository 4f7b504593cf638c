"""The synced entities as values: one spec per source table, in a registry the pipeline reads.

`customers` and `invoices` are the built-in specs; importing this package registers them. A spec's
mapping rules are pure (`*_payload`, `*_status`), its Zoho calls are in `*_calls`.
"""

from consumer.entities.registry import register_builtins

register_builtins()
