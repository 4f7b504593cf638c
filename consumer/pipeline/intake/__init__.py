"""From Kafka to workers and back to the commit: the poll loop, per-key scheduling, and the contiguous-
prefix watermark.
"""
