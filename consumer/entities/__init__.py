"""The synced entities as values: one spec per source table, in a registry the pipeline reads."""
