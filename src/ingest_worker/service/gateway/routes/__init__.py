"""The gateway's route groups, one module each: operations (probes, metrics), signals (the
webhooks of every source and the generic ingestion), enqueue (PagerDuty Events API v2)."""
