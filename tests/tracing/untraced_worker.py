"""Run by `test_off.py` in a process of its own, without any `OTEL_*` variable: a worker
processes a signal that carries a `traceparent`, then this prints what tracing left behind
(the tracer provider, the SDK modules imported, the headers of the incident event)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from opentelemetry import trace

from ingest_worker.service.config import Settings
from tests.support import encode, header, produce, reading, start_worker

SIGNAL = {
    "env": "prod", "status": "RED", "changedAt": "2024-01-01T00:00:00Z",
    "signals": {}, "reasons": [], "deployId": "deploy-untraced",
}  # fmt: skip
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def main() -> None:
    settings = Settings(**json.loads(os.environ["TRACING_TEST_SETTINGS"]))
    worker = await start_worker(settings)
    try:
        await produce(
            settings,
            settings.topic_deploy_status,
            [encode(SIGNAL)],
            headers=[("traceparent", TRACEPARENT)],
        )
        async with reading(settings, settings.topic_incident_events) as events:
            [event] = await events.read_until(1)
    finally:
        await worker.stop()
    report = {
        "provider": type(trace.get_tracer_provider()).__name__,
        "sdk_modules": sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")),
        "event_headers": sorted(name for name, _ in event.headers or ()),
        "event_traceparent": (header(event, "traceparent") or b"").decode() or None,
    }
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
