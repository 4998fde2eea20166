"""Off unless the `OTEL_*` variables enable it: the SDK is neither installed as the tracer provider
nor imported, and nothing carries a trace context."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest_worker import tracing
from ingest_worker.service.config import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_without_otel_variables_nothing_is_traced(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(log_level="WARNING")
    values = settings.model_dump(mode="json")
    values["database_url"] = database_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["TRACING_TEST_SETTINGS"] = json.dumps(values)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.tracing.untraced_worker",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    [line] = [line for line in text.splitlines() if line.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert report["provider"] == "ProxyTracerProvider"  # the API's default: no SDK installed
    assert report["sdk_modules"] == []  # not even imported
    assert report["event_traceparent"] is None
    assert "ce_id" in report["event_headers"]


def test_the_api_alone_records_nothing() -> None:
    assert not tracing.active()
    with tracing.span("ingest.batch") as span:
        assert span is tracing.INVALID_SPAN
        assert tracing.current_traceparent() is None
        assert tracing.inject_headers() == []
