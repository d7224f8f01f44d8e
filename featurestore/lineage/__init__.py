"""Lineage: reproducing a recorded training set, OpenLineage events, and the lineage graph read
from the run records (``featurestore.runs``) and the offline store."""
