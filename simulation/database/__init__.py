"""In-memory PostgreSQL: the sync tables with their SQL's semantics; the source tables and their stream."""
