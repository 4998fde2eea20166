"""PagerDuty on one topic, two shapes: Webhooks v3 (`{"event": {...}}`) and Events API v2.

Webhooks v3 (what PagerDuty sends about its incidents), key `pagerduty:<incident id>`:

| `event.event_type` | effect |
|---|---|
| `incident.triggered` | incident input: `urgency` high → RED, low (or none) → YELLOW; title `data.title`; signal time `occurred_at` |
| `incident.resolved` | recovery of the key at `occurred_at` |
| `incident.acknowledged`, `.unacknowledged`, `.reopened`, `.annotated` | source transition `acknowledge`, `unacknowledge`, `reopen`, `annotate` (the note: `data.content`), actor `<agent summary> (<agent id>)` |
| anything else (`incident.priority_updated`, `incident.escalated`, `service.*`, …) | ignored |

The incident id is `event.data.id` when `data` is the incident; for `incident.annotated` (and
other events whose `data` is a note or a responder) it is `event.data.incident.id`. An incident
event without one is `unmappable` (missing identity). Identity: the whole payload (one event per
payload, `event.id` in it), so a redelivery is a duplicate.

Events API v2 (what tools send *to* PagerDuty; the fallback shape), key
`pagerduty-events:<dedup_key>`:

| `event_action` | effect |
|---|---|
| `trigger` | incident input: `payload.severity` critical, error → RED; warning, info → YELLOW; title `payload.summary`; correlation `source:`, `component:`, `group:`, `class:` |
| `resolve` | recovery of the key |
| `acknowledge` | source transition `acknowledge` |

- `payload` (with `summary`, `source`, `severity`) is required only for a trigger, as PagerDuty
  requires it: a resolve or acknowledge may carry one without them (Alertmanager's PagerDuty
  receiver sends its payload on every action, summary and severity as its templates render).

- No `dedup_key` (PagerDuty would generate one, so nothing could ever resolve it): `unmappable`,
  missing identity.
- Signal time: `payload.timestamp` (`+0000` offsets accepted) when present, else `received_at`,
  an RFC 3339 time the producer adds at the top level when it receives the event (the gateway's
  `/v2/enqueue` does). acknowledge and resolve events usually carry no payload (or one without
  a timestamp), hence no time, and a mapper has no clock: without either time they are
  `schema_violation`, as is a trigger.
- `routing_key` is a credential (the integration key): it is dropped from the payload before
  anything is hashed, stored or published, and a `dedup_key` equal to it is refused
  (`schema_violation`) because the incident key would publish it.
"""

from __future__ import annotations

from typing import Final

from ingest_worker.sources.contract import Shape, Source
from ingest_worker.sources.pagerduty.common import ERROR_CODES, NAME
from ingest_worker.sources.pagerduty.events_v2 import PagerDutyEventsV2, map_events_v2
from ingest_worker.sources.pagerduty.webhook_v3 import PagerDutyWebhook, is_webhook, map_webhook
from ingest_worker.sources.signatures import PAGERDUTY_SIGNATURE

__all__ = [
    "NAME",
    "SOURCE",
    "PagerDutyEventsV2",
    "PagerDutyWebhook",
    "map_events_v2",
    "map_webhook",
]

SOURCE: Final = Source(
    name=NAME,
    topic="signals.pagerduty",
    setting="pagerduty",
    summary="PagerDuty Webhooks v3 incident events and Events API v2 events.",
    error_codes=ERROR_CODES,
    signature=PAGERDUTY_SIGNATURE,
    shapes=(
        Shape(
            "webhook_v3",
            PagerDutyWebhook,
            map_webhook,
            claims=is_webhook,
            schema_file="pagerduty-webhook-v3.schema.json",
        ),
        Shape(
            "events_v2",
            PagerDutyEventsV2,
            map_events_v2,
            schema_file="pagerduty-events-v2.schema.json",
        ),
    ),
)
