"""Properties of decoding and mapping (hypothesis): deterministic, total on valid input, typed
rejections only on invalid input, keys always in the seed's format."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from ingest_worker.core.canonical import canonical_json
from ingest_worker.core.errors import InvalidSignal
from ingest_worker.core.redaction import identifier_holds_credential
from ingest_worker.core.values import IncidentInput, Recovery, Severity
from ingest_worker.sources.decode import MAX_ERROR_MESSAGE, decode_record
from ingest_worker.sources.registry import SOURCES
from tests.sources import FIXTURES

MAX = 1_048_576
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{0,5}[1-9])?Z"
KEY_FORMATS = {
    "deploy_status": re.compile(rf"deploy_status:.+:.+:{TIMESTAMP}", re.DOTALL),
    "verification": re.compile(r"verification:.+:.+", re.DOTALL),
    "ecs_stopped": re.compile(rf"ecs_stopped:.+:.+:{TIMESTAMP}", re.DOTALL),
    "runner": re.compile(r"runner:.+:.+:(?:failure|timeout|cancelled)", re.DOTALL),
}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def rendered(moment: datetime) -> str:
    """The key form of a timestamp, computed independently of the code under test."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


# --- strategies --------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
# Identifiers are stored as they are, so one that holds a credential is refused (tested in
# test_decoding). Key parts are joined by `:`, so an id is also checked after a secret word.
ids = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=30
).filter(lambda s: not identifier_holds_credential(f"token:{s}"))
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=offsets
)


def iso(moment: datetime) -> str:
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if text.endswith("+00:00") else text


timestamps = moments.map(iso)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=10,
)
extras = st.dictionaries(texts.map(lambda t: f"x-{t}"), json_values, max_size=3)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.just(...) | st.none() | strategy


def build(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, **{k: v for k, v in base.items() if v is not ...}}


deploy_signals = st.builds(
    lambda env, status, at, deploy, reasons, extra: build(
        {
            "env": env,
            "status": status,
            "changedAt": at,
            "signals": {},
            "reasons": reasons,
            "deployId": deploy,
        },
        extra,
    ),
    ids,
    st.sampled_from(["GREEN", "YELLOW", "RED"]),
    timestamps,
    optional(ids),
    st.lists(
        st.builds(lambda c, m: {"code": c, "severity": "error", "message": m}, ids, texts),
        max_size=3,
    ),
    extras,
)
verification_signals = st.builds(
    lambda run, status, at, deploy, report, steps, extra: build(
        {
            "runId": run,
            "playbookId": "pdv",
            "playbookVersion": "1",
            "env": "prod",
            "status": status,
            "completedAt": at,
            "deployId": deploy,
            "reportHash": report,
            "failedSteps": steps,
        },
        extra,
    ),
    ids,
    st.sampled_from(["passed", "failed", "timeout"]),
    timestamps,
    optional(ids),
    optional(ids),
    optional(st.lists(st.builds(lambda i, t: {"id": i, "title": t}, ids, texts), max_size=3)),
    extras,
)
exit_codes = optional(st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, 1, 137]))
reasons = optional(texts | st.sampled_from(["Essential container in task exited", "OOM crash"]))
ecs_signals = st.builds(
    lambda cluster, task, at, reason, code, extra: build(
        {
            "cluster": cluster,
            "taskArn": task,
            "stoppedAt": at,
            "stoppedReason": reason,
            "exitCode": code,
        },
        extra,
    ),
    ids,
    ids,
    timestamps,
    reasons,
    exit_codes,
    extras,
)


def _eventbridge(status: str, at: datetime, reason: Any, stop_code: Any, codes: list[Any]) -> Any:
    data = fixture("aws-ecs-task-state-change-stopped.json")
    detail = data["detail"]
    detail["lastStatus"] = status
    detail["stoppedAt"] = iso(at)
    for key, value in (("stoppedReason", reason), ("stopCode", stop_code)):
        if value is ...:
            detail.pop(key)
        else:
            detail[key] = value
    detail["containers"] = [
        {"name": f"c{i}", **({} if code is ... else {"exitCode": code})}
        for i, code in enumerate(codes)
    ]
    return data


eventbridge_events = st.builds(
    _eventbridge,
    st.sampled_from(["STOPPED", "STOPPED", "RUNNING", "DEPROVISIONING"]),
    moments,
    reasons,
    optional(st.sampled_from(["EssentialContainerExited", "UserInitiated", "TaskFailedToStart"])),
    st.lists(exit_codes, max_size=3),
)
runner_signals = st.builds(
    lambda run, step, conclusion, at, workflow, extra: build(
        {
            "runId": run,
            "stepName": step,
            "conclusion": conclusion,
            "completedAt": at,
            "workflowName": workflow,
        },
        extra,
    ),
    ids,
    ids,
    st.sampled_from(["success", "failure", "timeout", "cancelled", "skipped"]),
    timestamps,
    optional(ids),
    extras,
)
conclusions = st.sampled_from(
    [None, "success", "failure", "cancelled", "skipped", "timed_out", "neutral"]
)


def _github(action: str, job_conclusion: Any, steps: list[tuple[str, Any, Any]]) -> Any:
    data = fixture("github-workflow-job-completed-failure.json")
    job = data["workflow_job"]
    job["conclusion"] = job_conclusion
    job["steps"] = [
        {
            "name": name,
            "status": "completed",
            "conclusion": conclusion,
            "number": number,
            **({} if at is ... else {"completed_at": at}),
        }
        for number, (name, conclusion, at) in enumerate(steps, start=1)
    ]
    data["action"] = action
    return data


github_jobs = st.builds(
    _github,
    st.sampled_from(["completed", "completed", "in_progress"]),
    conclusions,
    st.lists(
        st.tuples(st.sampled_from(["Build", "Test", "Lint"]), conclusions, optional(timestamps)),
        max_size=4,
    ),
)

valid_records = st.one_of(
    st.tuples(st.just("deploy_status"), deploy_signals),
    st.tuples(st.just("verification"), verification_signals),
    st.tuples(st.just("ecs_stopped"), ecs_signals | eventbridge_events),
    st.tuples(st.just("runner"), runner_signals | github_jobs),
)
kinds = st.sampled_from([source.name for source in SOURCES])


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def assert_well_formed(kind: str, item: IncidentInput) -> None:
    assert item.source_kind is kind
    assert KEY_FORMATS[kind].fullmatch(item.incident_key), item.incident_key
    assert item.severity in (Severity.YELLOW, Severity.RED)
    assert item.classification["error_code"] in {
        code for source in SOURCES for code in source.error_codes
    }
    assert item.signal_time.tzinfo is UTC
    assert list(item.correlation_keys) == sorted(set(item.correlation_keys))
    assert item.evidence[0].kind == item.source_primary.kind == kind
    assert 0 < len(item.title) <= 500
    assert re.fullmatch(r"[0-9a-f]{64}", item.signal_sha256)
    canonical_json(dict(item.classification))  # JSON-ready
    for evidence in item.evidence:
        canonical_json(dict(evidence.payload))


# --- properties --------------------------------------------------------------------------------


def decode_valid(kind: str, raw: bytes) -> tuple[IncidentInput, ...]:
    """The incident inputs `decode_record` gives for input the strategies mean to be valid.
    Generated identifiers can still combine into something credential-shaped across fields
    (`x://user` then `pass@host`); those inputs are refused by design (tested in
    test_decoding) and are not examples here."""
    return tuple(item for item in decode_effects(kind, raw) if isinstance(item, IncidentInput))


def decode_recoveries(kind: str, raw: bytes) -> list[Recovery]:
    return [item for item in decode_effects(kind, raw) if isinstance(item, Recovery)]


def decode_effects(kind: str, raw: bytes) -> tuple[Any, ...]:
    try:
        return decode_record(kind, raw, max_bytes=MAX)
    except InvalidSignal as error:
        if "looks like a credential" in error.message:
            reject()
        raise


@PROPERTIES
@given(valid_records)
def test_valid_input_never_raises_and_maps_identically_every_time(record: Any) -> None:
    kind, data = record
    raw = encode(data)
    first = decode_valid(kind, raw)
    assert decode_valid(kind, raw) == first
    assert decode_effects(kind, raw) == decode_effects(kind, raw)
    for item in first:
        assert_well_formed(kind, item)


@PROPERTIES
@given(deploy_signals)
def test_deploy_status_key_is_env_deploy_id_or_unknown_and_canonical_time(data: Any) -> None:
    inputs = decode_valid("deploy_status", encode(data))
    if data["status"] == "GREEN":
        assert inputs == ()
        [recovery] = decode_recoveries("deploy_status", encode(data))
        deploy = data.get("deployId") or "unknown"
        assert recovery.scope == f"deploy_status:{data['env']}:{deploy}"
        return
    assert decode_recoveries("deploy_status", encode(data)) == []
    [item] = inputs
    moment = datetime.fromisoformat(data["changedAt"])
    deploy = data.get("deployId") or "unknown"
    assert item.incident_key == f"deploy_status:{data['env']}:{deploy}:{rendered(moment)}"
    assert item.severity.value == data["status"]


@PROPERTIES
@given(verification_signals)
def test_verification_key_is_deploy_id_and_report_hash_or_run_id(data: Any) -> None:
    inputs = decode_valid("verification", encode(data))
    if data["status"] == "passed":
        assert inputs == ()
        [recovery] = decode_recoveries("verification", encode(data))
        deploy = data.get("deployId") or "unknown"
        assert recovery.scope == f"verification:{deploy}:{data['playbookId']}"
        return
    [item] = inputs
    deploy = data.get("deployId") or "unknown"
    report = data.get("reportHash") or data["runId"]
    assert item.incident_key == f"verification:{deploy}:{report}"
    assert item.severity is Severity.RED


@PROPERTIES
@given(ecs_signals)
def test_ecs_key_and_severity_follow_the_seed(data: Any) -> None:
    [item] = decode_valid("ecs_stopped", encode(data))
    moment = datetime.fromisoformat(data["stoppedAt"])
    assert (
        item.incident_key == f"ecs_stopped:{data['cluster']}:{data['taskArn']}:{rendered(moment)}"
    )
    code = data.get("exitCode")
    reason = (data.get("stoppedReason") or "").lower()
    failed = (code is not None and code != 0) or any(
        w in reason for w in ("error", "fail", "crash")
    )
    assert item.severity is (Severity.RED if failed else Severity.YELLOW)


@PROPERTIES
@given(runner_signals)
def test_runner_key_and_severity_follow_the_seed(data: Any) -> None:
    inputs = decode_valid("runner", encode(data))
    conclusion = data["conclusion"]
    if conclusion in ("success", "skipped"):
        assert inputs == ()
        recoveries = decode_recoveries("runner", encode(data))
        assert [r.scope for r in recoveries] == (
            [f"runner:{data['runId']}:{data['stepName']}"] if conclusion == "success" else []
        )
        return
    [item] = inputs
    assert item.incident_key == f"runner:{data['runId']}:{data['stepName']}:{conclusion}"
    assert item.severity is (Severity.YELLOW if conclusion == "cancelled" else Severity.RED)


@PROPERTIES
@given(moments, offsets)
def test_the_same_instant_in_another_offset_gives_the_same_key(
    moment: datetime, other: Any
) -> None:
    data = fixture("deploy-status-red.json")
    keys = set()
    for variant in (moment, moment.astimezone(other), moment.astimezone(UTC)):
        data["changedAt"] = iso(variant)
        [item] = decode_record("deploy_status", encode(data), max_bytes=MAX)
        keys.add(item.incident_key)
    assert len(keys) == 1


def _decode_or_reject(kind: str, raw: bytes) -> None:
    try:
        decode_record(kind, raw, max_bytes=MAX)
    except InvalidSignal as error:
        assert 0 < len(error.message) <= MAX_ERROR_MESSAGE


@PROPERTIES
@given(kinds, st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_invalid_signal(kind: str, raw: bytes) -> None:
    _decode_or_reject(kind, raw)


@PROPERTIES
@given(kinds, json_values)
def test_arbitrary_json_raises_nothing_but_invalid_signal(kind: str, value: Any) -> None:
    _decode_or_reject(kind, encode(value))


def _mutate(data: Any, choice: int, replacement: Any) -> Any:
    """Replace or delete one value somewhere in `data` (choice picks which)."""
    nodes: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                nodes.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                nodes.append((node, index))
                walk(node[index])

    walk(data)
    if nodes:
        parent, key = nodes[choice % len(nodes)]
        if replacement is ... and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = None if replacement is ... else replacement
    return data


@PROPERTIES
@given(
    valid_records,
    st.integers(min_value=0),
    st.just(...)
    | json_values
    | st.sampled_from(["\u0000", "2024-01-01T00:00:00", 2**64, "x" * 5001]),
)
def test_broken_valid_signals_raise_nothing_but_invalid_signal(
    record: Any, choice: int, replacement: Any
) -> None:
    kind, data = record
    _decode_or_reject(kind, encode(_mutate(data, choice, replacement)))


@PROPERTIES
@given(valid_records, kinds)
def test_signals_on_any_topic_decode_or_raise_invalid_signal(record: Any, kind: str) -> None:
    _decode_or_reject(kind, encode(record[1]))
