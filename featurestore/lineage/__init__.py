"""Lineage: training set records and reproduce, OpenLineage events, and the lineage graph read
from the run records (``featurestore.runs``) and the offline store."""
