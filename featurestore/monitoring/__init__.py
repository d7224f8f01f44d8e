"""Monitoring: feature statistics and drift, online freshness, metrics and training/serving skew."""
