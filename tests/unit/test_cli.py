"""The CLI's pure parts: dev addresses, the parser's per-verb options and help, outcome lines,
the send summary, dead-letter records and `incidents --json` items."""

from __future__ import annotations

import argparse
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from ingest_worker.core.lifecycle import COMMAND_VERBS, DEFAULT_POLICY
from ingest_worker.core.lifecycle import RefusalReason as Refusal
from ingest_worker.service import cli
from ingest_worker.service.cli_dead_letters import dead_letter, text_lines
from ingest_worker.service.cli_errors import UsageError
from ingest_worker.service.cli_outcome import Answer, describe_outcome
from ingest_worker.service.cli_send import dead_letter_reason, summary
from ingest_worker.service.config import Settings
from ingest_worker.service.dev_addresses import DevAddressError, dev_addresses
from ingest_worker.sources.registry import source_named

# --- dev addresses ------------------------------------------------------------------------------


def test_dev_addresses_default_to_the_dev_ports() -> None:
    dev = dev_addresses({})
    assert (dev.postgres_port, dev.kafka_port, dev.http_port, dev.gateway_port) == (
        54329, 9092, 8080, 8081
    )  # fmt: skip
    assert dev.database_url == "postgresql://postgres:postgres@127.0.0.1:54329/postgres"
    assert dev.kafka_bootstrap_servers == "127.0.0.1:9092"


def test_dev_addresses_follow_the_port_variables_and_explicit_urls_win() -> None:
    env = {
        "INGEST_DEV_POSTGRES_PORT": "15432", "INGEST_DEV_KAFKA_PORT": "19092",
        "INGEST_HTTP_PORT": "18080", "INGEST_GATEWAY_PORT": "18081",
    }  # fmt: skip
    dev = dev_addresses(env)
    assert dev.database_url.endswith("@127.0.0.1:15432/postgres")
    assert dev.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert dev.environment()["INGEST_HTTP_PORT"] == "18080"
    assert dev.environment()["INGEST_GATEWAY_PORT"] == "18081"
    explicit = dev_addresses({**env, "INGEST_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"})
    assert explicit.kafka_bootstrap_servers == "kafka:9092" and explicit.kafka_port == 19092


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1"])
def test_a_dev_port_that_is_not_a_port_is_refused(value: str) -> None:
    with pytest.raises(DevAddressError, match="INGEST_DEV_KAFKA_PORT"):
        dev_addresses({"INGEST_DEV_KAFKA_PORT": value})


def test_dev_flag_and_dev_command_use_the_same_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--dev` settings equal those `ingest-worker dev` gives its worker (one function decides)."""
    for name in ("INGEST_DATABASE_URL", "INGEST_KAFKA_BOOTSTRAP_SERVERS", "INGEST_HTTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INGEST_DEV_POSTGRES_PORT", "15432")
    monkeypatch.setenv("INGEST_DEV_KAFKA_PORT", "19092")
    monkeypatch.setenv("INGEST_HTTP_PORT", "18080")
    monkeypatch.setattr(cli, "_DEV", True)
    flagged = cli._settings()
    for name, value in dev_addresses().environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "_DEV", False)
    served = cli._settings()
    assert flagged.kafka_bootstrap_servers == served.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert flagged.database_url == served.database_url
    assert flagged.http_port == served.http_port == 18080


# --- the parser ---------------------------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    return dict(sub.choices or {})


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{name} {action.dest}"
        for name, parser in _subparsers().items()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


def test_verbs_have_hyphenated_names_and_their_underscore_aliases() -> None:
    parsers = _subparsers()
    for verb in COMMAND_VERBS:
        assert verb.value.replace("_", "-") in parsers and verb.value in parsers
    assert parsers["start-mitigation"] is parsers["start_mitigation"]


def _options(command: str) -> set[str]:
    return {o for a in _subparsers()[command]._actions for o in a.option_strings}


def test_each_verb_takes_only_its_own_options() -> None:
    assert "--severity" not in _options("acknowledge") and "--note" not in _options("resolve")
    assert {"--severity", "--rationale"} <= _options("change-severity")
    assert "--note" in _options("annotate") and "--rationale" not in _options("annotate")
    with pytest.raises(UsageError, match="unrecognized arguments: --severity RED"):
        cli.build_parser().parse_args(["acknowledge", "k", "--severity", "RED"])
    with pytest.raises(UsageError, match="required: --rationale"):
        cli.build_parser().parse_args(["cancel", "k"])


def test_a_usage_error_is_one_line_naming_the_command_and_its_help() -> None:
    with pytest.raises(UsageError) as caught:
        cli.build_parser().parse_args(["incidents", "--limit", "0"])
    assert "\n" not in caught.value.message
    assert caught.value.message.startswith("ingest-worker incidents: argument --limit")
    assert caught.value.message.endswith("(see `ingest-worker incidents --help`)")
    assert caught.value.code == 2


# --- outcome lines ------------------------------------------------------------------------------


def _line(verb: str, outcome: dict[str, object], changes: dict[str, object] | None = None) -> str:
    return describe_outcome(verb, Answer(outcome, changes), DEFAULT_POLICY, target="k")


def test_applied_lines_show_the_change_and_the_event() -> None:
    applied = {"outcome": "applied", "status": "RESOLVED", "seq": 4}
    moved = {"status": {"from": "ACKNOWLEDGED", "to": "RESOLVED"}}
    assert _line("resolve", applied, moved) == "applied: ACKNOWLEDGED → RESOLVED (event #4)"
    # no event in time: the one status acknowledge applies from, or only the status after
    ack = {"outcome": "applied", "status": "ACKNOWLEDGED", "seq": 2}
    assert _line("acknowledge", ack) == "applied: OPEN → ACKNOWLEDGED (event #2)"
    assert _line("resolve", applied) == "applied: now RESOLVED (event #4)"


def test_every_refusal_has_its_own_hint() -> None:
    hints = {
        reason: _line("resolve", {"outcome": "rejected", "reason": reason.value, "status": "OPEN"})
        for reason in Refusal
    }
    assert all(line.startswith(f"rejected: {r.value} — ") for r, line in hints.items())
    assert all("worker's log" not in line for line in hints.values())
    assert hints[Refusal.RATIONALE_REQUIRED] == (
        "rejected: rationale_required — resolve needs --rationale unless the incident is mitigating"
    )
    cancel = _line("cancel", {"outcome": "rejected", "reason": "rationale_required"})
    assert cancel == "rejected: rationale_required — cancel needs --rationale"


# --- send ---------------------------------------------------------------------------------------


def test_the_summary_counts_dead_letters_by_reason() -> None:
    reasons = Counter({"schema_violation": 3, "invalid_json": 1})
    assert summary(5, reasons, True) == (
        "5 sent; 4 will be dead-lettered: invalid_json 1, schema_violation 3"
    )
    assert summary(1, Counter(), True) == "1 sent"
    assert summary(2, Counter(), False) == "2 sent (not validated)"
    assert summary(2, Counter({"too_large": 1}), True, unsent=1) == (
        "2 sent; 1 will be dead-lettered: too_large 1; 1 not sent: larger than the producer accepts"
    )


def test_the_prediction_is_the_worker_decoder_s_reason() -> None:
    source = source_named("deploy_status")
    assert source is not None
    assert dead_letter_reason(source, b"{", 1000)[0] == "invalid_json"  # type: ignore[index]
    assert dead_letter_reason(source, b"{}", 1000)[0] == "schema_violation"  # type: ignore[index]
    assert dead_letter_reason(source, b"x" * 2000, 1000)[0] == "too_large"  # type: ignore[index]


# --- dead letters and incidents -----------------------------------------------------------------


def _record(value: bytes, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(
        headers=[(f"x-dlq-{k.replace('_', '-')}", v.encode()) for k, v in headers.items()],
        value=value, key=None, partition=0, offset=7,
    )  # fmt: skip


def test_a_dead_letter_reads_its_headers_and_keeps_binary_values_intact() -> None:
    headers = {"reason": "invalid_encoding", "error": "not UTF-8", "source_topic": "signals.ecs",
               "source_partition": "2", "source_offset": "41", "failed_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    item = dead_letter(_record(b"\xff\xfe", **headers))
    assert (item["sourceTopic"], item["sourcePartition"], item["sourceOffset"]) == (
        "signals.ecs", 2, 41
    )  # fmt: skip
    assert item["value"] is None and item["valueBase64"] == "//4="
    assert text_lines(item)[0] == "2026-01-01T00:00:00Z  invalid_encoding  signals.ecs/2@41"
    long = dead_letter(_record(b"y" * 5000, **headers))
    assert "5000 characters; --json shows all" in text_lines(long)[-1]


def test_incident_items_carry_rfc3339_utc_times() -> None:
    row = {column: None for column in cli._INCIDENT_FIELDS}
    row.update(
        id=uuid.UUID(int=1), correlation_keys=["a"], episode=1,
        first_seen_at=datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))),
        last_seen_at=datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC),
    )  # fmt: skip
    item = cli.incident_json(row)
    assert item["id"] == "00000000-0000-0000-0000-000000000001"
    assert item["firstSeenAt"] == "2026-01-01T00:00:00Z"
    assert item["lastSeenAt"] == "2026-01-01T00:00:00.25Z"
    assert set(item) >= {"incidentKey", "title", "env", "source", "acknowledgedAt", "resolvedAt"}


def test_a_command_the_worker_would_refuse_is_refused_before_publishing() -> None:
    from ingest_worker.service.cli_lifecycle import _check, command_message

    for bad in (["--expected-seq", "0"], ["--timeout", "0"], ["--timeout", "soon"]):
        with pytest.raises(UsageError):
            cli.build_parser().parse_args(["acknowledge", "k", *bad])
    args = cli.build_parser().parse_args(["annotate", "k", "--actor", "a", "--note", "n" * 20_000])
    with pytest.raises(UsageError, match="the worker would refuse this command"):
        _check(command_message(args, "annotate"), Settings())
    fine = cli.build_parser().parse_args(["annotate", "k", "--actor", "a", "--note", "ok"])
    _check(command_message(fine, "annotate"), Settings())
