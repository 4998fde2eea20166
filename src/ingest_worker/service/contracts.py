"""Published payload contracts: the JSON Schema of every accepted signal payload (docs/schemas/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ingest_worker.sources.commands import COMMANDS
from ingest_worker.sources.registry import SOURCES
from ingest_worker.sources.wire import Signal

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

#: File name → wire model, from the source registry. The names are a contract: the AsyncAPI
#: document refers to them.
SCHEMA_FILES: Final[dict[str, type[Signal]]] = {
    shape.schema_file: shape.wire for source in (*SOURCES, COMMANDS) for shape in source.shapes
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema (validation mode, draft 2020-12) of every accepted payload, by file name."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, model in SCHEMA_FILES.items():
        schema = model.model_json_schema(mode="validation")
        schemas[name] = {"$schema": JSON_SCHEMA_DIALECT, **schema}
    return schemas


def schema_text(schema: dict[str, Any]) -> str:
    """The canonical file content of a schema: indent 2, sorted keys, UTF-8, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_schemas(directory: Path | str) -> list[Path]:
    """Write every schema into `directory` (created if needed); returns the paths written.

    Files of the directory that are not schemas of `json_schemas()` are left alone.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = target / name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written
