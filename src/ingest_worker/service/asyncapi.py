"""The AsyncAPI 3.0 document of every consumed and produced topic, generated from the application.

FastStream generates channels and operations from the worker's real subscribers and publishers;
the payload schemas are then filled in from the pydantic wire models (`contracts.json_schemas`),
because the handlers take raw records (each record is validated on its own, never the batch).
"""

from __future__ import annotations

import copy
from typing import Any

from faststream import FastStream
from faststream.specification import AsyncAPI

from ingest_worker import __version__
from ingest_worker.core.events import EVENT_TYPES
from ingest_worker.service.config import Settings
from ingest_worker.service.contracts import json_schemas
from ingest_worker.sources.commands import COMMANDS

_TEXT = {"type": "string"}

_TENANT: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}

CLOUDEVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 Kafka protocol binding, binary content mode.",
    "required": [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "ce_tenant",
        "content-type",
        "tenant",
    ],
    "properties": {
        "ce_specversion": {"const": "1.0"},
        "ce_id": {
            "type": "string",
            "format": "uuid",
            "description": "= event id; duplicates keep it",
        },
        "ce_source": {**_TEXT, "description": "INGEST_CE_SOURCE (default ingest-worker)"},
        "ce_type": {"enum": list(EVENT_TYPES)},
        "ce_time": {"type": "string", "format": "date-time", "description": "= occurred_at"},
        "ce_subject": {**_TEXT, "description": "= incident_key"},
        "ce_tenant": {**_TENANT, "description": "CloudEvents extension: the incident's tenant"},
        "content-type": {"const": "application/json"},
        "tenant": {**_TENANT, "description": "the incident's tenant (= ce_tenant)"},
    },
}

DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original record's headers, unchanged, followed by these.",
    "required": [
        "x-dlq-reason",
        "x-dlq-error",
        "x-dlq-source-topic",
        "x-dlq-source-partition",
        "x-dlq-source-offset",
        "x-dlq-failed-at",
    ],
    "properties": {
        "x-dlq-reason": {
            "enum": [
                "empty_value",
                "too_large",
                "invalid_encoding",
                "invalid_json",
                "schema_violation",
                "unmappable",
                "unprocessable",
                "partially_invalid",
                "invalid_tenant",
            ]
        },
        "x-dlq-error": {**_TEXT, "maxLength": 1000, "description": "never echoes input values"},
        "x-dlq-source-topic": _TEXT,
        "x-dlq-source-partition": {**_TEXT, "pattern": "^[0-9]+$"},
        "x-dlq-source-offset": {**_TEXT, "pattern": "^[0-9]+$"},
        "x-dlq-failed-at": {"type": "string", "format": "date-time"},
    },
}

EVENT_BODY: dict[str, Any] = {
    "type": "object",
    "title": "IncidentEvent",
    "description": "Key: incident id. hash = sha256 over the canonical JSON of the body without "
    "`hash` and `tenant`, followed by prev_hash (see the documentation, 'Topics and the store'; the tenant is bound "
    "through incident_id, derived from it).",
    "required": [
        "id",
        "type",
        "incident_id",
        "incident_key",
        "seq",
        "occurred_at",
        "signal_sha256",
        "prev_hash",
        "hash",
        "tenant",
        "changes",
        "snapshot",
    ],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "type": {"enum": list(EVENT_TYPES)},
        "incident_id": {"type": "string", "format": "uuid"},
        "incident_key": _TEXT,
        "seq": {"type": "integer", "minimum": 1},
        "occurred_at": {"type": "string", "format": "date-time"},
        "signal_sha256": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "identity of the signal that caused the event",
        },
        "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "tenant": {**_TENANT, "description": "the incident's tenant"},
        "changes": {"type": "object", "description": "what this event changed"},
        "snapshot": {"type": "object", "description": "the incident after this event"},
    },
}


COMMAND_RESULT: dict[str, Any] = {
    "type": "object",
    "title": "CommandResult",
    "required": ["commandId", "type", "outcome", "reason", "issuedAt", "actor"],
    "properties": {
        "commandId": _TEXT,
        "type": _TEXT,
        "outcome": {"enum": ["applied", "noop", "rejected"]},
        "reason": {
            "enum": [None, "unknown_incident", "transition_not_allowed", "rationale_required",
                     "not_authorized", "stale", "idempotency_key_reused"],
        },
        "incidentId": {"type": ["string", "null"], "format": "uuid"},
        "incidentKey": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"], "description": "the incident's status after"},
        "seq": {"type": ["integer", "null"]},
        "eventId": {"type": ["string", "null"], "description": "the event an applied command wrote"},
        "issuedAt": {"type": "string", "format": "date-time"},
        "actor": {"type": "object"},
    },
}  # fmt: skip


def build_application(settings: Settings) -> FastStream:
    """The worker's broker with its real subscribers and the two publishers, not started."""
    from ingest_worker.delivery.consumer import BatchConsumer
    from ingest_worker.service.worker import Worker, build_broker

    worker = Worker(settings)
    worker.broker = build_broker(settings)
    worker.consumer = BatchConsumer(settings, chain=None)
    worker.subscribe()
    worker.broker.publisher(
        settings.topic_incident_events,
        title=f"{settings.topic_incident_events}:publish",
        description="incident.* domain events, keyed by incident id, in seq order per incident.",
    )
    worker.broker.publisher(
        settings.topic_command_results,
        title=f"{settings.topic_command_results}:publish",
        description="The outcome of every command (applied, noop, rejected with a reason), "
        "keyed by commandId, published through the outbox in the transaction of its effect.",
    )
    worker.broker.publisher(
        settings.topic_dead_letter,
        title=f"{settings.topic_dead_letter}:publish",
        description="Records that can never be processed: original key, value and headers, "
        "plus x-dlq-* headers with the reason.",
    )
    return FastStream(
        worker.broker,
        specification=AsyncAPI(
            title="ingest-worker",
            version=__version__,
            description="Operational failure signals in, incident records and incident.* events out.",
        ),
    )


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document, deterministic for given settings."""
    document: dict[str, Any] = build_application(settings).schema.to_specification().to_jsonable()
    schemas = json_schemas()
    components = document.setdefault("components", {})
    component_schemas = components.setdefault("schemas", {})
    messages = components.setdefault("messages", {})
    for name, schema in schemas.items():
        main, definitions = _relocate_defs(copy.deepcopy(schema), name)
        component_schemas[_schema_name(name)] = main
        component_schemas.update(definitions)
    sources = {**settings.source_topics(), settings.topic_commands: COMMANDS}
    for channel in document.get("channels", {}).values():
        topic = channel.get("address")
        for ref in channel.get("messages", {}).values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            message.pop("correlationId", None)
            if topic in sources:
                refs = [
                    {"$ref": f"#/components/schemas/{_schema_name(n)}"}
                    for n in (shape.schema_file for shape in sources[topic].shapes)
                ]
                message["payload"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
                message["contentType"] = "application/json"
            elif topic == settings.topic_incident_events:
                message["payload"] = {"$ref": "#/components/schemas/IncidentEvent"}
                message["headers"] = CLOUDEVENT_HEADERS
                message["contentType"] = "application/json"
            elif topic == settings.topic_command_results:
                message["payload"] = COMMAND_RESULT
                message["headers"] = {**CLOUDEVENT_HEADERS, "properties": {
                    **CLOUDEVENT_HEADERS["properties"],
                    "ce_type": {"enum": [f"incident.command.{o}" for o in ("applied", "noop", "rejected")]},
                    "ce_subject": {**_TEXT, "description": "= incident key (or the commandId)"},
                }}  # fmt: skip
                message["contentType"] = "application/json"
            elif topic == settings.topic_dead_letter:
                message["payload"] = {"description": "the original record value, byte for byte"}
                message["headers"] = DEAD_LETTER_HEADERS
    component_schemas["IncidentEvent"] = EVENT_BODY
    for stale in [k for k in component_schemas if k.endswith(":Payload") or k == "EmptyPayload"]:
        del component_schemas[stale]
    return document


def _schema_name(file_name: str) -> str:
    stem = file_name.removesuffix(".schema.json")
    return "".join(part.capitalize() for part in stem.split("-"))


def _relocate_defs(schema: dict[str, Any], file_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move `$defs` to components/schemas as `<Schema>.<Def>` and rewrite the references."""
    defs = schema.pop("$defs", {})
    prefix = _schema_name(file_name)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return {
                    **{k: walk(v) for k, v in node.items() if k != "$ref"},
                    "$ref": f"#/components/schemas/{prefix}.{ref.removeprefix('#/$defs/')}",
                }
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    main: dict[str, Any] = walk(schema)
    definitions = {f"{prefix}.{name}": walk(value) for name, value in defs.items()}
    return main, definitions
