"""Monitoring: per-feature statistics of ingestions and training sets, and drift between them."""
