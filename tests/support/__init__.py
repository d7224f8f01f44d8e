"""Helpers shared by the tests (imported from here, never from conftest files or test modules).

certs    a throwaway CA and server certificate for TLS tests
cli      the installed console script: run it, on a terminal, and its one-line errors
clock    fixed times for test data
metrics  a server's Prometheus /metrics, parsed
redis    a real redis-server on a free port, and snapshots of a Redis database
repos    feature repos on disk: hand-written definitions over tables, or the example repo
waiting  polling for a condition with a deadline
"""
