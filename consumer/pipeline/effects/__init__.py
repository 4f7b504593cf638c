"""The effects of a decision: Zoho calls, ids written back to the source, dead letters, children re-driven."""
