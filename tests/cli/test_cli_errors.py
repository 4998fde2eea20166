"""Every CLI failure is one sentence on stderr, exit 2 for usage and 1 for runtime failures, and
never a traceback: the paths users hit first, then every subcommand with bad input."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from ingest_worker.service.cli import build_parser, main
from ingest_worker.service.embedded import free_port
from tests.cli.support import arun_cli, clean_environment, one_error_line, run_cli
from tests.conftest import ServiceEndpoints

pytestmark = pytest.mark.integration

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "deploy-status-red.jsonl")


def nowhere() -> dict[str, str]:
    """Dev ports where nothing listens: every connection is refused."""
    return clean_environment(
        INGEST_DEV_POSTGRES_PORT=str(free_port()), INGEST_DEV_KAFKA_PORT=str(free_port())
    )


def test_an_unknown_source_is_a_usage_error_naming_the_known_ones() -> None:
    result = run_cli(nowhere(), "send", "--dev", "--source", "nope", EXAMPLE)
    line = one_error_line(result)
    assert result.returncode == 2
    assert "'nope'" in line and "deploy_status" in line and "alertmanager" in line


def test_a_missing_file_is_a_usage_error_naming_it() -> None:
    result = run_cli(nowhere(), "send", "--dev", "signals.deploy-status", "no-such-file.jsonl")
    line = one_error_line(result)
    assert result.returncode == 2
    assert "no such file: no-such-file.jsonl" in line


def test_a_negative_limit_is_a_usage_error() -> None:
    result = run_cli(nowhere(), "incidents", "--dev", "--limit", "-1")
    line = one_error_line(result)
    assert result.returncode == 2
    assert "--limit" in line and "from 1 to 1000" in line


async def test_incidents_before_any_migration_says_to_migrate(services: ServiceEndpoints) -> None:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(services.admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = services.admin_database_url.rpartition("/")[0] + f"/{name}"
        result = await arun_cli(clean_environment(INGEST_DATABASE_URL=url), "incidents")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    line = one_error_line(result)
    assert result.returncode == 1
    assert "run `ingest-worker migrate` first" in line


def test_send_without_a_broker_says_where_it_looked_and_leaves_nothing_unclosed() -> None:
    env = nowhere()
    result = run_cli(env, "send", "--dev", "signals.deploy-status", EXAMPLE)
    line = one_error_line(result)
    assert result.returncode == 1
    assert f"cannot reach the Kafka broker at 127.0.0.1:{env['INGEST_DEV_KAFKA_PORT']}" in line
    assert "Unclosed" not in result.stderr and "Unclosed" not in result.stdout


def test_postgres_unreachable_names_the_masked_address() -> None:
    env = nowhere()
    result = run_cli(env, "incidents", "--dev")
    line = one_error_line(result)
    assert result.returncode == 1
    port = env["INGEST_DEV_POSTGRES_PORT"]
    assert f"cannot reach PostgreSQL at postgresql://postgres:***@127.0.0.1:{port}/postgres" in line
    assert "postgres:postgres@" not in line


def test_a_bad_setting_is_a_usage_error_naming_the_variable() -> None:
    result = run_cli(clean_environment(INGEST_BATCH_MAX_RECORDS="lots"), "incidents")
    line = one_error_line(result)
    assert result.returncode == 2
    assert "INGEST_BATCH_MAX_RECORDS" in line and "lots" not in line


def _subcommands() -> dict[str, list[str]]:
    """Every subcommand (aliases included) with a positional argument where it needs one."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = {}
    for name, parser in (sub.choices or {}).items():
        positionals = [a for a in parser._actions if not a.option_strings and a.required]
        commands[name] = ["x"] * len(positionals)
    return commands


BAD_INPUTS: list[list[str]] = [
    ["--no-such-option"],
    ["--limit", "-1"],
    ["--timeout", "soon"],
    ["--expected-seq", "first"],
    ["--severity", "PURPLE"],
]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_no_subcommand_prints_a_traceback_on_a_bad_command_line(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown options and malformed values: exit 2, one line on stderr (in-process: argparse
    fails before anything is opened)."""
    for bad in BAD_INPUTS:
        code = main([command, *_subcommands()[command], *bad])
        out, err = capsys.readouterr()
        assert code == 2, (bad, out, err)
        assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


async def test_no_subcommand_prints_a_traceback_when_its_services_are_unreachable(
    tmp_path: Path,
) -> None:
    """Each subcommand in its own process with --dev pointing nowhere (and a few other runtime
    failures): exit 1 (or 2 where the command line is incomplete), one line, no traceback."""
    env = nowhere()
    env["INGEST_ACTOR"], env["INGEST_ROLES"] = "alice", "SRE_LEAD"
    runs: list[list[str]] = []
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, positionals in _subcommands().items():
        if name in ("run", "dev", "gateway", "asyncapi", "schemas"):
            continue  # services run until stopped; the other two need no service
        if name != (sub.choices or {})[name].prog.split()[-1]:
            continue  # an alias runs its command's parser
        timeout = ["--timeout", "1"] if _takes(name, "--timeout") else []
        runs.append([name, "--dev", *positionals, *timeout])
    runs.append(["asyncapi", "--output", str(tmp_path / "missing" / "dir" / "a.json")])
    runs.append(["send", "--dev", "signals.deploy-status", str(tmp_path)])
    limit = asyncio.Semaphore(3)

    async def one(args: list[str]) -> tuple[str, int, str]:
        async with limit:
            result = await arun_cli(env, *args, timeout=60)
        return " ".join(args), result.returncode, result.stdout + result.stderr

    outcomes = await asyncio.gather(*(one(args) for args in runs))
    assert [args for args, _, output in outcomes if "Traceback" in output] == []
    unexplained = {
        args: (code, output) for args, code, output in outcomes
        if code not in (1, 2) or len(output.strip().splitlines()) != 1
        or not output.startswith("error: ")
    }  # fmt: skip
    assert unexplained == {}
    assert len(outcomes) >= 20


def _takes(command: str, option: str) -> bool:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = (sub.choices or {})[command]
    return any(option in a.option_strings for a in parser._actions)
