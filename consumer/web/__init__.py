"""The HTTP face of `zoho-cdc run`: health and readiness probes, Prometheus metrics and the status page."""
