"""The fault suite's oracle: streams of signals, the end state they must produce, and the comparison
with what the worker actually left in PostgreSQL and on its topics.

The expected state is computed from SPEC §1–§3, §7 and §8 and the rules of seed 000 alone, restated
here in a few lines per signal family (Alertmanager and PagerDuty included) and for the few command
rules the streams use. Nothing is imported from `ingest_worker`'s mapping, canonical or store
code, so a bug there cannot hide itself by shaping the expectation too. (The product's own audit
tools, `verify` and `replay --check`, run in addition, as checks of their own.)
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

#: The signal families of the fault streams: one topic each (SPEC §1, §8), named after their
#: topic setting (`topic_<family>`).
FAMILIES = ("deploy_status", "verification", "ecs", "runner", "alertmanager", "pagerduty")

#: Payload shapes, and the family (topic) each one is sent on.
SHAPE_FAMILY = {
    "deploy_status": "deploy_status",
    "verification": "verification",
    "ecs_stopped_task": "ecs",
    "ecs_eventbridge": "ecs",
    "runner_step": "runner",
    "github_workflow_job": "runner",
    "alertmanager": "alertmanager",
    "pagerduty_webhook": "pagerduty",
}
SHAPES = tuple(SHAPE_FAMILY)

_SEVERITY_RANK = {"YELLOW": 1, "RED": 2}
_ECS_FAILURE_WORDS = ("error", "fail", "crash")

#: Evidence each distinct signal attaches to each incident it touches, besides the primary
#: evidence (kind = source kind, seed 000 "Primary source signal stored as evidence"): the
#: "additional evidence attached based on signal type" of seed 000, as the mappers document it.
#: Every ref names the signal, so a new signal always adds new rows and a redelivery none.
EXTRA_EVIDENCE = {
    "deploy_status": ("deploy_status_snapshot",),
    "ecs_stopped_task": ("ecs_task_containers",),
    "ecs_eventbridge": ("ecs_task_containers",),
    "runner_step": ("runner_step",),
    "github_workflow_job": ("runner_step", "runner_job"),
    "alertmanager": ("alertmanager_links",),  # generatorURL (every generated alert has one)
    "pagerduty_webhook": ("pagerduty_links",),  # event.data.html_url (idem)
}
#: SPEC §8: `labels.severity` values (any case) that make an Alertmanager incident RED.
_ALERT_RED = ("critical", "page", "high", "error")

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


# --- timestamps ---------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as UTC (digits past the microsecond are dropped)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp with an offset: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    zone = match.group(8).upper()
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)


def key_time(text: str) -> str:
    """SPEC §2: UTC, `Z`, fractional seconds only when non-zero (trailing zeros dropped)."""
    moment = parse_time(text)
    rendered = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        rendered += f".{moment.microsecond:06d}".rstrip("0")
    return rendered + "Z"


def shifted(text: str, hours: int) -> str:
    """The same instant written with a `+hh:00` offset (a different spelling of one timestamp)."""
    moment = parse_time(text).astimezone(timezone(timedelta(hours=hours)))
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        base += f".{moment.microsecond:06d}"
    return f"{base}+{hours:02d}:00"


# --- the rules of seed 000, restated ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Touch:
    """One incident a signal creates or updates."""

    key: str
    severity: str
    at: datetime
    evidence: tuple[str, ...]  # evidence kinds this signal adds to the incident
    scope: str = ""  # SPEC §7.3: the recovery scope of the incident ("" = its own key)
    identity: str | None = None  # the signal's identity when not the whole record's (alerts)


def alert_identity(alert: Mapping[str, Any]) -> str:
    """SPEC §8: every alert of a group is its own signal, identified by the alert alone (a firing
    alert's `endsAt` is a forecast, not part of it), whatever group carried it."""
    data = dict(alert)
    if data.get("status") == "firing":
        data.pop("endsAt", None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def recoveries(family: str, payload: Mapping[str, Any]) -> list[tuple[str, datetime]]:
    """SPEC §7.3, §8: the (scope, time) of each recovery one valid signal carries.

    deploy-status GREEN → its env and deployId (missing: `unknown`); verification `passed` →
    its deployId (or `unknown`) and playbookId; runner `success` → its run and step; a completed
    `workflow_job` → each successful step, and the job itself when it succeeded. ECS: none.
    """
    return [(scope, at) for scope, at, _ in identified_recoveries(family, payload)]


def identified_recoveries(
    family: str, payload: Mapping[str, Any]
) -> list[tuple[str, datetime, str | None]]:
    """`recoveries`, each with its identity when it is not the whole record's (a resolved alert
    of a group: its incident key is its scope, its `endsAt` the time)."""
    shape = shape_of(family, payload)
    if shape == "alertmanager":
        return [
            (f"alertmanager:{a['fingerprint']}", parse_time(a["endsAt"]), alert_identity(a))
            for a in payload["alerts"]
            if a["status"] == "resolved"
        ]
    if shape == "pagerduty_webhook":
        event = payload["event"]
        if event["event_type"] == "incident.resolved":
            return [(f"pagerduty:{event['data']['id']}", parse_time(event["occurred_at"]), None)]
        return []
    return [(scope, at, None) for scope, at in _seed_recoveries(shape, payload)]


def _seed_recoveries(shape: str, payload: Mapping[str, Any]) -> list[tuple[str, datetime]]:
    if shape == "deploy_status" and payload["status"] == "GREEN":
        scope = f"deploy_status:{payload['env']}:{payload.get('deployId') or 'unknown'}"
        return [(scope, parse_time(payload["changedAt"]))]
    if shape == "verification" and payload["status"] == "passed":
        scope = f"verification:{payload.get('deployId') or 'unknown'}:{payload['playbookId']}"
        return [(scope, parse_time(payload["completedAt"]))]
    if shape == "runner_step" and payload["conclusion"] == "success":
        return [
            (f"runner:{payload['runId']}:{payload['stepName']}", parse_time(payload["completedAt"]))
        ]
    if shape == "github_workflow_job" and payload["action"] == "completed":
        job = payload["workflow_job"]
        found: dict[str, datetime] = {}
        named = [
            (step["name"], step.get("completed_at") or job.get("completed_at"))
            for step in job.get("steps", [])
            if step.get("conclusion") == "success"
        ]
        if job.get("conclusion") == "success":
            named.append((job["name"], job.get("completed_at")))
        for name, at in named:
            if at is not None and name not in found:
                found[name] = parse_time(at)
        return [(f"runner:{job['run_id']}:{name}", at) for name, at in found.items()]
    return []


def shape_of(family: str, payload: Mapping[str, Any]) -> str:
    """SPEC §1: on `ecs` an EventBridge event has `detail-type`/`detail`; on `runner` a GitHub
    webhook has `workflow_job`; anything else is the seed shape of the family."""
    if family == "ecs":
        return (
            "ecs_eventbridge"
            if "detail-type" in payload or "detail" in payload
            else ("ecs_stopped_task")
        )
    if family == "runner":
        return "github_workflow_job" if "workflow_job" in payload else "runner_step"
    if family == "pagerduty":
        return "pagerduty_webhook"
    return family


def touches(family: str, payload: Mapping[str, Any]) -> list[Touch]:
    """The incidents one valid signal touches (empty: a valid signal that creates none)."""
    shape = shape_of(family, payload)
    extra = EXTRA_EVIDENCE.get(shape, ())
    if shape == "alertmanager":
        # SPEC §8: key alertmanager:<fingerprint>, firing at startsAt; primary evidence: the alert.
        return [
            Touch(
                f"alertmanager:{a['fingerprint']}",
                "RED" if str(a["labels"].get("severity", "")).lower() in _ALERT_RED else "YELLOW",
                parse_time(a["startsAt"]),
                ("alertmanager", *extra),
                identity=alert_identity(a),
            )
            for a in payload["alerts"]
            if a["status"] == "firing"
        ]
    if shape == "pagerduty_webhook":
        # SPEC §8: key pagerduty:<event.data.id>, incident.triggered at occurred_at, urgency
        # high → RED, low → YELLOW.
        event = payload["event"]
        if event["event_type"] != "incident.triggered":
            return []
        severity = "RED" if event["data"]["urgency"] == "high" else "YELLOW"
        key = f"pagerduty:{event['data']['id']}"
        return [Touch(key, severity, parse_time(event["occurred_at"]), ("pagerduty", *extra))]
    if shape == "deploy_status":
        if payload["status"] == "GREEN":
            return []
        key = "deploy_status:{}:{}:{}".format(
            payload["env"], payload.get("deployId") or "unknown", key_time(payload["changedAt"])
        )
        scope = f"deploy_status:{payload['env']}:{payload.get('deployId') or 'unknown'}"
        return [
            Touch(
                key,
                payload["status"],
                parse_time(payload["changedAt"]),
                ("deploy_status", *extra),
                scope,
            )
        ]
    if shape == "verification":
        if payload["status"] == "passed":
            return []
        report = payload.get("reportHash") or payload["runId"]
        key = f"verification:{payload.get('deployId') or 'unknown'}:{report}"
        kinds = ["verification"]
        if payload.get("failedSteps"):
            kinds.append("verification_failed_steps")
        if payload.get("reportHash"):
            kinds.append("verification_report")
        scope = f"verification:{payload.get('deployId') or 'unknown'}:{payload['playbookId']}"
        return [Touch(key, "RED", parse_time(payload["completedAt"]), tuple(kinds), scope)]
    if shape == "ecs_stopped_task":
        key = "ecs_stopped:{}:{}:{}".format(
            payload["cluster"], payload["taskArn"], key_time(payload["stoppedAt"])
        )
        severity = _ecs_severity(payload.get("exitCode"), payload.get("stoppedReason"))
        return [Touch(key, severity, parse_time(payload["stoppedAt"]), ("ecs_stopped", *extra))]
    if shape == "ecs_eventbridge":
        detail = payload["detail"]
        if detail.get("lastStatus") != "STOPPED":
            return []
        cluster = detail["clusterArn"].rpartition(":cluster/")[2]
        key = f"ecs_stopped:{cluster}:{detail['taskArn']}:{key_time(detail['stoppedAt'])}"
        # The container that stopped the task: the first non-zero exit code, else the first 0.
        codes = [
            c["exitCode"] for c in detail.get("containers", []) if c.get("exitCode") is not None
        ]
        exit_code = next((c for c in codes if c != 0), codes[0] if codes else None)
        severity = _ecs_severity(exit_code, detail.get("stoppedReason"))
        return [Touch(key, severity, parse_time(detail["stoppedAt"]), ("ecs_stopped", *extra))]
    if shape == "runner_step":
        conclusion = payload["conclusion"]
        if conclusion in ("success", "skipped"):
            return []
        key = f"runner:{payload['runId']}:{payload['stepName']}:{conclusion}"
        severity = "YELLOW" if conclusion == "cancelled" else "RED"
        scope = f"runner:{payload['runId']}:{payload['stepName']}"
        return [Touch(key, severity, parse_time(payload["completedAt"]), ("runner", *extra), scope)]
    if shape == "github_workflow_job":
        if payload["action"] != "completed":
            return []
        job = payload["workflow_job"]
        conclusions = {"failure": "failure", "timed_out": "timeout", "cancelled": "cancelled"}
        found = []
        for step in job.get("steps", []):
            conclusion = conclusions.get(step.get("conclusion") or "")
            if conclusion is None:
                continue
            key = f"runner:{job['run_id']}:{step['name']}:{conclusion}"
            severity = "YELLOW" if conclusion == "cancelled" else "RED"
            at = parse_time(step.get("completed_at") or job["completed_at"])
            scope = f"runner:{job['run_id']}:{step['name']}"
            found.append(Touch(key, severity, at, ("runner", *extra), scope))
        return found
    raise AssertionError(f"unknown shape {shape}")


def _ecs_severity(exit_code: int | None, reason: str | None) -> str:
    if exit_code is not None and exit_code != 0:
        return "RED"
    if any(word in (reason or "").lower() for word in _ECS_FAILURE_WORDS):
        return "RED"
    return "YELLOW"


#: Timestamp fields the worker parses (so their spelling is not part of the signal's identity).
_TYPED_TIMES = {
    "deploy_status": (("changedAt",),),
    "verification": (("completedAt",),),
    "ecs_stopped_task": (("stoppedAt",),),
    "ecs_eventbridge": (("time",), ("detail", "stoppedAt")),
    "runner_step": (("completedAt",),),
    "github_workflow_job": (("workflow_job", "completed_at"),),
    "alertmanager": (),  # every alert is its own signal (`alert_identity`)
    "pagerduty_webhook": (("event", "occurred_at"),),
}


def parsed_form(family: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """`payload` with its parsed timestamps in canonical form: what the worker keeps of it."""
    data: dict[str, Any] = json.loads(json.dumps(payload))
    for path in _TYPED_TIMES[shape_of(family, payload)]:
        holder: Any = data
        for part in path[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(path[-1]), str):
            holder[path[-1]] = key_time(holder[path[-1]])
    return data


def signal_identity(family: str, payload: Mapping[str, Any]) -> str:
    """SPEC §3: a signal is identified by its parsed content, not by its bytes: key order,
    whitespace and the spelling of a parsed timestamp do not make a different signal."""
    return json.dumps(
        parsed_form(family, payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


# --- the expected end state ---------------------------------------------------------------------


@dataclass
class ExpectedIncident:
    key: str
    severity: str = "YELLOW"
    signals: set[bytes] = field(default_factory=set)  # sha256 of each signal's identity
    times: list[datetime] = field(default_factory=list)
    evidence: Counter[str] = field(default_factory=Counter)
    scope: str = ""

    @property
    def count(self) -> int:
        return len(self.signals)


@dataclass
class Expected:
    """What a set of records must leave behind, whatever the faults and the delivery order."""

    incidents: dict[str, ExpectedIncident] = field(default_factory=dict)
    dead_letters: dict[bytes | None, str] = field(default_factory=dict)  # value -> reason
    ignored: int = 0
    #: scope → {recovery signal identity: its time} (SPEC §7.3)
    recoveries: dict[str, dict[bytes, datetime]] = field(default_factory=dict)
    #: commandId → the command (SPEC §7.2), and how many records carried it
    commands: dict[str, ExpectedCommand] = field(default_factory=dict)
    command_records: int = 0

    def status_of(self, incident: ExpectedIncident) -> str:
        """SPEC §7.3, §7.4: whatever the arrival order, the newest episode of a key is RESOLVED
        exactly when the newest recovery of its scope is newer than its newest trigger. The
        streams acknowledge only keys no recovery touches: those are ACKNOWLEDGED."""
        found = self.recoveries.get(incident.scope or incident.key, {})
        if found and max(found.values()) > max(incident.times):
            return "RESOLVED"
        if any(c.verb == "acknowledge" and c.outcome in ("applied", "applied|noop")
               and c.key == incident.key for c in self.commands.values()):  # fmt: skip
            return "ACKNOWLEDGED"
        return "OPEN"

    def add_command(self, command: ExpectedCommand) -> None:
        self.command_records += 1
        self.commands.setdefault(command.command_id, command)

    @property
    def occurrences(self) -> int:
        return sum(i.count for i in self.incidents.values())

    def add_signal(self, family: str, payload: Mapping[str, Any]) -> None:
        whole = hashlib.sha256(signal_identity(family, payload).encode()).digest()

        def identity_of(own: str | None) -> bytes:
            return whole if own is None else hashlib.sha256(own.encode()).digest()

        found = touches(family, payload)
        recovered = identified_recoveries(family, payload)
        for scope, at, own in recovered:
            self.recoveries.setdefault(scope, {})[identity_of(own)] = at
        if not found and not recovered:
            self.ignored += 1
        for touch in found:
            identity = identity_of(touch.identity)
            incident = self.incidents.setdefault(
                touch.key, ExpectedIncident(touch.key, scope=touch.scope)
            )
            if identity in incident.signals:
                continue  # the same signal again: no effect at all (SPEC §3 rule 1)
            incident.signals.add(identity)
            if _SEVERITY_RANK[touch.severity] > _SEVERITY_RANK[incident.severity]:
                incident.severity = touch.severity
            incident.times.append(touch.at)
            incident.evidence.update(touch.evidence)


def expect(records: Iterable[Record]) -> Expected:
    expected = Expected()
    for record in records:
        if record.command is not None:
            expected.add_command(record.command)
        elif record.payload is not None:
            expected.add_signal(record.family, record.payload)
        elif record.reason is not None:
            expected.dead_letters[record.value] = record.reason
    return expected


# --- streams of signals -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce. `payload` is the parsed value of a valid signal; `reason` the
    `x-dlq-reason` a bad record must be dead-lettered with."""

    family: str
    value: bytes | None
    key: bytes | None = None
    payload: dict[str, Any] | None = None
    reason: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None
    command: ExpectedCommand | None = None  # family "commands": the command and its outcome


BASE_TIME = datetime(2024, 5, 1, tzinfo=UTC)


def _at(seconds: float) -> str:
    moment = BASE_TIME + timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def good_signal(
    shape: str,
    ident: int,
    variant: int = 0,
    *,
    rng: random.Random | None = None,
    ignored: bool = False,
) -> dict[str, Any]:
    """A valid signal of `shape`. Signals with the same `ident` share their incident key(s);
    `variant` makes a different signal for the same key(s); `ignored` makes one that creates no
    incident. Fields are spelled as the contract expects them stored, so the stored evidence
    must equal the signal (timestamps once canonical, see `parsed_form`)."""
    return _SIGNALS[shape](ident, variant, rng or random.Random(ident * 7919 + variant), ignored)


def _deploy_status(ident: int, variant: int, rng: random.Random, ignored: bool) -> dict[str, Any]:
    status = "GREEN" if ignored else rng.choice(("YELLOW", "RED"))
    changed = _at(ident * 60)
    signal: dict[str, Any] = {
        "env": f"env-{ident % 5}",
        "status": status,
        "changedAt": changed if ident % 3 else shifted(changed, 1 + ident % 9),
        "signals": {
            "checkedAt": changed,
            "probe": {"variant": variant, "p99Ms": 1500 + variant},
        },
        "reasons": [
            {
                "code": "HEALTH_FAIL",
                "severity": "error",
                "message": f"health check failed (variant {variant})",
            }
        ],
        "deployId": f"deploy-{ident}",
    }
    if ident % 7 == 0:
        del signal["deployId"]  # the key says `unknown`
    return signal


def _verification(ident: int, variant: int, rng: random.Random, ignored: bool) -> dict[str, Any]:
    report = None if ident % 4 == 0 else f"sha256-{ident:08x}"
    signal = {
        "runId": f"verify-{ident}-{variant}" if report else f"verify-{ident}",
        "playbookId": "post-deploy-verify",
        "playbookVersion": f"1.{variant}.0",
        "env": f"env-{ident % 3}",
        "status": "passed" if ignored else rng.choice(("failed", "timeout")),
        "deployId": f"deploy-{ident}",
        "completedAt": _at(ident * 60 + variant * 7 + 0.25 * (ident % 2)),
        "failedSteps": []
        if variant % 2
        else [{"id": "health", "title": "Health check", "error": f"HTTP 50{variant % 10}"}],
        "reportHash": report,
    }
    if report is None:
        del signal["reportHash"]
    return signal


def _ecs_stopped_task(
    ident: int, variant: int, rng: random.Random, ignored: bool
) -> dict[str, Any]:
    cluster = f"cluster-{ident % 3}"
    exit_code = rng.choice((0, 1, 137, None))
    reason = rng.choice(
        (
            "Essential container in task exited",
            "OutOfMemoryError: container killed",
            "Task failed ELB health checks",
            "CrashLoopBackOff",
            "Scaling activity initiated",
            "user ERROR in entrypoint",
        )
    )
    return {
        "cluster": cluster,
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{ident:032x}",
        "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/api:42",
        "stoppedAt": _at(ident * 60 + 0.5),
        "stoppedReason": reason,
        "exitCode": exit_code,
        "lastStatus": "STOPPED",
        "containers": [{"name": "api", "exitCode": exit_code, "reason": f"variant {variant}"}],
    }


def _ecs_eventbridge(ident: int, variant: int, rng: random.Random, ignored: bool) -> dict[str, Any]:
    cluster = f"fleet-{ident % 3}"
    task = f"arn:aws:ecs:us-west-2:111122223333:task/{cluster}/{ident:032x}"
    codes = rng.choice(((0, 1), (0, 0), (137,), (None, 0), (None,)))
    detail: dict[str, Any] = {
        "clusterArn": f"arn:aws:ecs:us-west-2:111122223333:cluster/{cluster}",
        "taskArn": task,
        "taskDefinitionArn": "arn:aws:ecs:us-west-2:111122223333:task-definition/web:7",
        "lastStatus": "RUNNING" if ignored else "STOPPED",
        "desiredStatus": "STOPPED",
        "stoppedReason": rng.choice(("Essential container in task exited", "Task crashed")),
        "stopCode": "EssentialContainerExited",
        "containers": [
            {
                "containerArn": f"arn:aws:ecs:us-west-2:111122223333:container/{n}",
                "name": f"c{n}",
                "exitCode": code,
                "reason": None,
                "lastStatus": "STOPPED",
            }
            for n, code in enumerate(codes)
        ],
        "group": f"service:web-{ident % 2}",
        "availabilityZone": "us-west-2c",
    }
    if not ignored:
        detail["stoppedAt"] = _at(ident * 60 + 0.817)
    return {
        "version": "0",
        "id": f"{ident:08x}-0000-4000-8000-{variant:012x}",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "111122223333",
        "time": _at(ident * 60 + 1),
        "region": "us-west-2",
        "resources": [task],
        "detail": detail,
    }


def _runner_step(ident: int, variant: int, rng: random.Random, ignored: bool) -> dict[str, Any]:
    conclusion = (
        rng.choice(("success", "skipped"))
        if ignored
        else (("failure", "timeout", "cancelled")[ident % 3])
    )
    return {
        "runId": f"run-{ident}",
        "runUrl": f"https://github.com/acme/shop/actions/runs/{ident}",
        "stepName": f"step {ident % 4}",
        "conclusion": conclusion,
        "completedAt": _at(ident * 60 + variant * 11),
        "errorMessage": f"Process completed with exit code {variant + 1}.",
        "jobName": "release",
        "workflowName": "Deploy",
        "repository": "acme/shop",
        "ref": "refs/heads/main",
    }


def _github_workflow_job(
    ident: int, variant: int, rng: random.Random, ignored: bool
) -> dict[str, Any]:
    failing = ("failure", "timed_out", "cancelled")[ident % 3]
    steps = [
        ("Set up job", "success"),
        (f"build {ident % 5}", "success" if ignored else failing),
        ("Post checkout", "skipped"),
    ]
    if ident % 2 and not ignored:
        steps.append(("integration tests", "failure"))
    completed = _at(ident * 60 + variant * 13)
    return {
        "action": "completed",
        "workflow_job": {
            "id": 9_000_000 + ident * 100 + variant,
            "run_id": 5_000_000 + ident,
            "run_attempt": variant + 1,
            "workflow_name": "CI",
            "name": "build",
            "head_branch": "main",
            "head_sha": f"{ident:040x}",
            "status": "completed",
            "conclusion": "success" if ignored else "failure",
            "completed_at": completed,
            "html_url": f"https://github.com/acme/shop/runs/{ident}",
            "steps": [
                {
                    "name": name,
                    "status": "completed",
                    "conclusion": conclusion,
                    "number": n + 1,
                    "started_at": completed,
                    "completed_at": completed,
                }
                for n, (name, conclusion) in enumerate(steps)
            ],
        },
        "repository": {"full_name": "acme/shop"},
    }


def _alertmanager(ident: int, variant: int, rng: random.Random, ignored: bool) -> dict[str, Any]:
    """A group notification of 1–3 alerts (fingerprints of `ident`), firing and resolved mixed:
    variant v fires at T+30v; a resolved alert of variant v ends at T+30v+15, so it recovers the
    triggers up to its own variant and not the later ones."""
    start = ident * 60 + variant * 30
    alerts = []
    for number in range(1 + ident % 3):
        resolved = ignored or rng.random() < 0.3
        labels = {
            "alertname": f"HighLatency{number}",
            "service": f"svc-{ident % 4}",
            "severity": rng.choice(("critical", "warning", "page", "info")),
        }
        alerts.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": labels,
                "annotations": {"summary": f"latency above SLO (variant {variant})"},
                "startsAt": _at(start),
                "endsAt": _at(start + 15) if resolved else "0001-01-01T00:00:00Z",
                "generatorURL": f'http://prometheus:9090/graph?g0.expr=up{{n="{ident}"}}',
                "fingerprint": f"{ident:012x}{number:04x}",
            }
        )
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": f'{{}}:{{service="svc-{ident % 4}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ingest-worker",
        "groupLabels": {"service": f"svc-{ident % 4}"},
        "commonLabels": {"service": f"svc-{ident % 4}"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def _pagerduty_webhook(
    ident: int, variant: int, rng: random.Random, ignored: bool
) -> dict[str, Any]:
    """A Webhooks v3 incident event: triggered (at T+20v), sometimes resolved (at T+20v+10);
    `ignored`: an event type that is neither (a priority change)."""
    kind = (
        "incident.priority_updated"
        if ignored
        else ("incident.resolved" if rng.random() < 0.3 else "incident.triggered")
    )
    at = ident * 60 + variant * 20 + (10 if kind == "incident.resolved" else 0)
    incident = f"Q{ident:09d}"
    return {
        "event": {
            "id": f"01E{ident:010d}V{variant:04d}",
            "event_type": kind,
            "resource_type": "incident",
            "occurred_at": _at(at),
            "agent": {"id": "PJ0LVEB", "type": "user_reference", "summary": "On Call"},
            "client": None,
            "data": {
                "id": incident,
                "type": "incident",
                "self": f"https://api.pagerduty.com/incidents/{incident}",
                "html_url": f"https://acme.pagerduty.com/incidents/{incident}",
                "number": ident % 100_000,
                "status": kind.rpartition(".")[2],
                "title": f"Checkout errors (variant {variant})",
                "service": {"id": "PA2P440", "type": "service_reference", "summary": "checkout"},
                "urgency": rng.choice(("high", "low")),
            },
        }
    }


_SIGNALS = {
    "deploy_status": _deploy_status,
    "verification": _verification,
    "ecs_stopped_task": _ecs_stopped_task,
    "ecs_eventbridge": _ecs_eventbridge,
    "runner_step": _runner_step,
    "github_workflow_job": _github_workflow_job,
    "alertmanager": _alertmanager,
    "pagerduty_webhook": _pagerduty_webhook,
}


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def reencode(shape: str, payload: dict[str, Any], rng: random.Random) -> bytes:
    """The same signal spelled differently: other key order, whitespace and timestamp offset."""
    data = dict(reversed(list(payload.items())))
    top = (_TYPED_TIMES[shape] or ((),))[0]
    if len(top) == 1 and isinstance(data.get(top[0]), str):
        data[top[0]] = shifted(data[top[0]], rng.randint(1, 12))
    return json.dumps(data, indent=rng.choice((1, 2, 4)), ensure_ascii=rng.random() < 0.5).encode()


def signal_stream(
    seed: int,
    size: int,
    *,
    prefix: int = 0,
    redelivered: float = 0.25,
    respelled: float = 0.04,
    ignored: float = 0.08,
    bad: float = 0.01,
) -> list[Record]:
    """About `size` records of all six shapes on the four families, reproducible from `seed`.

    - about a third of the signals update an incident an earlier signal created (occurrence
      counts above 1, severity rising and never falling);
    - `redelivered`: records produced again, byte for byte, later in the stream (some twice);
    - `respelled`: signals sent again with other bytes for the same parsed content;
    - `ignored`: valid signals that create no incident (GREEN, passed, success, RUNNING, …);
    - `bad`: records that must be dead-lettered (each with a unique nonce).
    `prefix` separates the incident keys of streams that share a database.
    """
    rng = random.Random(seed)
    base: list[Record] = []
    used: dict[str, list[int]] = defaultdict(list)
    variants: Counter[tuple[str, int]] = Counter()
    next_ident = prefix * 1_000_000
    target = int(size / (1 + redelivered * 1.3 + respelled))
    while len(base) < target:
        roll = rng.random()
        if roll < bad:
            nonce = f"{seed}-{len(base)}"
            if rng.random() < 0.5:
                value = b'{"nonce": "' + nonce.encode() + b'", "truncated": '
                reason = "invalid_json"
            else:
                value = b"\xff\xfe" + nonce.encode()
                reason = "invalid_encoding"
            base.append(Record(rng.choice(FAMILIES), value, reason=reason))
            continue
        shape = rng.choice(SHAPES)
        family = SHAPE_FAMILY[shape]
        if roll < bad + ignored:
            next_ident += 1
            payload = good_signal(shape, next_ident, rng=rng, ignored=True)
            base.append(Record(family, encode(payload), payload=payload))
            continue
        if used[shape] and rng.random() < 0.35:
            ident = rng.choice(used[shape][-50:])
        else:
            next_ident += 1
            ident = next_ident
            used[shape].append(ident)
        variants[(shape, ident)] += 1
        payload = good_signal(shape, ident, variants[(shape, ident)], rng=rng)
        key = f"{shape}:{ident}".encode() if rng.random() < 0.5 else None
        base.append(Record(family, encode(payload), key=key, payload=payload))
        if rng.random() < respelled:
            base.append(Record(family, reencode(shape, payload, rng), payload=payload))
    # Each copy goes a random distance after its original: positions are (original index + d).
    placed = [(float(i), record) for i, record in enumerate(base)]
    for i, record in enumerate(base):
        if rng.random() < redelivered:
            for copy in range(1 + (rng.random() < 0.3)):
                again = record if rng.random() < 0.7 else _rekeyed(record, rng)
                placed.append((i + rng.randint(1, 400) + 0.1 * (copy + 1), again))
    placed.sort(key=lambda item: item[0])
    return [record for _, record in placed]


def _rekeyed(record: Record, rng: random.Random) -> Record:
    """The same value under another Kafka key: it may land on another partition (and worker)."""
    return Record(
        record.family,
        record.value,
        key=f"other-{rng.random()}".encode(),
        payload=record.payload,
        reason=record.reason,
    )


# --- commands (SPEC §7.2), restated ------------------------------------------------------------

#: SPEC §3: an incident's id is uuid5(ID_NAMESPACE, "incident:<incident_key>") (episode 1).
ID_NAMESPACE = uuid.UUID("6f1c2a52-3d4b-5e8f-9a0b-1c2d3e4f5a6b")
#: SPEC §7.2's default policy: status verbs need one of these roles; annotate any actor.
STATUS_ROLES = ("ONCALL_ENGINEER", "SRE_LEAD", "ORG_ADMIN")
#: SPEC §7.5: the event an applied verb writes.
VERB_EVENTS = {"acknowledge": "incident.acknowledged", "annotate": "incident.annotated"}


def episode_one_id(incident_key: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"incident:{incident_key}"))


@dataclass(frozen=True, slots=True)
class ExpectedCommand:
    """One command of a stream and the outcome SPEC §7 gives it whatever the arrival order.

    `outcome` "applied|noop": one acknowledgement of several for the same key (`group`):
    exactly one of the group is applied, the others find the incident acknowledged (noop).
    `requires`: the incident key that must exist before the command is produced (the commands
    commute with the signals only on existing incidents)."""

    command_id: str
    verb: str
    key: str | None
    outcome: str
    reason: str | None = None
    requires: str | None = None
    group: str | None = None


def command_stream(
    seed: int, records: Iterable[Record], *, redelivered: float = 0.3
) -> list[Record]:
    """Commands for the incidents `records` create (family "commands"), each produced once or
    more (redeliveries, byte for byte), whose outcomes commute with the signals:

    - `acknowledge` (1–2 per key, unique commandIds) on keys no recovery touches: one applied,
      the others noop; by a human ONCALL_ENGINEER or a service SRE_LEAD;
    - `annotate` on any key, by any actor (a VIEWER too), some by incidentId: applied;
    - rejected: `acknowledge` by a VIEWER (not_authorized), `resolve` and `cancel` without a
      rationale on keys no recovery touches (rationale_required: they are OPEN or
      ACKNOWLEDGED), `change_severity` without a rationale (rationale_required), and
      `acknowledge` of keys and ids that never exist (unknown_incident).
    """
    rng = random.Random(seed * 31 + 7)
    expected = expect(records)
    keys = sorted(expected.incidents)
    calm = [k for k in keys if not expected.recoveries.get(expected.incidents[k].scope or k)]
    made: list[tuple[dict[str, Any], ExpectedCommand]] = []
    number = 0

    def add(verb: str, target: str | None, outcome: str, reason: str | None = None, *,
            roles: tuple[str, ...] = ("ONCALL_ENGINEER",), by_id: str | None = None,
            requires: str | None = None, group: str | None = None,
            **extra: Any) -> None:  # fmt: skip
        nonlocal number
        number += 1
        command_id = f"cmd-{seed}-{number:05d}"
        human = rng.random() < 0.7
        body: dict[str, Any] = {
            "commandId": command_id,
            "type": verb,
            **({"incidentId": by_id} if by_id else {"incidentKey": target}),
            "actor": {
                "type": "human" if human else "service",
                "id": f"alice-{number % 7}" if human else "runbook-bot",
                "roles": list(roles),
            },
            "issuedAt": _at(3_000_000 + number * 5),
            **extra,
        }
        made.append(
            (body, ExpectedCommand(command_id, verb, target, outcome, reason, requires, group))
        )

    for key in rng.sample(calm, min(40, len(calm))):
        copies = 1 + (rng.random() < 0.4)
        for _ in range(copies):
            add("acknowledge", key, "applied" if copies == 1 else "applied|noop",
                roles=(rng.choice(STATUS_ROLES[:2]), "VIEWER"), requires=key,
                group=key if copies > 1 else None, rationale="looking at it")  # fmt: skip
    for key in rng.sample(keys, min(40, len(keys))):
        by_id = episode_one_id(key) if key in calm and rng.random() < 0.3 else None
        add("annotate", key, "applied", roles=(rng.choice(("VIEWER", "ONCALL_ENGINEER")),),
            by_id=by_id, requires=key, note=f"customer impact confirmed on {key[:40]}")  # fmt: skip
    for key in rng.sample(keys, min(8, len(keys))):
        add("acknowledge", key, "rejected", "not_authorized", roles=("VIEWER",), requires=key)
    for key in rng.sample(calm, min(8, len(calm))):
        verb = rng.choice(("resolve", "cancel"))
        add(verb, key, "rejected", "rationale_required", requires=key)
    for key in rng.sample(keys, min(4, len(keys))):
        add("change_severity", key, "rejected", "rationale_required", roles=("SRE_LEAD",),
            requires=key, severity="YELLOW")  # fmt: skip
    for n in range(6):
        missing = f"ecs_stopped:never-{seed}:{n}:2024-05-01T00:00:00Z"
        add("acknowledge", missing, "rejected", "unknown_incident")
    add("acknowledge", None, "rejected", "unknown_incident",
        by_id=str(uuid.uuid5(ID_NAMESPACE, f"never-{seed}")))  # fmt: skip

    rng.shuffle(made)
    placed: list[tuple[float, Record]] = []
    for index, (body, command) in enumerate(made):
        value = json.dumps(body).encode()
        key = (command.key or command.command_id).encode()
        record = Record("commands", value, key=key, command=command)
        placed.append((float(index), record))
        while rng.random() < redelivered:
            placed.append((index + rng.uniform(0.5, 30), record))
    placed.sort(key=lambda item: item[0])
    return [record for _, record in placed]


# --- what the worker left, compared with what it should have ------------------------------------


@dataclass
class Observed:
    """Everything the end-state check reads, gathered once the workers stopped."""

    incidents: list[Mapping[str, Any]]
    evidence: list[Mapping[str, Any]]  # incident_key, kind, n
    events: list[Mapping[str, Any]]  # id, incident_id, incident_key, seq, type, occurred_at, hash
    duplicate_rows: dict[str, int]
    published: list[Any]  # ConsumerRecords of the incident events topic, in partition order
    dead_letters: list[Any]  # ConsumerRecords of the dead-letter topic
    chain_breaks: list[str]
    projection_diffs: list[str]
    receipts: list[Mapping[str, Any]] = field(default_factory=list)  # command_receipts rows
    results: list[Any] = field(default_factory=list)  # ConsumerRecords of the results topic


@dataclass
class Verdict:
    """The comparison: `problems` must be empty; the numbers feed the session tally."""

    problems: list[str] = field(default_factory=list)
    incidents_expected: int = 0
    incidents_found: int = 0
    events_expected: int = 0
    events_found: int = 0
    events_published: int = 0
    republished: int = 0
    dead_letters_expected: int = 0
    dead_letters_found: int = 0
    lost: int = 0
    duplicated: int = 0
    commands_expected: int = 0
    commands_sent: int = 0
    receipts_found: int = 0
    results_published: int = 0
    results_republished: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def report(self, limit: int = 25) -> str:
        shown = "\n  ".join(self.problems[:limit])
        more = f"\n  … and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
        return f"{len(self.problems)} problem(s):\n  {shown}{more}"


def _header(record: Any, name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None


def compare(
    expected: Expected,
    observed: Observed,
    *,
    check_dead_letters: bool = True,
    check_commands: bool = True,
) -> Verdict:
    """Every difference between the expected and the observed end state, as readable problems.

    `lost` counts signals whose effect is missing (an occurrence or its event), committed events
    never published and bad records never dead-lettered; `duplicated` counts effects beyond the
    expected ones (extra occurrences, events, incidents or rows).
    """
    verdict = Verdict(
        incidents_expected=len(expected.incidents),
        events_expected=expected.occurrences,
        dead_letters_expected=len(expected.dead_letters),
        incidents_found=len({r["incident_key"] for r in observed.incidents}),
        events_found=sum(e["type"] in TRIGGER_EVENTS for e in observed.events),
    )
    _compare_incidents(expected, observed, verdict)
    for table, count in observed.duplicate_rows.items():
        if count:
            verdict.problems.append(f"{table}: {count} duplicate row(s)")
            verdict.duplicated += count
    _compare_published(observed, verdict)
    if check_commands and (expected.commands or observed.receipts):
        _compare_commands(expected, observed, verdict)
    if check_dead_letters:
        _compare_dead_letters(expected, observed, verdict)
    verdict.problems.extend(f"verify: {item}" for item in observed.chain_breaks)
    verdict.problems.extend(f"replay --check: {item}" for item in observed.projection_diffs)
    return verdict


#: Events a trigger signal writes: one per distinct trigger (created, updated, or reopened).
TRIGGER_EVENTS = ("incident.created", "incident.updated", "incident.reopened")


def _compare_incidents(expected: Expected, observed: Observed, verdict: Verdict) -> None:
    """Per incident key, over all its episodes: occurrence counts, severities, first/last seen,
    evidence, and the stored events: one trigger event per distinct signal at the signals'
    times, seq 1..n per episode starting with `created`, lifecycle events only `resolved`; the
    newest episode's status as `Expected.status_of` says."""
    problem = verdict.problems.append
    episodes: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in observed.incidents:
        episodes[row["incident_key"]].append(row)
    evidence: dict[str, Counter[str]] = defaultdict(Counter)
    recovery_evidence: Counter[str] = Counter()
    for row in observed.evidence:
        if row["kind"] == "recovery" or row["kind"].endswith("_recovery"):
            recovery_evidence[row["incident_key"]] += row["n"]
        else:
            evidence[row["incident_key"]][row["kind"]] += row["n"]
    events: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for event in observed.events:
        events[event["incident_id"]].append(event)

    for key in sorted(episodes.keys() - expected.incidents.keys()):
        problem(f"unexpected incident {key!r}")
        verdict.duplicated += sum(r["occurrence_count"] for r in episodes[key])
    for key, want in sorted(expected.incidents.items()):
        rows = sorted(episodes.get(key, []), key=lambda r: r["episode"])
        if not rows:
            problem(f"lost incident {key!r}")
            verdict.lost += want.count
            continue
        stored = {r["id"]: sorted(events.get(r["id"], []), key=lambda e: e["seq"]) for r in rows}
        trigger_events = [e for s in stored.values() for e in s if e["type"] in TRIGGER_EVENTS]
        occurrences = sum(r["occurrence_count"] for r in rows)
        verdict.lost += max(0, want.count - occurrences, want.count - len(trigger_events))
        verdict.duplicated += max(0, occurrences - want.count, len(trigger_events) - want.count)
        times = sorted(want.times)
        seen = (min(r["first_seen_at"] for r in rows), max(r["last_seen_at"] for r in rows))
        resolved = [
            e
            for s in stored.values()
            for e in s
            if e["type"] == "incident.resolved" and e.get("cause") != "command"
        ]
        checks: dict[str, tuple[Any, Any]] = {
            "occurrence_count": (occurrences, want.count),
            "severity": (max((r["severity"] for r in rows), key=_SEVERITY_RANK.__getitem__),
                         want.severity),
            "first/last seen": (seen, (times[0], times[-1])),
            "newest episode status": (rows[-1]["status"], expected.status_of(want)),
            "episodes": ([r["episode"] for r in rows], list(range(1, len(rows) + 1))),
            "evidence": (dict(evidence.get(key, {})), dict(want.evidence)),
            "trigger event times": (sorted(e["occurred_at"] for e in trigger_events), times),
            "lifecycle events (commands aside)": (
                sorted(
                    {e["type"] for s in stored.values() for e in s if e.get("cause") != "command"}
                    - set(TRIGGER_EVENTS)
                ),
                ["incident.resolved"] if resolved else [],
            ),
            "recovery evidence": (recovery_evidence.get(key, 0) <= len(resolved), True),
        }  # fmt: skip
        if len(rows) > 1 or resolved:
            found = expected.recoveries.get(want.scope or want.key, {})
            checks["a recovery of the scope exists"] = (bool(found), True)
        for row in rows:
            chain = stored[row["id"]]
            checks[f"episode {row['episode']} event seqs"] = (
                [e["seq"] for e in chain],
                list(range(1, row["last_seq"] + 1)),
            )
            checks[f"episode {row['episode']} starts created"] = (
                [e["type"] for e in chain[:1]],
                ["incident.created"],
            )
        for name, (found_value, wanted) in checks.items():
            if found_value != wanted:
                problem(f"{key!r}: {name} {found_value}, expected {wanted}")


def _compare_published(observed: Observed, verdict: Verdict) -> None:
    """SPEC §4: every committed event on the topic (by ce_id), none that was not committed,
    in seq order per incident once duplicates (same ce_id) are dropped."""
    problem = verdict.problems.append
    stored = {str(e["id"]): e for e in observed.events}
    seen: dict[str, bytes] = {}
    order: dict[bytes, list[int]] = defaultdict(list)
    for record in observed.published:
        ce_id = (_header(record, "ce_id") or b"").decode()
        event = stored.get(ce_id)
        if event is None:
            problem(f"published event {ce_id!r} is not in incident_events (never committed)")
            continue
        if ce_id in seen:
            verdict.republished += 1
            if seen[ce_id] != record.value:
                problem(f"event {ce_id} published twice with different bodies")
            continue
        seen[ce_id] = record.value
        body = json.loads(record.value)
        order[record.key].append(body["seq"])
        mismatches = {
            "key": (record.key, str(event["incident_id"]).encode()),
            "seq": (body.get("seq"), event["seq"]),
            "hash": (body.get("hash"), event["hash"]),
            "ce_type": (_header(record, "ce_type"), event["type"].encode()),
            "ce_subject": (_header(record, "ce_subject"), event["incident_key"].encode()),
            "ce_specversion": (_header(record, "ce_specversion"), b"1.0"),
            "content-type": (_header(record, "content-type"), b"application/json"),
        }
        for name, (got, want) in mismatches.items():
            if got != want:
                problem(f"event {ce_id}: {name} is {got!r}, expected {want!r}")
    verdict.events_published = len(seen)
    for ce_id in sorted(stored.keys() - seen.keys()):
        problem(
            f"event {ce_id} ({stored[ce_id]['incident_key']!r} seq {stored[ce_id]['seq']}) "
            "was committed but never published"
        )
        verdict.lost += 1
    for key, seqs in order.items():
        if seqs != sorted(seqs):
            problem(f"incident {key.decode()}: events published in seq order {seqs}")


def _compare_commands(expected: Expected, observed: Observed, verdict: Verdict) -> None:
    """SPEC §7.2: each commandId exactly one receipt with the expected outcome and reason, one
    effect event (cause.command_id) when applied and none otherwise, and its outcome on the
    results topic at least once, always with the same ce_id, body and ce_type."""
    problem = verdict.problems.append
    receipts: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in observed.receipts:
        receipts[row["command_id"]].append(row)
    effects: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in observed.events:
        if event.get("command_id") is not None:
            effects[event["command_id"]].append(event)
    results: dict[str, list[Any]] = defaultdict(list)
    for record in observed.results:
        results[(record.key or b"").decode("utf-8", "replace")].append(record)
    verdict.commands_expected = len(expected.commands)
    verdict.commands_sent = expected.command_records
    verdict.receipts_found = len(receipts.keys() & expected.commands.keys())
    groups: dict[str, list[str]] = defaultdict(list)
    for command_id, want in sorted(expected.commands.items()):
        label = f"command {command_id} ({want.verb} {want.key!r})"
        found = receipts.get(command_id, [])
        if len(found) != 1:
            problem(f"{label}: {len(found)} receipts, expected exactly one")
            verdict.duplicated += max(0, len(found) - 1)
            if not found:
                verdict.lost += 1
                continue
        receipt = found[0]
        outcome, reason = receipt["outcome"], receipt["reason"]
        verdict.outcomes[outcome if reason is None else f"{outcome} {reason}"] += 1
        if want.group is not None:
            groups[want.group].append(outcome)
        if outcome not in want.outcome.split("|") or reason != want.reason:
            problem(f"{label}: {outcome} {reason}, expected {want.outcome} {want.reason}")
        mine = effects.get(command_id, [])
        wanted = 1 if outcome == "applied" else 0
        if len(mine) != wanted:
            problem(f"{label}: {len(mine)} effect events for a {outcome} outcome")
            verdict.duplicated += max(0, len(mine) - wanted)
            verdict.lost += max(0, wanted - len(mine))
        for event in mine:
            if event["type"] != VERB_EVENTS.get(want.verb):
                problem(f"{label}: effect event of type {event['type']}")
            if str(event["id"]) != str(receipt["event_id"]):
                problem(f"{label}: receipt names event {receipt['event_id']}, not {event['id']}")
            if want.key is not None and event["incident_key"] != want.key:
                problem(f"{label}: effect on {event['incident_key']!r}")
        published = results.get(command_id, [])
        if not published:
            problem(f"{label}: its outcome never reached the command results topic")
            verdict.lost += 1
            continue
        verdict.results_published += 1
        verdict.results_republished += len(published) - 1
        headers = {(_header(r, "ce_id"), _header(r, "ce_type"), r.value) for r in published}
        if len(headers) != 1:
            problem(f"{label}: published {len(headers)} different ways (ce_id, ce_type, body)")
        body = json.loads(published[0].value)
        checks = {
            "ce_type": (_header(published[0], "ce_type"), f"incident.command.{outcome}".encode()),
            "body outcome": (body.get("outcome"), outcome),
            "body reason": (body.get("reason"), reason),
            "body commandId": (body.get("commandId"), command_id),
            "body type": (body.get("type"), want.verb),
        }
        for name, (got, expected_value) in checks.items():
            if got != expected_value:
                problem(f"{label}: published {name} {got!r}, expected {expected_value!r}")
    for group, outcomes in sorted(groups.items()):
        if sorted(outcomes) != ["applied", *["noop"] * (len(outcomes) - 1)]:
            problem(f"acknowledgements of {group!r}: outcomes {sorted(outcomes)}")
    for command_id in sorted(receipts.keys() - expected.commands.keys()):
        problem(f"a receipt for a command never sent: {command_id!r}")
    for command_id in sorted(effects.keys() - expected.commands.keys()):
        problem(f"an event caused by a command never sent: {command_id!r}")
        verdict.duplicated += len(effects[command_id])


def _compare_dead_letters(expected: Expected, observed: Observed, verdict: Verdict) -> None:
    """Every bad record dead-lettered (at least once) with its reason and its original bytes;
    no good record on the dead-letter topic."""
    problem = verdict.problems.append
    found: dict[bytes | None, set[str]] = defaultdict(set)
    for record in observed.dead_letters:
        found[record.value].add((_header(record, "x-dlq-reason") or b"").decode())
    verdict.dead_letters_found = len(found.keys() & expected.dead_letters.keys())
    for value, reason in expected.dead_letters.items():
        if value not in found:
            problem(f"bad record {value[:40]!r} never reached the dead-letter topic")
            verdict.lost += 1
        elif found[value] != {reason}:
            problem(f"bad record {value[:40]!r} dead-lettered as {found[value]}, expected {reason}")
    for value in found.keys() - expected.dead_letters.keys():
        problem(f"a record that is not bad was dead-lettered: {(value or b'')[:80]!r}")


# --- reading the end state ----------------------------------------------------------------------

_INCIDENTS = """
SELECT incident_key, episode, id, severity, status, occurrence_count, first_seen_at,
       last_seen_at, last_seq
FROM incidents
"""
#: Evidence a recovery attaches: kind `<source>_recovery` (seed sources), or the resolved alert
#: or event itself (SPEC §8 sources keep their own kind: told apart by the payload).
_EVIDENCE = """
SELECT i.incident_key,
       CASE WHEN e.kind LIKE '%\\_recovery' OR e.payload->>'status' = 'resolved'
                 OR e.payload#>>'{event,event_type}' = 'incident.resolved'
            THEN 'recovery' ELSE e.kind END AS kind,
       count(*) AS n
FROM incident_evidence e JOIN incidents i ON i.id = e.incident_id
GROUP BY 1, 2
"""
_EVENTS = """
SELECT e.id, e.incident_id, i.incident_key, e.seq, e.type, e.occurred_at, e.hash,
       e.payload->'cause'->>'kind' AS cause, e.payload->'cause'->>'command_id' AS command_id
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
"""
_RECEIPTS = "SELECT command_id, type, outcome, reason, event_id, incident_id FROM command_receipts"
_DUPLICATES = {
    "incidents": "SELECT count(*) - count(DISTINCT (incident_key, episode)) FROM incidents",
    "incident_evidence": "SELECT count(*) - count(DISTINCT (incident_id, sha256)) FROM incident_evidence",
    "incident_events": "SELECT count(*) - count(DISTINCT (incident_id, seq)) FROM incident_events",
    "incident_events ids": "SELECT count(*) - count(DISTINCT id) FROM incident_events",
}


async def read_database(conn: Any) -> dict[str, Any]:
    """The rows the comparison needs, plus `verify` and `replay --check` over the same database."""
    from ingest_worker.store.audit import replay_check, verify_chains

    return {
        "incidents": [dict(r) for r in await conn.fetch(_INCIDENTS)],
        "evidence": [dict(r) for r in await conn.fetch(_EVIDENCE)],
        "events": [dict(r) for r in await conn.fetch(_EVENTS)],
        "receipts": [dict(r) for r in await conn.fetch(_RECEIPTS)],
        "duplicate_rows": {name: await conn.fetchval(sql) for name, sql in _DUPLICATES.items()},
        "chain_breaks": [str(b) for b in await verify_chains(conn)],
        "projection_diffs": [str(d) for d in await replay_check(conn)],
    }


async def observe(settings: Any) -> Observed:
    """Read the database and both output topics (call once every worker has stopped)."""
    import asyncpg

    from tests.support import reading

    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        database = await read_database(conn)
    finally:
        await conn.close()
    async with reading(settings, settings.topic_incident_events) as topic:
        published = list(await topic.drain())
    async with reading(settings, settings.topic_dead_letter) as topic:
        dead_letters = list(await topic.drain())
    async with reading(settings, settings.topic_command_results) as topic:
        results = list(await topic.drain())
    return Observed(published=published, dead_letters=dead_letters, results=results, **database)
