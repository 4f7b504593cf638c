"""In-memory Kafka: topics, partitions, consumer groups with rebalances, commits, compaction."""
