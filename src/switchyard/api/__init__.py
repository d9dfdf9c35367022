"""Internal HTTP services: REST API, dashboard, ping and Prometheus metrics."""
