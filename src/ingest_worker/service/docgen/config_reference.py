"""The configuration reference, rendered from the settings models."""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from ingest_worker.service.docgen.markdown import GENERATED_NOTE, cell


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "–"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, dict | list):
        value = json.dumps(value)
    return f"`{value}`"


def _rows(model: type[BaseSettings]) -> list[str]:
    prefix = str(model.model_config.get("env_prefix", ""))
    rows = []
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name}".upper()
        secret = " (secret: never logged)" if "SecretStr" in repr(field.annotation) else ""
        meaning = cell(field.description or "") + secret
        rows.append(f"| `{variable}` | {_default(field)} | {meaning} |")
    return rows


def configuration_reference() -> str:
    """The page: every `INGEST_*` variable of the worker and of the gateway."""
    from ingest_worker.service.config import Settings
    from ingest_worker.service.console.settings import ConsoleSettings
    from ingest_worker.service.gateway.read_backend import ReadSettings
    from ingest_worker.service.gateway.settings import GatewaySettings

    header = ["| variable | default | meaning |", "|---|---|---|"]
    lines = [
        "# Configuration reference",
        "",
        GENERATED_NOTE,
        "",
        "Every setting is an environment variable. Lists and maps are JSON "
        "(`INGEST_OPEN_AFTER='{\"alertmanager\": 2}'`). Secrets are never printed in clear: "
        "wherever settings are logged, passwords are masked. The ports of `make run` and of "
        "`--dev` commands (`INGEST_DEV_POSTGRES_PORT`, `INGEST_DEV_KAFKA_PORT`): "
        "[Getting started](../getting-started.md). Tracing follows the standard `OTEL_*` "
        "variables: [Tracing](../operations/tracing.md).",
        "",
        "## Worker and command line",
        "",
        "Read by `ingest-worker run`, `dev`, `migrate` and every command that talks to the "
        "broker or the database. The gateway reads them too, for the broker, the topics and "
        "the size limit.",
        "",
        *header,
        *_rows(Settings),
        "",
        "## Gateway",
        "",
        "Read by `ingest-worker gateway` (and by `ingest-worker dev`, which runs it).",
        "",
        *header,
        *_rows(GatewaySettings),
        "",
        "## Read API and live stream",
        "",
        "Read by the gateway when it serves the read routes (`INGEST_GATEWAY_ROUTES` with `read`).",
        "",
        *header,
        *_rows(ReadSettings),
        "",
        "## Console",
        "",
        "Read by the gateway when it serves the console (`INGEST_GATEWAY_ROUTES` with `console`).",
        "",
        *header,
        *_rows(ConsoleSettings),
    ]
    return "\n".join(lines) + "\n"
