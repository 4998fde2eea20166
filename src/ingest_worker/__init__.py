"""ingest-worker: operational failure signals on Kafka become incident records in PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"
