"""`ingest-worker dev`: the gateway beside the worker, unauthenticated, and a curl example."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from ingest_worker.service.config import Settings
from ingest_worker.service.gateway.server import GatewayServer
from ingest_worker.service.gateway.settings import GatewaySettings

_LABELS = {
    "alertname": "ProbeFailure",
    "instance": "https://server.example.org",
    "job": "http_checks",
    "monitor": "master",
    "severity": "critical",
}


def alertmanager_notification(*, resolved: bool) -> dict[str, Any]:
    """An Alertmanager webhook notification (`version: "4"`) of one alert, firing or resolved,
    as Alertmanager sends it (fingerprint: the alert's label set)."""
    status = "resolved" if resolved else "firing"
    return {
        "receiver": "ingest-gateway",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": _LABELS,
                "annotations": {
                    "description": "Instance https://server.example.org has been down for "
                    "over 5m. Job: http_checks",
                    "summary": "BlackBox Probe Failure: https://server.example.org",
                },
                "startsAt": "2026-11-23T09:00:00.000Z",
                "endsAt": "2026-11-23T09:20:00.000Z" if resolved else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1",
                "fingerprint": "1a30ba71cca2921f",
            }
        ],
        "groupLabels": {"alertname": "ProbeFailure"},
        "commonLabels": _LABELS,
        "commonAnnotations": {"summary": "BlackBox Probe Failure: https://server.example.org"},
        "externalURL": "http://alertmanager.example.org:9093",
        "version": "4",
        "groupKey": '{}:{alertname="ProbeFailure"}',
        "truncatedAlerts": 0,
    }


def curl_example(port: int) -> str:
    """The two curl commands `ingest-worker dev` prints: an alert firing, then resolved."""
    lines = []
    for resolved in (False, True):
        body = json.dumps(alertmanager_notification(resolved=resolved), separators=(",", ":"))
        lines.append(
            f"    curl -sS -H 'Content-Type: application/json' "
            f"localhost:{port}/v1/signals/alertmanager -d '{body}'"
        )
    return (
        "  post an Alertmanager notification to the gateway, then the resolved one:\n"
        + "\n".join(lines)
        + "\n"
    )


async def with_gateway(
    settings: Settings, run: Callable[[Settings], Awaitable[int]], config: GatewaySettings
) -> int:
    """Run `run(settings)` (the worker) with the gateway in dev mode beside it."""
    gateway = GatewayServer(settings, config, dev=True)
    await gateway.start()
    try:
        return await run(settings)
    finally:
        await gateway.stop()
