"""`ingest-worker send` against the real broker: it refuses topics the worker does not consume,
predicts with the worker's decoder what the worker will dead-letter (and the worker agrees),
and `--dev` follows the dev port variables."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest_worker.service.config import Settings
from tests.cli.support import arun_cli, clean_environment, one_error_line, settings_environment
from tests.conftest import ServiceEndpoints
from tests.support import header, reading, start_worker

pytestmark = pytest.mark.integration

VALID = {
    "env": "prod", "status": "RED", "changedAt": "2024-01-01T00:00:00Z",
    "signals": {}, "reasons": [], "deployId": "deploy-1",
}  # fmt: skip

#: One valid line, one that is not JSON, three that break the payload contract.
MIXED = [
    json.dumps(VALID),
    '{"env": "prod", "status": ',
    "[1, 2, 3]",
    json.dumps({"env": "prod"}),
    json.dumps({**VALID, "status": "PURPLE"}),
]


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n\n")  # a trailing blank line is skipped
    return str(path)


async def test_send_predicts_the_dead_letters_and_the_worker_agrees(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    env = settings_environment(settings)
    file = write_lines(tmp_path / "mixed.jsonl", MIXED)
    result = await arun_cli(env, "send", "--source", "deploy_status", file)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "5 sent; 4 will be dead-lettered: invalid_json 1, schema_violation 3\n"
    notes = result.stderr.strip().splitlines()
    assert [n.split(":")[0] for n in notes] == ["line 2", "line 3", "line 4", "line 5"]
    assert "invalid_json" in notes[0] and all("schema_violation" in n for n in notes[1:])

    worker = await start_worker(settings)
    try:
        async with reading(settings, settings.topic_dead_letter) as dlq:
            letters = await dlq.read_until(4)
    finally:
        await worker.stop()
    reasons = Counter((header(r, "x-dlq-reason") or b"").decode() for r in letters)
    assert reasons == Counter({"invalid_json": 1, "schema_violation": 3})


async def test_one_valid_record_is_one_sent(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    file = write_lines(tmp_path / "one.jsonl", [json.dumps(VALID)])
    result = await arun_cli(
        settings_environment(settings), "send", settings.topic_deploy_status, file
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "1 sent\n", "")
    async with reading(settings, settings.topic_deploy_status) as topic:
        (record,) = await topic.read_until(1)
    assert json.loads(record.value) == VALID


async def test_a_topic_the_worker_does_not_consume_is_refused_unless_forced(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    env = settings_environment(settings)
    file = write_lines(tmp_path / "one.jsonl", ["not json at all"])
    stray = f"{settings.topic_deploy_status}.nope"
    refused = await arun_cli(env, "send", stray, file)
    line = one_error_line(refused)
    assert refused.returncode == 2
    assert f"does not consume topic {stray!r}" in line
    assert settings.topic_deploy_status in line and "--any-topic" in line

    forced = await arun_cli(env, "send", "--any-topic", stray, file)
    assert (forced.returncode, forced.stdout) == (0, "1 sent (not validated)\n")
    async with reading(settings, stray) as topic:
        (record,) = await topic.read_until(1)
    assert record.value == b"not json at all"


async def test_no_validate_skips_the_check(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    file = write_lines(tmp_path / "bad.jsonl", ["[]"])
    env = settings_environment(settings)
    result = await arun_cli(env, "send", "--no-validate", settings.topic_deploy_status, file)
    assert (result.returncode, result.stdout, result.stderr) == (0, "1 sent (not validated)\n", "")


async def test_send_reads_stdin(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    env = settings_environment(settings)
    body = (json.dumps(VALID) + "\n").encode()
    result = await arun_cli(env, "send", settings.topic_deploy_status, "-", stdin=body)
    assert (result.returncode, result.stdout) == (0, "1 sent\n")


async def test_dev_sends_to_the_broker_on_the_dev_kafka_port(
    services: ServiceEndpoints, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`--dev` with INGEST_DEV_KAFKA_PORT (and no INGEST_KAFKA_BOOTSTRAP_SERVERS) reaches the
    broker on that port of 127.0.0.1, as `ingest-worker dev` starts it there."""
    settings = make_settings()
    port = services.bootstrap_servers.rpartition(":")[2]
    env = clean_environment(
        INGEST_DEV_KAFKA_PORT=port, INGEST_TOPIC_DEPLOY_STATUS=settings.topic_deploy_status
    )
    file = write_lines(tmp_path / "one.jsonl", [json.dumps(VALID)])
    result = await arun_cli(env, "send", "--dev", "--source", "deploy_status", file)
    assert (result.returncode, result.stdout) == (0, "1 sent\n"), result.stderr
    async with reading(settings, settings.topic_deploy_status) as topic:
        assert len(await topic.read_until(1)) == 1


async def test_dev_reads_the_database_on_the_dev_postgres_port(services: ServiceEndpoints) -> None:
    """`--dev` with INGEST_DEV_POSTGRES_PORT reaches the server on that port (the `postgres`
    database of `ingest-worker dev`); without the variable it looks on the default port."""
    port = services.admin_database_url.rpartition("@")[2].split("/")[0].rpartition(":")[2]
    result = await arun_cli(clean_environment(INGEST_DEV_POSTGRES_PORT=port), "verify", "--dev")
    output = result.stdout + result.stderr
    assert "cannot reach PostgreSQL" not in output
    assert result.returncode in (0, 1) and ("hash chains:" in output or "migrate" in output)


async def test_a_line_too_large_for_any_broker_is_not_sent_and_said_so(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(max_message_bytes=2048)
    big = json.dumps({**VALID, "deployId": "x" * 3000})  # over the worker's limit: too_large
    huge = json.dumps({**VALID, "deployId": "y" * 1_200_000})  # over the producer's limit too
    file = write_lines(tmp_path / "sizes.jsonl", [json.dumps(VALID), big, huge])
    result = await arun_cli(
        settings_environment(settings), "send", settings.topic_deploy_status, file
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "2 sent; 1 will be dead-lettered: too_large 1; 1 not sent: larger than the producer accepts\n"
    )
    assert "line 3: not sent" in result.stderr
    async with reading(settings, settings.topic_deploy_status) as topic:
        assert len(await topic.drain()) == 2
