"""Lineage: runs and the source snapshots they read, training set manifests, the lineage graph."""
