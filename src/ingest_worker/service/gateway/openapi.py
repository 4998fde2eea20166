"""The gateway's OpenAPI document: FastAPI's, plus each source's request body schema (its shapes'
JSON Schemas, `$defs` hoisted into the components), PagerDuty's event and the security schemes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ingest_worker.service.gateway import pagerduty
from ingest_worker.sources.contract import Source

EXTERNAL = "external"


def hoisted_schema(source: Source, components: dict[str, Any]) -> dict[str, Any]:
    """The request body schema of a source (its shapes' JSON Schemas), with their `$defs` moved
    into the OpenAPI components."""
    prefix = f"{source.name}__"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k not in ("$defs", "$schema")}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                out["$ref"] = f"#/components/schemas/{prefix}{ref.removeprefix('#/$defs/')}"
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    options = []
    for shape in source.shapes:
        schema = shape.wire.model_json_schema(mode="validation")
        for name, definition in schema.get("$defs", {}).items():
            components[f"{prefix}{name}"] = rewrite(definition)
        name = f"{prefix}{shape.name}"
        components[name] = rewrite(schema)
        options.append({"$ref": f"#/components/schemas/{name}"})
    return options[0] if len(options) == 1 else {"anyOf": options}


def install(app: FastAPI, sources: Sequence[Source]) -> None:
    """Serve `app`'s document with the sources' body schemas (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for source in sources:
            schemas[f"body__{source.name}"] = hoisted_schema(source, schemas)
        if EXTERNAL not in {s.name for s in sources}:
            schemas[f"body__{EXTERNAL}"] = {"type": "object"}
        event = pagerduty.Event.model_json_schema(
            ref_template="#/components/schemas/PagerDuty{model}"
        )
        for name, definition in event.pop("$defs", {}).items():
            schemas[f"PagerDuty{name}"] = definition
        schemas["PagerDutyEvent"] = event
        components.setdefault("securitySchemes", {}).update(
            {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            }
        )
        for path, item in document.get("paths", {}).items():
            if "post" in item and path != "/v2/enqueue" and "security" not in item["post"]:
                item["post"]["security"] = [{"bearer": []}, {"basic": []}]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
