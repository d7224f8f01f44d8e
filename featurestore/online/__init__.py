"""The online store: the latest value of each online view per entity, in Redis."""
