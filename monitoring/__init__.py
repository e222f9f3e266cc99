"""Prometheus metrics of the stack: see metrics.py."""
