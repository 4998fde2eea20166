"""CLI verbs of the lifecycle: one per command (publish it, wait for its outcome) and `timeline`.

`ingest-worker acknowledge <incident> --actor alice --role ONCALL_ENGINEER` publishes the
command to `incident.commands` (key: the incident), waits for its outcome on
`incident.command-results`, prints it, and exits 0 when applied or noop, 1 when rejected,
2 when no outcome arrived in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ingest_worker.core.lifecycle import COMMAND_VERBS
from ingest_worker.service.config import Settings

HELP = {
    "promote": "open a PENDING incident",
    "acknowledge": "acknowledge an OPEN incident",
    "unacknowledge": "put an ACKNOWLEDGED incident back to OPEN",
    "start_mitigation": "mark an incident MITIGATING",
    "mark_mitigated": "mark a MITIGATING incident MITIGATED",
    "resolve": "resolve an incident (--rationale unless it is being mitigated)",
    "reopen": "reopen a RESOLVED incident",
    "close": "close a RESOLVED incident",
    "cancel": "cancel a false positive (--rationale)",
    "archive": "archive a CLOSED or CANCELLED incident",
    "change_severity": "change the severity (--severity, --rationale)",
    "annotate": "add a note (--note)",
}


def command_message(args: argparse.Namespace, verb: str) -> dict[str, Any]:
    """The command record for the CLI arguments (SPEC §7.2)."""
    target: dict[str, str]
    try:
        target = {"incidentId": str(uuid.UUID(args.incident))}
    except ValueError:
        target = {"incidentKey": args.incident}
    message: dict[str, Any] = {
        "commandId": args.command_id or f"cli-{uuid.uuid4()}",
        "type": verb,
        **target,
        "actor": {"type": args.actor_type, "id": args.actor, "roles": args.role or []},
        "issuedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    for name, field in (("rationale", "rationale"), ("note", "note"), ("severity", "severity")):
        value = getattr(args, name, None)
        if value:
            message[field] = value
    if args.expected_seq is not None:
        message["expectedSeq"] = args.expected_seq
    return message


async def publish_and_wait(
    settings: Settings, message: dict[str, Any], wait_seconds: float
) -> dict[str, Any] | None:
    """Publish one command and return its outcome, or None after `wait_seconds`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ingest_worker.service.kafka_clients import client_options, make_producer

    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        topic = settings.topic_command_results
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve the end offsets before the command is published
            await consumer.position(tp)
        key = str(message.get("incidentId") or message.get("incidentKey")).encode()
        await producer.send_and_wait(settings.topic_commands, json.dumps(message).encode(), key=key)
        deadline = time.monotonic() + wait_seconds
        while (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for records in batch.values():
                for record in records:
                    if record.key == message["commandId"].encode():
                        result: dict[str, Any] = json.loads(record.value)
                        return result
        return None
    finally:
        await producer.stop()
        await consumer.stop()


def make_command(
    verb: str, settings_of: Callable[[], Settings]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        message = command_message(args, verb)
        outcome = asyncio.run(publish_and_wait(settings_of(), message, args.timeout))
        if outcome is None:
            print(json.dumps({"commandId": message["commandId"], "outcome": None,
                              "error": f"no outcome within {args.timeout} s (is the worker running?)"}))  # fmt: skip
            return 2
        print(json.dumps(outcome, indent=2))
        return 1 if outcome.get("outcome") == "rejected" else 0

    return run


_TIMELINE = """
SELECT i.episode, e.seq, e.type, e.occurred_at, e.payload->'cause' AS cause,
       e.payload->>'rationale' AS rationale, e.payload->>'note' AS note,
       e.payload->'changes'->'status' AS status, e.payload->'snapshot'->>'status' AS now, i.id
FROM incidents AS i
JOIN incident_events AS e ON e.tenant = i.tenant AND e.incident_id = i.id
WHERE i.incident_key = $1 OR i.id::text = $1
ORDER BY i.episode, e.seq
"""


def make_timeline(settings_of: Callable[[], Settings]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import asyncpg

        async def main() -> int:
            conn = await asyncpg.connect(settings_of().database_url.get_secret_value(), timeout=10)
            try:
                rows = await conn.fetch(_TIMELINE, args.incident)
            finally:
                await conn.close()
            if not rows:
                print(f"no incident {args.incident!r}")
                return 1
            for row in rows:
                cause = json.loads(row["cause"]) if row["cause"] else {}
                status = json.loads(row["status"]) if row["status"] else None
                who = (
                    cause.get("actor", {}).get("id")
                    if cause.get("kind") == "command"
                    else cause.get("kind")
                )
                line = {
                    "episode": row["episode"], "seq": row["seq"], "type": row["type"],
                    "at": row["occurred_at"].isoformat().replace("+00:00", "Z"),
                    "status": f"{status['from']} -> {status['to']}" if status
                    else (f"-> {row['now']}" if row["seq"] == 1 else None),
                    "by": who, "rationale": row["rationale"], "note": row["note"],
                }  # fmt: skip
                if args.json:
                    print(json.dumps(line))
                else:
                    extra = "  ".join(f"{k}={v}" for k, v in line.items()
                                      if k in ("status", "by", "rationale", "note") and v)  # fmt: skip
                    print(
                        f"#{line['episode']}.{line['seq']:<3} {line['at']}  {line['type']:<26} {extra}"
                    )
            return 0

        return asyncio.run(main())

    return run


def add_lifecycle_commands(sub: Any, settings_of: Callable[[], Settings], dev_help: str) -> None:
    """One subcommand per command verb, and `timeline`."""
    for verb in COMMAND_VERBS:
        parser = sub.add_parser(verb.value, help=HELP[verb.value])
        parser.add_argument("incident", help="incident id (uuid) or incident key (newest episode)")
        parser.add_argument("--actor", required=True, help="who asks (actor.id)")
        parser.add_argument("--actor-type", choices=("human", "service"), default="human")
        parser.add_argument("--role", action="append", help="a role of the actor (repeatable)")
        parser.add_argument("--rationale")
        parser.add_argument("--note")
        parser.add_argument("--severity", choices=("RED", "YELLOW"))
        parser.add_argument("--expected-seq", type=int)
        parser.add_argument("--command-id", help="idempotency key (default: a new uuid)")
        parser.add_argument("--timeout", type=float, default=30.0)
        parser.add_argument("--dev", action="store_true", help=dev_help)
        parser.set_defaults(func=make_command(verb.value, settings_of))
    timeline = sub.add_parser("timeline", help="the events of an incident, oldest first")
    timeline.add_argument("incident", help="incident id or key (every episode)")
    timeline.add_argument("--json", action="store_true")
    timeline.add_argument("--dev", action="store_true", help=dev_help)
    timeline.set_defaults(func=make_timeline(settings_of))
