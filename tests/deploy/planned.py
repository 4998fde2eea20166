"""Metrics and settings that the deploy assets already use but the code does not export yet.

The live-scrape test accepts a name used by the dashboard or the rules when the worker (or the
gateway) exports it, or when it is listed here. A listed name that *is* exported fails the test:
remove it from here when its work lands.
"""

from __future__ import annotations

#: metric family → (type, the work that brings it)
PLANNED_METRICS: dict[str, tuple[str, str]] = {}

#: INGEST_* variable → the work that brings it (the ConfigMap and compose set it already)
PLANNED_SETTINGS: dict[str, str] = {
    "INGEST_GATEWAY_PORT": "webhook gateway (issue 13), SPEC §9",
}
