"""On-demand views at run time: their functions loaded from the repo, and run on Arrow tables."""

from featurestore.on_demand.compute import compute, input_table, typed_request_column
from featurestore.on_demand.functions import OnDemandFunctions

__all__ = ["OnDemandFunctions", "compute", "input_table", "typed_request_column"]
