"""CLI verbs of the lifecycle: one per command (publish it, wait for its outcome) and `timeline`.

`ingest-worker acknowledge <incident>` publishes the command to `incident.commands` (key: the
incident), waits for its outcome on `incident.command-results` and prints one line:

    applied: OPEN → ACKNOWLEDGED (event #2)
    noop: the incident is already ACKNOWLEDGED
    rejected: rationale_required — resolve needs --rationale unless the incident is mitigating

(`--json`: the whole receipt). Exit 0 when applied or noop, 1 when rejected or when no outcome
came in time. The actor and roles default to `INGEST_ACTOR` and `INGEST_ROLES`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ingest_worker.core.incident import TRANSITIONS
from ingest_worker.core.lifecycle import ANY_ACTOR, COMMAND_VERBS, Verb
from ingest_worker.service.cli_errors import CliError, UsageError, connect_postgres
from ingest_worker.service.cli_outcome import EVENT_SECONDS, ask, describe_outcome
from ingest_worker.service.config import Settings
from ingest_worker.store.overview import incident_timeline

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

#: Verbs whose command must carry a rationale, from the transition table.
RATIONALE_ALWAYS = frozenset(t.verb for t in TRANSITIONS if t.rationale == "always")


def command_name(verb: str) -> str:
    """The subcommand of a verb: `start_mitigation` → `start-mitigation`."""
    return verb.replace("_", "-")


def command_message(args: argparse.Namespace, verb: str) -> dict[str, Any]:
    """The command record for the CLI arguments."""
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


def _roles_from_environment() -> list[str]:
    return [role.strip() for role in os.environ.get("INGEST_ROLES", "").split(",") if role.strip()]


def _who(args: argparse.Namespace, verb: Verb, settings: Settings) -> None:
    """Fill in the actor and roles from INGEST_ACTOR / INGEST_ROLES; refuse to go without."""
    name = command_name(verb.value)
    args.actor = args.actor or os.environ.get("INGEST_ACTOR", "").strip() or None
    if not args.actor:
        raise UsageError(
            f"ingest-worker {name}: who asks? give --actor NAME, or set INGEST_ACTOR once"
        )
    args.role = args.role or _roles_from_environment()
    allowed = settings.policy().get(verb, frozenset())
    if not args.role and ANY_ACTOR not in allowed:
        roles = ", ".join(sorted(allowed)) or "no role (the policy forbids it)"
        raise UsageError(
            f"ingest-worker {name}: no role given, and {name} needs one of: {roles}; "
            "give --role ROLE (repeatable), or set INGEST_ROLES=ROLE,ROLE"
        )


def _check(message: dict[str, Any], settings: Settings) -> None:
    """Refuse, before publishing, a command the worker would dead-letter (a note too long, an
    unusable --command-id): it would never get an outcome."""
    from ingest_worker.service.cli_send import dead_letter_reason
    from ingest_worker.sources.commands import COMMANDS

    value = json.dumps(message).encode()
    refused = dead_letter_reason(COMMANDS, value, settings.max_message_bytes)
    if refused is not None:
        raise UsageError(
            f"ingest-worker {command_name(message['type'])}: the worker would refuse this command "
            f"({refused[0]}: {refused[1]}); fix the options and try again"
        )


def make_command(
    verb: str, settings_of: Callable[[], Settings]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = settings_of()
        _who(args, Verb(verb), settings)
        message = command_message(args, verb)
        _check(message, settings)
        # --json prints the receipt only: no need to wait for the event's status before.
        event_seconds = 0 if args.json else EVENT_SECONDS
        answer = asyncio.run(ask(settings, message, args.timeout, event_seconds=event_seconds))
        if answer.outcome is None:
            raise CliError(
                f"no outcome within {args.timeout:g} s: is the worker running and consuming "
                f"{settings.topic_commands}? (the command {message['commandId']} stays published "
                "and applies once it does)"
            )
        if args.json:
            print(json.dumps(answer.outcome, indent=2))
        line = describe_outcome(verb, answer, settings.policy(), target=args.incident)
        rejected = answer.outcome.get("outcome") == "rejected"
        if not args.json:
            print(line, file=sys.stderr if rejected else sys.stdout)
        return 1 if rejected else 0

    return run


def _timeline_line(row: Any) -> dict[str, Any]:
    cause = json.loads(row["cause"]) if row["cause"] else {}
    status = json.loads(row["status"]) if row["status"] else None
    who = cause.get("actor", {}).get("id") if cause.get("kind") == "command" else cause.get("kind")
    return {
        "episode": row["episode"], "seq": row["seq"], "type": row["type"],
        "at": row["occurred_at"].isoformat().replace("+00:00", "Z"),
        "status": f"{status['from']} -> {status['to']}" if status
        else (f"-> {row['now']}" if row["seq"] == 1 else None),
        "by": who, "rationale": row["rationale"], "note": row["note"],
    }  # fmt: skip


def make_timeline(settings_of: Callable[[], Settings]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            conn = await connect_postgres(settings_of())
            try:
                rows = await incident_timeline(conn, args.incident)
            finally:
                await conn.close()
            if not rows:
                raise CliError(
                    f"no incident {args.incident!r}: give an incident key or id as "
                    "`ingest-worker incidents` lists them"
                )
            for row in rows:
                line = _timeline_line(row)
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


def _add_verb_options(parser: argparse.ArgumentParser, verb: Verb) -> None:
    """The options of one verb only: --rationale, --severity and --note where they belong."""
    name = command_name(verb.value)
    if verb is Verb.CHANGE_SEVERITY:
        parser.add_argument(
            "--severity", required=True, choices=("RED", "YELLOW"), help="the new severity"
        )
    if verb is Verb.ANNOTATE:
        parser.add_argument("--note", required=True, help="the note, kept in the timeline")
    elif verb in RATIONALE_ALWAYS:
        parser.add_argument(
            "--rationale",
            required=True,
            help=f"why ({name} always needs one); kept in the timeline",
        )
    elif verb is Verb.RESOLVE:
        parser.add_argument(
            "--rationale",
            help="why; needed unless the incident is MITIGATING or MITIGATED; kept in the timeline",
        )
    else:
        parser.add_argument("--rationale", help="why (optional); kept in the timeline")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _add_common_options(parser: argparse.ArgumentParser, dev_help: str) -> None:
    parser.add_argument("--actor", help="who asks (actor.id); default: INGEST_ACTOR")
    parser.add_argument(
        "--actor-type",
        choices=("human", "service"),
        default="human",
        help="a person or a program (default human)",
    )
    parser.add_argument(
        "--role",
        action="append",
        help="a role of the actor (repeatable); default: INGEST_ROLES, comma-separated",
    )
    parser.add_argument(
        "--expected-seq",
        type=_positive_int,
        metavar="SEQ",
        help="apply only if the incident's newest event is still #SEQ (else: rejected, stale)",
    )
    parser.add_argument(
        "--command-id", help="idempotency key: the same id again gets the same outcome"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the outcome (default 30)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the whole receipt as JSON instead of one line"
    )
    parser.add_argument("--dev", action="store_true", help=dev_help)


def add_lifecycle_commands(sub: Any, settings_of: Callable[[], Settings], dev_help: str) -> None:
    """One subcommand per command verb (hyphenated, the underscore form as an alias), and
    `timeline`."""
    for verb in COMMAND_VERBS:
        name = command_name(verb.value)
        aliases: Sequence[str] = [verb.value] if verb.value != name else []
        parser = sub.add_parser(name, aliases=aliases, help=HELP[verb.value])
        parser.add_argument(
            "incident", help="incident id (uuid) or incident key (its newest episode)"
        )
        _add_verb_options(parser, verb)
        _add_common_options(parser, dev_help)
        parser.set_defaults(func=make_command(verb.value, settings_of))
    timeline = sub.add_parser("timeline", help="the events of an incident, oldest first")
    timeline.add_argument("incident", help="incident id or key (every episode)")
    timeline.add_argument("--json", action="store_true", help="one JSON object per event and line")
    timeline.add_argument("--dev", action="store_true", help=dev_help)
    timeline.set_defaults(func=make_timeline(settings_of))
