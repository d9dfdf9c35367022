"""Observability: traffic counters, the TCP access log, logging setup."""
