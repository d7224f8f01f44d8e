"""Monitoring: drift of feature statistics, online freshness, training/serving skew (reading the
request log serving writes, in the format of ``request_log_format.py``)."""
