"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis), against
the running gateway and the real broker: no 5xx but the documented 503, every status and body
as documented, every 4xx with a reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import checks

from tests.conftest import ServiceEndpoints
from tests.gateway.conftest import RunningGateway, gateway_config, unique_settings

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token-3c1d"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(services: ServiceEndpoints) -> Iterator[RunningGateway]:
    # The ingest routes; the read routes need principals and are fuzzed in tests/read.
    config = gateway_config(
        tokens={"*": [SecretStr(TOKEN)]}, rate_limit_per_second=10_000, rate_limit_burst=10_000,
        routes="ingest",
    )  # fmt: skip
    running = RunningGateway(unique_settings(services), config).start()
    yield running
    running.stop()


def test_every_operation_answers_as_documented(fuzzed: RunningGateway) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzzed.url, headers={"Authorization": f"Bearer {TOKEN}"})
            case.validate_response(response, checks=CHECKS)
            if 400 <= response.status_code < 500:
                answer = response.json()
                assert answer.get("reason") or answer.get("errors"), response.text
                assert answer.get("message"), response.text

        exercise()


def test_without_credentials_every_post_is_refused(fuzzed: RunningGateway) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "POST":
            continue

        @settings(
            max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case) -> None:
            case.headers = {
                k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
            }
            response = case.call(base_url=fuzzed.url)
            case.validate_response(response, checks=CHECKS)
            assert response.status_code in (400, 401, 413, 415), response.text

        exercise()
