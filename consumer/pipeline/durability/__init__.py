"""What makes an outcome durable before its offset is committed: the sync log, the entity map, group
commits.
"""
