"""Backfill: reading a topic twice (index, then apply the newest record per entity) and settling what needs
no call.
"""
