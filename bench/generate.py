"""A deterministic (seeded) stream of what the finished product consumes: seed triggers, recovery
signals, lifecycle commands and external alert payloads, with redeliveries and bad records.

Families (shares of the new, valid records; `StreamSpec`): seed triggers of the four seed kinds
(`--updates` of them update an incident created earlier, `--ignored` are valid no-incident
signals), recoveries of the seed kinds (deploy-status GREEN, verification passed, runner success,
in the scope of an earlier trigger, so that they resolve it; a fifth of them in a scope with no
incident), lifecycle commands on `incident.commands`, and external payloads (Alertmanager and
Grafana groups firing then resolved, PagerDuty Webhooks v3 and Events API v2 triggered →
acknowledged → resolved, CloudWatch ALARM then OK).

Every record knows what the worker must do with each of its effects (`GenRecord.effects`, one
per incident input: an Alertmanager group of three alerts has three):

- `created`: the first signal of a new incident key (one `incident.created` event);
- `updated`: a new, different trigger for an incident created earlier (one `incident.updated`);
- `recovered`: a recovery whose scope holds an active incident with an older trigger (one
  `incident.resolved`); `recovery_unmatched`: a recovery of a scope without incident (no event;
  the worker counts both as `recovered`);
- `duplicate`: an exact redelivery (same topic, key and bytes) of an earlier record (no event);
- `ignored`: a valid signal that makes no incident (a RUNNING ECS task, a PagerDuty
  `incident.priority_updated`);
- `dead_lettered`: an invalid record, or a redelivery of one;
- `transition` (a PagerDuty acknowledgement: the source's own verb) and `command` (a lifecycle
  command): their outcome (`applied` / `noop` / `rejected`) depends on the state the incident is
  in when the worker applies them, which depends on batch boundaries and, for commands, on how the
  worker interleaves topics; the checks count them (their sum is exact) and the report lists them.

No trigger follows a recovery of the same key, so no effect depends on the reopen window, and
commands only acknowledge, annotate or change severity (no verb that changes what a later signal
does); the exact categories are then independent of batch boundaries and topic interleaving.

Kafka record keys: the incident key for seed kinds and commands, the gateway's `record_key`
convention for external payloads (its incident keys, sorted, joined by newlines), so that every
record of one incident (or one alert group) lands on one partition in send order.

Shapes are the golden cases of tests/sources, with identities and timestamps varied; incident
keys are computed here from the sources' key formats and `check_sample` verifies them against
the real decoder.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.sources import FIXTURES

from ingest_worker.sources.commands import COMMANDS
from ingest_worker.sources.contract import Source
from ingest_worker.sources.registry import SOURCES

#: Record-level categories (the category of the record's first effect).
CATEGORIES = (
    "created",
    "updated",
    "recovered",
    "recovery_unmatched",
    "duplicate",
    "ignored",
    "dead_lettered",
    "transition",
    "command",
)
#: Effects that make exactly one event, whatever the batch boundaries.
EVENT_CATEGORIES = frozenset({"created", "updated", "recovered"})
#: Effects whose outcome (applied / noop / rejected) depends on when they are applied.
LIFECYCLE_CATEGORIES = frozenset({"transition", "command"})
#: The worker's `ingest_signals_total` outcome of each exact effect category.
METRIC_OUTCOME = {
    "created": "created",
    "updated": "updated",
    "recovered": "recovered",
    "recovery_unmatched": "recovered",
    "duplicate": "duplicate",
    "ignored": "ignored",
    "dead_lettered": "dead_lettered",
}
SEED_KINDS = ("deploy_status", "verification", "ecs_stopped", "runner")
KINDS = SEED_KINDS  # the seed kinds (older name)
#: Seed kinds with a recovery signal (SPEC §7.3); ECS stopped tasks have none.
RECOVERABLE = ("deploy_status", "verification", "runner")
#: External sources in the stream and their weights among external records.
EXTERNAL_WEIGHTS = {"alertmanager": 0.45, "pagerduty": 0.30, "grafana": 0.10, "cloudwatch": 0.15}
EXTERNAL_KINDS = tuple(EXTERNAL_WEIGHTS)
COMMANDS_KIND = COMMANDS.name
#: Every source the stream uses, by name: the registry's, plus the commands pseudo-source.
SOURCE_OF: dict[str, Source] = {s.name: s for s in SOURCES} | {COMMANDS_KIND: COMMANDS}
#: The family of each kind, for the report.
FAMILY = {
    **{k: "seed" for k in SEED_KINDS},
    **{k: "external" for k in EXTERNAL_KINDS},
    COMMANDS_KIND: "commands",
}
_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_ENVS = ("prod", "stage", "dev")
_STEPS = ("build", "test", "deploy", "lint", "migrate")
#: Redeliveries copy a record from this far back on average (some in the same batch, most not).
_REDELIVERY_MEAN_DISTANCE = 2000
#: Updates target an incident created among the last this many incidents of the same kind.
_UPDATE_WINDOW = 5000
#: Commands target one of the last this many seed incidents created (acknowledged soon after).
_COMMAND_WINDOW = 2000
#: Share of recoveries in a scope without incident.
_UNMATCHED_RECOVERIES = 0.2
#: Chance that an external record advances an open lifecycle rather than opening a new one.
_EXTERNAL_ADVANCE = 0.45


@dataclass(frozen=True, slots=True)
class StreamSpec:
    signals: int = 200_000
    redeliveries: float = 0.20
    invalid: float = 0.02
    ignored: float = 0.02
    updates: float = 0.15
    envelopes: float = 0.05
    #: Shares of the new, valid records (the rest are seed triggers).
    recoveries: float = 0.10
    commands: float = 0.05
    external: float = 0.15
    seed: int = 7
    #: Only this kind (a per-family run): a seed kind (its triggers and recoveries) or an
    #: external source; None: the mixed stream.
    only: str | None = None

    def __post_init__(self) -> None:
        if self.signals < 1:
            raise ValueError("signals must be >= 1")
        if not 0 <= self.redeliveries + self.invalid < 1:
            raise ValueError("redeliveries + invalid must be in [0, 1)")
        for name in ("ignored", "updates", "envelopes", "recoveries", "commands", "external"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.recoveries + self.commands + self.external > 1:
            raise ValueError("recoveries + commands + external must be <= 1")
        if self.only is not None and self.only not in (*SEED_KINDS, *EXTERNAL_KINDS):
            raise ValueError(f"only: one of {', '.join((*SEED_KINDS, *EXTERNAL_KINDS))}")


#: (effect category, incident key or recovery scope or None)
EffectSpec = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class GenRecord:
    kind: str
    key: bytes
    value: bytes
    category: str
    effects: tuple[EffectSpec, ...]
    shape: str
    #: A command's id (its results are keyed by it), else None.
    command_id: str | None = None

    @property
    def incident_key(self) -> str | None:
        """The first effect's key (None for ignored and invalid records)."""
        return self.effects[0][1] if self.effects else None


@dataclass
class Stream:
    spec: StreamSpec
    records: list[GenRecord]
    counts: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)
    #: Effects by category (a group record counts once per alert).
    effects: Counter[str] = field(default_factory=Counter)
    #: (kind, category) → effects.
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Records per kind.
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def expected_events(self) -> int:
        """Events of the exact categories (applied commands and transitions come on top)."""
        return sum(self.effects[c] for c in EVENT_CATEGORIES)

    @property
    def expected_incidents(self) -> int:
        return self.effects["created"]

    @property
    def dead_letters(self) -> int:
        return self.counts["dead_lettered"]

    @property
    def command_ids(self) -> set[str]:
        """Distinct valid commands (each gets one receipt and at least one published result)."""
        return {r.command_id for r in self.records if r.command_id is not None}

    @property
    def value_bytes(self) -> int:
        return sum(len(r.value) for r in self.records)

    def expected_outcomes(self, kind: str) -> dict[str, int]:
        """The worker's exact outcome counters of one kind's topic."""
        out: Counter[str] = Counter()
        for (k, category), n in self.by_kind.items():
            if k == kind and category in METRIC_OUTCOME:
                out[METRIC_OUTCOME[category]] += n
        return dict(out)

    def lifecycle_effects(self, kind: str) -> int:
        """Commands / transitions of one kind whose outcome is applied, noop or rejected."""
        return sum(
            n for (k, c), n in self.by_kind.items() if k == kind and c in LIFECYCLE_CATEGORIES
        )

    def family_shares(self) -> dict[str, Any]:
        """Records per family and per kind, with their share of the stream."""
        total = max(1, len(self.records))
        families: Counter[str] = Counter()
        for kind, n in self.kinds.items():
            families[FAMILY[kind]] += n
        return {
            "families": {
                f: {"records": n, "share": round(n / total, 4)} for f, n in sorted(families.items())
            },
            "kinds": {
                k: {"records": n, "share": round(n / total, 4)}
                for k, n in sorted(self.kinds.items())
            },
        }

    def summary(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "records": len(self.records),
            "seed": spec.seed,
            "only": spec.only,
            "fractions": {
                "redeliveries": spec.redeliveries,
                "invalid": spec.invalid,
                "ignored": spec.ignored,
                "updates_of_existing_keys": spec.updates,
                "envelopes": spec.envelopes,
                "new_records": {
                    "seed_triggers": round(1 - spec.recoveries - spec.commands - spec.external, 4),
                    "recoveries": spec.recoveries,
                    "commands": spec.commands,
                    "external": spec.external,
                },
            },
            "categories": {c: self.counts[c] for c in CATEGORIES},
            "effects": {c: self.effects[c] for c in CATEGORIES},
            "shapes": dict(sorted(self.shapes.items())),
            **self.family_shares(),
            "expected_events": self.expected_events,
            "expected_incidents": self.expected_incidents,
            "commands": len(self.command_ids),
            "mean_value_bytes": round(self.value_bytes / max(1, len(self.records)), 1),
        }


def _ts(n: int) -> str:
    return (_BASE_TIME + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _fixture(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def group_key(keys: Iterable[str]) -> bytes:
    """The gateway's record key of a record about `keys` (`service.gateway.intake.record_key`)."""
    return "\n".join(sorted(keys)).encode()


#: (value, identity of the incident, incident key)
_Built = tuple[dict[str, Any], tuple[Any, ...], str]


@dataclass
class _Lifecycle:
    """An external incident (or alert group) in the stream: the steps it has left."""

    kind: str
    n: int
    steps: list[str]
    data: dict[str, Any]


class _Generator:
    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.records: list[GenRecord] = []
        self.counts: Counter[str] = Counter()
        self.shapes: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self.by_kind: Counter[tuple[str, str]] = Counter()
        self.kinds: Counter[str] = Counter()
        #: kind → identities of active incidents created so far (seed shapes only), for updates
        #: and recoveries (a recovered one leaves the list: nothing triggers it again).
        self.created: dict[str, list[tuple[Any, ...]]] = {k: [] for k in SEED_KINDS}
        #: seed incident keys in creation order (command targets).
        self.seed_keys: list[str] = []
        self.open: dict[str, list[_Lifecycle]] = {k: [] for k in EXTERNAL_KINDS}
        # Templates as compact JSON text: json.loads is a faster deep copy than copy.deepcopy.
        t = {
            "ecs_running": "aws-ecs-task-state-change-running.json",
            "ecs_stopped": "aws-ecs-task-state-change-stopped.json",
            "workflow_job": "github-workflow-job-completed-failure.json",
            "am_firing": "firing_two_alerts.json",
            "grafana_firing": "firing_two_alerts_official.json",
            "pd_triggered": "webhook_incident_triggered.json",
            "pd_acknowledged": "webhook_incident_acknowledged.json",
            "pd_resolved": "webhook_incident_resolved.json",
            "pd_priority": "webhook_official_incident_priority_updated.json",
            "pde_trigger": "events_trigger_openapi_critical.json",
            "pde_acknowledge": "events_DERIVED_acknowledge_srv01_mysql_received_at.json",
            "pde_resolve": "events_DERIVED_resolve_srv01_mysql_received_at.json",
            "cw_alarm": "alarm-single-metric.json",
            "cw_ok": "edge-ok-single-metric.json",
        }
        self._t = {name: _dumps(_fixture(file)) for name, file in t.items()}
        self._ecs_running = self._t["ecs_running"]
        self._ecs_stopped = self._t["ecs_stopped"]
        self._workflow_job = self._t["workflow_job"]

    def template(self, name: str) -> dict[str, Any]:
        value = json.loads(self._t[name])
        assert isinstance(value, dict)
        return value

    # ---------------------------------------------------------------- seed shapes
    def deploy_status(self, n: int, ident: tuple[Any, ...] | None, status: str) -> _Built:
        rng = self.rng
        if ident is None:
            ident = (rng.choice(_ENVS), f"deploy-{n}", _ts(n))
        env, deploy_id, changed = ident
        value = {
            "env": env,
            "status": status,
            "changedAt": changed,
            "signals": {
                "checkedAt": _ts(n),
                "health": {"status": "fail", "httpStatus": rng.choice((500, 502, 503))},
                "latency": {"p99Ms": rng.randrange(200, 5000)},
            },
            "reasons": [
                {"code": "HEALTH_FAIL", "severity": "error", "message": "Health check failed"}
            ],
            "deployId": deploy_id,
        }
        if status == "GREEN":
            value["reasons"] = []
        return value, ident, f"deploy_status:{env}:{deploy_id}:{changed}"

    def verification(self, n: int, ident: tuple[Any, ...] | None, status: str) -> _Built:
        rng = self.rng
        if ident is None:
            ident = (rng.choice(_ENVS), f"deploy-{n}", f"sha256-{n:016x}")
        env, deploy_id, report = ident
        value: dict[str, Any] = {
            "runId": f"run-{n}",
            "playbookId": "post-deploy-verify",
            "playbookVersion": "1.4.0",
            "env": env,
            "status": status,
            "deployId": deploy_id,
            "completedAt": _ts(n),
            "reportHash": report,
            "failedSteps": [{"id": "health", "title": "Health check", "error": "HTTP 500"}],
        }
        if status == "passed":
            value["failedSteps"] = []
        return value, ident, f"verification:{deploy_id}:{report}"

    def ecs(self, n: int, ident: tuple[Any, ...] | None) -> _Built:
        rng = self.rng
        if ident is None:
            cluster = rng.choice(("prod-cluster", "stage-cluster"))
            arn = f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{n:032x}"
            ident = (cluster, arn, _ts(n))
        cluster, arn, stopped = ident
        exit_code = rng.choice((137, 1, 0, 0))
        value = {
            "cluster": cluster,
            "taskArn": arn,
            "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/api:42",
            "stoppedAt": stopped,
            "stoppedReason": rng.choice(
                ("Essential container in task exited", "Scaling activity initiated by deployment")
            ),
            "exitCode": exit_code,
            "lastStatus": "STOPPED",
            "containers": [
                {
                    "name": "api",
                    "exitCode": exit_code,
                    "reason": f"OutOfMemoryError: Container killed (observation {n})",
                }
            ],
        }
        return value, ident, f"ecs_stopped:{cluster}:{arn}:{stopped}"

    def runner(self, n: int, ident: tuple[Any, ...] | None, conclusion: str) -> _Built:
        rng = self.rng
        if ident is None:
            ident = (f"run-{n}", rng.choice(_STEPS), conclusion)
        run_id, step, conclusion = ident
        value = {
            "runId": run_id,
            "runUrl": f"https://github.com/acme/shop/actions/runs/{run_id.removeprefix('run-')}",
            "stepName": step,
            "conclusion": conclusion,
            "completedAt": _ts(n),
            "errorMessage": f"Process completed with exit code {rng.randrange(1, 3)}.",
            "jobName": "release",
            "workflowName": "Deploy",
            "repository": "acme/shop",
            "ref": "refs/heads/main",
        }
        return value, ident, f"runner:{run_id}:{step}:{conclusion}"

    # ---------------------------------------------------------------- envelopes
    def ecs_event(self, n: int, *, stopped: bool) -> tuple[dict[str, Any], str]:
        value = json.loads(self._ecs_stopped if stopped else self._ecs_running)
        task_id = f"{n:032x}"
        arn = f"arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/{task_id}"
        detail = value["detail"]
        value["id"] = f"00000000-0000-4000-8000-{n:012x}"
        value["resources"] = [arn]
        value["time"] = _ts(n)
        detail["taskArn"] = arn
        for container in detail["containers"]:
            container["taskArn"] = arn
        if stopped:
            detail["stoppedAt"] = _ts(n)
            detail["updatedAt"] = _ts(n)
        return value, f"ecs_stopped:FargateCluster:{arn}:{_ts(n)}"

    def workflow_job(self, n: int) -> tuple[dict[str, Any], str]:
        value = json.loads(self._workflow_job)
        job = value["workflow_job"]
        job["id"] = 1_000_000_000 + n
        job["run_id"] = 5_000_000_000 + n
        job["completed_at"] = _ts(n)
        failed = [s["name"] for s in job["steps"] if s.get("conclusion") == "failure"]
        assert len(failed) == 1, "the workflow_job template must have exactly one failed step"
        return value, f"runner:{job['run_id']}:{failed[0]}:failure"

    def workflow_job_recoveries(self, value: dict[str, Any]) -> list[EffectSpec]:
        """Its successful steps: recoveries of their scopes (no incident there)."""
        job = value["workflow_job"]
        names = dict.fromkeys(s["name"] for s in job["steps"] if s.get("conclusion") == "success")
        return [("recovery_unmatched", f"runner:{job['run_id']}:{name}") for name in names]

    # ---------------------------------------------------------------- recoveries
    def recovery(self, n: int) -> None:
        """A recovery of a seed kind: in the scope of an active incident (resolving it), or,
        for a fifth of them (or when there is none yet), in a scope without incident."""
        rng = self.rng
        kinds = [self.spec.only] if self.spec.only else list(RECOVERABLE)
        kind = kinds[rng.randrange(len(kinds))]
        recent = self.created[kind]
        if not recent or rng.random() < _UNMATCHED_RECOVERIES:
            value, scope = self.recovery_value(kind, n, None)
            self.add(kind, f"recovery-{n}".encode(), _dumps(value), [("recovery_unmatched", scope)],
                     f"{kind}:recovery_unmatched")  # fmt: skip
            return
        i = rng.randrange(max(0, len(recent) - _UPDATE_WINDOW), len(recent))
        ident = recent[i]
        recent[i] = recent[-1]
        recent.pop()
        value, scope = self.recovery_value(kind, n, ident)
        key = self.incident_key(kind, ident)
        self.add(kind, key.encode(), _dumps(value), [("recovered", scope)], f"{kind}:recovery")

    def incident_key(self, kind: str, ident: tuple[Any, ...]) -> str:
        if kind == "deploy_status":
            return "deploy_status:{}:{}:{}".format(*ident)
        if kind == "verification":
            return f"verification:{ident[1]}:{ident[2]}"
        return "runner:{}:{}:{}".format(*ident)

    def recovery_value(
        self, kind: str, n: int, ident: tuple[Any, ...] | None
    ) -> tuple[dict[str, Any], str]:
        if kind == "deploy_status":
            fresh = ident is None
            env, deploy_id = (self.rng.choice(_ENVS), f"deploy-{n}") if fresh else ident[:2]  # type: ignore[index]
            value = self.deploy_status(n, (env, deploy_id, _ts(n)), "GREEN")[0]
            return value, f"deploy_status:{env}:{deploy_id}"
        if kind == "verification":
            value, ident, _ = self.verification(n, ident, "passed")
            return value, f"verification:{ident[1]}:post-deploy-verify"
        if ident is None:
            ident = (f"run-{n}", self.rng.choice(_STEPS), "failure")
        run_id, step, _ = ident
        value = self.runner(n, (run_id, step, "success"), "success")[0]
        value["errorMessage"] = None
        return value, f"runner:{run_id}:{step}"

    # ---------------------------------------------------------------- commands
    def command(self, n: int) -> None:
        """A lifecycle command on a recent seed incident (acknowledge, annotate,
        change_severity), some refused (a VIEWER's acknowledge, an unknown incident)."""
        rng = self.rng
        keys = self.seed_keys
        if not keys:
            self.seed_trigger(n)
            return
        target = keys[rng.randrange(max(0, len(keys) - _COMMAND_WINDOW), len(keys))]
        roll = rng.random()
        roles = ["ONCALL_ENGINEER"]
        extra: dict[str, Any] = {}
        if roll < 0.55:
            verb, shape = "acknowledge", "command:acknowledge"
        elif roll < 0.75:
            verb, shape = "annotate", "command:annotate"
            extra["note"] = f"Looking into it (bench note {n})."
        elif roll < 0.85:
            verb, shape, roles = "change_severity", "command:change_severity", ["SRE_LEAD"]
            extra["severity"] = rng.choice(("RED", "YELLOW"))
            extra["rationale"] = "customer impact confirmed"
        elif roll < 0.95:
            verb, shape, roles = "acknowledge", "command:acknowledge_viewer", ["VIEWER"]
        else:
            verb, shape = "acknowledge", "command:acknowledge_unknown"
            target = f"deploy_status:nowhere:deploy-none-{n}:{_ts(n)}"
        command_id = f"bench-{self.spec.seed}-{n}"
        value = {
            "commandId": command_id,
            "type": verb,
            "incidentKey": target,
            "actor": {"type": "human", "id": "bench", "roles": roles},
            "issuedAt": _ts(n),
            **extra,
        }
        self.add(COMMANDS_KIND, target.encode(), _dumps(value), [("command", target)], shape,
                 command_id=command_id)  # fmt: skip

    # ---------------------------------------------------------------- external
    def external(self, n: int) -> None:
        rng = self.rng
        weights = tuple(EXTERNAL_WEIGHTS.values())
        kind = self.spec.only or rng.choices(EXTERNAL_KINDS, weights)[0]
        pending = self.open[kind]
        if pending and rng.random() < _EXTERNAL_ADVANCE:
            i = rng.randrange(len(pending))
            life = pending[i]
            step = life.steps.pop(0)
            if not life.steps:
                pending[i] = pending[-1]
                pending.pop()
            getattr(self, f"{kind}_step")(n, life, step)
            return
        life = getattr(self, f"{kind}_open")(n)
        if life.steps:
            pending.append(life)

    def _alert_group(self, kind: str, n: int) -> _Lifecycle:
        rng = self.rng
        template = self.template("am_firing" if kind == "alertmanager" else "grafana_firing")
        base = template["alerts"][0]
        count = rng.choice((1, 1, 2, 3))
        alertname = rng.choice(("HighErrorRate", "HighLatency", "PodCrashLooping", "DiskFull"))
        alerts, keys = [], []
        for i in range(count):
            alert = json.loads(json.dumps(base))
            fingerprint = f"{n:012x}{i:04x}"
            alert["labels"] = {
                "alertname": alertname,
                "instance": f"host-{n}-{i}:9100",
                "service": rng.choice(("checkout", "search", "payments")),
                "env": rng.choice(_ENVS),
                "severity": rng.choice(("critical", "warning")),
            }
            alert["annotations"] = {"summary": f"{alertname} on host-{n}-{i}"}
            alert["fingerprint"] = fingerprint
            alert["startsAt"] = _ts(n)
            alert["endsAt"] = "0001-01-01T00:00:00Z"
            alerts.append(alert)
            keys.append(
                f"alertmanager:{fingerprint}"
                if kind == "alertmanager"
                else f"grafana:1:{fingerprint}"
            )
        template["alerts"] = alerts
        template["status"] = "firing"
        template["groupKey"] = f'{{}}:{{alertname="{alertname}", group="{n}"}}'
        template["groupLabels"] = {"alertname": alertname}
        template["commonLabels"] = {"alertname": alertname}
        if kind == "grafana":
            template["title"] = f"[FIRING:{count}] {alertname}"
            template.pop("message", None)
        key = group_key(keys)
        self.add(kind, key, _dumps(template), [("created", k) for k in keys], f"{kind}:firing")
        return _Lifecycle(kind, n, ["resolved"], {"group": template, "keys": keys})

    def _alert_group_resolved(self, kind: str, n: int, life: _Lifecycle) -> None:
        group = json.loads(json.dumps(life.data["group"]))
        group["status"] = "resolved"
        for alert in group["alerts"]:
            alert["status"] = "resolved"
            alert["endsAt"] = _ts(n)
        if kind == "grafana":
            group["title"] = f"[RESOLVED] {group['groupLabels']['alertname']}"
        keys = life.data["keys"]
        self.add(kind, group_key(keys), _dumps(group), [("recovered", k) for k in keys],
                 f"{kind}:resolved")  # fmt: skip

    def alertmanager_open(self, n: int) -> _Lifecycle:
        return self._alert_group("alertmanager", n)

    def alertmanager_step(self, n: int, life: _Lifecycle, step: str) -> None:
        self._alert_group_resolved("alertmanager", n, life)

    def grafana_open(self, n: int) -> _Lifecycle:
        return self._alert_group("grafana", n)

    def grafana_step(self, n: int, life: _Lifecycle, step: str) -> None:
        self._alert_group_resolved("grafana", n, life)

    def pagerduty_open(self, n: int) -> _Lifecycle:
        rng = self.rng
        steps = ["acknowledged", "resolved"] if rng.random() < 0.5 else ["resolved"]
        if rng.random() < 0.5:
            value = self.template("pd_triggered")
            incident = f"PB{n:010d}"
            value["event"]["id"] = f"01BENCH{n:019d}"
            value["event"]["occurred_at"] = _ts(n)
            data = value["event"]["data"]
            data["id"] = incident
            data["number"] = n
            data["title"] = f"Checkout errors above 5% ({n})"
            data["urgency"] = rng.choice(("high", "low"))
            data["self"] = f"https://api.pagerduty.com/incidents/{incident}"
            data["html_url"] = f"https://pig208.pagerduty.com/incidents/{incident}"
            key = f"pagerduty:{incident}"
            life = _Lifecycle("pagerduty", n, steps, {"v3": True, "id": incident, "key": key})
            shape = "pagerduty:webhook_v3:triggered"
        else:
            value = self.template("pde_trigger")
            dedup = f"bench/{n}"
            value["dedup_key"] = dedup
            value["payload"]["timestamp"] = _ts(n)
            value["payload"]["summary"] = f"DISK at 99% on bench-{n}"
            value["payload"]["source"] = f"bench-{n}.example.com"
            value["payload"]["severity"] = rng.choice(("critical", "error", "warning"))
            key = f"pagerduty-events:{dedup}"
            life = _Lifecycle("pagerduty", n, steps, {"v3": False, "id": dedup, "key": key})
            shape = "pagerduty:events_v2:trigger"
        self.add("pagerduty", group_key([key]), _dumps(value), [("created", key)], shape)
        return life

    def pagerduty_step(self, n: int, life: _Lifecycle, step: str) -> None:
        key = life.data["key"]
        if life.data["v3"]:
            value = self.template("pd_acknowledged" if step == "acknowledged" else "pd_resolved")
            value["event"]["id"] = f"01BENCH{n:019d}"
            value["event"]["occurred_at"] = _ts(n)
            data = value["event"]["data"]
            data["id"] = life.data["id"]
            data["number"] = life.n
            data["self"] = f"https://api.pagerduty.com/incidents/{life.data['id']}"
            data["html_url"] = f"https://pig208.pagerduty.com/incidents/{life.data['id']}"
            shape = f"pagerduty:webhook_v3:{step}"
        else:
            value = self.template("pde_acknowledge" if step == "acknowledged" else "pde_resolve")
            value["dedup_key"] = life.data["id"]
            value["received_at"] = _ts(n)
            shape = f"pagerduty:events_v2:{'acknowledge' if step == 'acknowledged' else 'resolve'}"
        category = "transition" if step == "acknowledged" else "recovered"
        self.add("pagerduty", group_key([key]), _dumps(value), [(category, key)], shape)

    def _cloudwatch(self, n: int, life_n: int, alarm: bool) -> tuple[dict[str, Any], str]:
        value = self.template("cw_alarm" if alarm else "cw_ok")
        name = f"bench-{life_n}-HighCPU"
        arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
        value["id"] = f"00000000-0000-4000-9000-{n:012x}"
        value["time"] = _ts(n)
        value["resources"] = [arn]
        value["detail"]["alarmName"] = name
        value["detail"]["state"]["timestamp"] = _ts(n)
        return value, f"cloudwatch:{arn}"

    def cloudwatch_open(self, n: int) -> _Lifecycle:
        value, key = self._cloudwatch(n, n, alarm=True)
        self.add(
            "cloudwatch", group_key([key]), _dumps(value), [("created", key)], "cloudwatch:alarm"
        )
        return _Lifecycle("cloudwatch", n, ["ok"], {"key": key})

    def cloudwatch_step(self, n: int, life: _Lifecycle, step: str) -> None:
        value, key = self._cloudwatch(n, life.n, alarm=False)
        self.add(
            "cloudwatch", group_key([key]), _dumps(value), [("recovered", key)], "cloudwatch:ok"
        )

    # ---------------------------------------------------------------- records
    def add(
        self,
        kind: str,
        key: bytes,
        value: bytes,
        effects: list[EffectSpec] | tuple[EffectSpec, ...],
        shape: str,
        *,
        category: str | None = None,
        command_id: str | None = None,
    ) -> None:
        effects = tuple(effects)
        category = category or effects[0][0]
        self.records.append(GenRecord(kind, key, value, category, effects, shape, command_id))
        self.counts[category] += 1
        self.shapes[shape] += 1
        self.kinds[kind] += 1
        for effect, _ in effects:
            self.effects[effect] += 1
            self.by_kind[(kind, effect)] += 1

    def valid(self, n: int) -> None:
        rng, spec = self.rng, self.spec
        if spec.only in EXTERNAL_KINDS:
            if rng.random() < spec.ignored and spec.only == "pagerduty":
                self.ignored(n, "pagerduty")
            else:
                self.external(n)
            return
        roll = rng.random()
        if spec.only is None:
            if roll < spec.commands:
                self.command(n)
                return
            roll -= spec.commands
            if roll < spec.external:
                self.external(n)
                return
            roll -= spec.external
        if roll < spec.recoveries and (spec.only is None or spec.only in RECOVERABLE):
            self.recovery(n)
            return
        self.seed_trigger(n)

    def seed_trigger(self, n: int) -> None:
        rng, spec = self.rng, self.spec
        kind = spec.only or SEED_KINDS[rng.randrange(4)]
        if rng.random() < spec.ignored and spec.only in (None, "ecs_stopped"):
            self.ignored(n, kind)
            return
        recent = self.created[kind]
        update = bool(recent) and rng.random() < spec.updates
        ident = None
        if update:
            ident = recent[rng.randrange(max(0, len(recent) - _UPDATE_WINDOW), len(recent))]
        elif rng.random() < spec.envelopes and kind in ("ecs_stopped", "runner"):
            if kind == "ecs_stopped":
                value, key = self.ecs_event(n, stopped=True)
                shape = "ecs_task_state_change"
            else:
                value, key = self.workflow_job(n)
                shape = "github_workflow_job"
            effects: list[EffectSpec] = [("created", key)]
            if kind == "runner":
                effects += self.workflow_job_recoveries(value)
            self.add(kind, key.encode(), _dumps(value), effects, shape)
            self.seed_keys.append(key)
            return
        if kind == "deploy_status":
            status = "RED" if rng.random() < 0.6 else "YELLOW"
            value, ident, key = self.deploy_status(n, ident, status)
        elif kind == "verification":
            status = "failed" if rng.random() < 0.8 else "timeout"
            value, ident, key = self.verification(n, ident, status)
        elif kind == "ecs_stopped":
            value, ident, key = self.ecs(n, ident)
        else:
            conclusion = rng.choices(("failure", "timeout", "cancelled"), (0.7, 0.15, 0.15))[0]
            value, ident, key = self.runner(n, ident, conclusion)
        if not update:
            recent.append(ident)
            self.seed_keys.append(key)
        category = "updated" if update else "created"
        self.add(kind, key.encode(), _dumps(value), [(category, key)], kind)

    def ignored(self, n: int, kind: str) -> None:
        """A valid signal that makes no incident: a RUNNING ECS task (any seed kind asked) or a
        PagerDuty `incident.priority_updated`."""
        if kind == "pagerduty":
            value = self.template("pd_priority")
            value["event"]["id"] = f"00000000-0000-4000-a000-{n:012x}"
            value["event"]["occurred_at"] = _ts(n)
            self.add("pagerduty", f"ignored-{n}".encode(), _dumps(value), [("ignored", None)],
                     "pagerduty:ignored")  # fmt: skip
            return
        value = self.ecs_event(n, stopped=False)[0]
        self.add("ecs_stopped", f"ignored-{n}".encode(), _dumps(value), [("ignored", None)],
                 "ecs_stopped:ignored")  # fmt: skip

    def invalid(self, n: int) -> None:
        rng, spec = self.rng, self.spec
        if spec.only:
            kind = spec.only
        else:
            roll = rng.random()
            kind = (
                COMMANDS_KIND
                if roll < spec.commands
                else "alertmanager"
                if roll < spec.commands + spec.external
                else SEED_KINDS[rng.randrange(4)]
            )
        if kind == "deploy_status":
            value = self.deploy_status(n, None, "RED")[0]
            broken = {**value, "status": "PURPLE"}
        elif kind == "verification":
            value = self.verification(n, None, "failed")[0]
            broken = {**value, "status": 7}
        elif kind == "ecs_stopped":
            value = self.ecs(n, None)[0]
            broken = {k: v for k, v in value.items() if k != "taskArn"}
        elif kind == "runner":
            value = self.runner(n, None, "failure")[0]
            broken = {**value, "conclusion": "exploded"}
        elif kind == COMMANDS_KIND:
            value = {
                "commandId": f"bench-bad-{n}",
                "type": "acknowledge",
                "incidentKey": f"deploy_status:prod:deploy-{n}:{_ts(n)}",
                "actor": {"type": "human", "id": "bench", "roles": ["ONCALL_ENGINEER"]},
                "issuedAt": _ts(n),
            }
            broken = {**value, "type": "explode"}
        else:
            name = {
                "pagerduty": "pde_trigger",
                "cloudwatch": "cw_alarm",
                "grafana": "grafana_firing",
            }
            value = self.template(name.get(kind, "am_firing"))
            if kind == "cloudwatch":
                broken = {**value, "detail": []}
            elif kind == "pagerduty":
                broken = {**value, "dedup_key": 7}
            else:
                broken = {**value, "version": "3"}
        roll = rng.random()
        if roll < 0.4:
            raw = _dumps(value)
            data, problem = raw[: len(raw) // 2], "truncated_json"
        elif roll < 0.7:
            data, problem = _dumps(broken), "schema_violation"
        elif roll < 0.85:
            data, problem = b'["not", "an", "object"]', "not_an_object"
        else:
            data, problem = b"\xff\xfe" + _dumps(value), "bad_utf8"
        self.add(kind, f"invalid-{n}".encode(), data, [("dead_lettered", None)],
                 f"invalid:{problem}")  # fmt: skip

    def redelivery(self, n: int) -> None:
        distance = 1 + int(self.rng.expovariate(1 / _REDELIVERY_MEAN_DISTANCE))
        original = self.records[max(0, n - distance)]
        effects = tuple(
            (c if c in ("ignored", "dead_lettered") else "duplicate", k)
            for c, k in original.effects
        )
        self.add(original.kind, original.key, original.value, effects, "redelivery")

    def run(self) -> Stream:
        spec = self.spec
        for n in range(spec.signals):
            roll = self.rng.random()
            if roll < spec.redeliveries and self.records:
                self.redelivery(n)
            elif roll < spec.redeliveries + spec.invalid:
                self.invalid(n)
            else:
                self.valid(n)
        return Stream(
            spec, self.records, self.counts, self.shapes, self.effects, self.by_kind, self.kinds
        )


def generate(spec: StreamSpec) -> Stream:
    """The stream of `spec`: the same spec always gives the same records, byte for byte."""
    return _Generator(spec).run()


def _effect_keys(effects: Iterable[Any]) -> list[tuple[str, str | None]]:
    from ingest_worker.core.values import Command, IncidentInput, Recovery, SourceTransition

    out: list[tuple[str, str | None]] = []
    for e in effects:
        if isinstance(e, IncidentInput):
            out.append(("trigger", e.incident_key))
        elif isinstance(e, Recovery):
            out.append(("recovery", e.scope))
        elif isinstance(e, SourceTransition):
            out.append(("transition", e.incident_key))
        elif isinstance(e, Command):
            out.append(("command", e.incident_key))
        else:
            out.append((type(e).__name__, None))
    return out


_DECODED_AS = {
    "created": "trigger",
    "updated": "trigger",
    "recovered": "recovery",
    "recovery_unmatched": "recovery",
    "transition": "transition",
    "command": "command",
}


def check_sample(stream: Stream, sample: int = 400, *, max_bytes: int = 1_048_576) -> None:
    """Decode a sample of records with the worker's decoder (always one of every shape); raise
    if a record's effects are not what the generator says (their kind and key, in order)."""
    from ingest_worker.core.errors import InvalidSignal
    from ingest_worker.sources.decode import decode_record

    rng = random.Random(stream.spec.seed + 1)
    indexes: Iterable[int] = rng.sample(
        range(len(stream.records)), min(sample, len(stream.records))
    )
    first_of_shape: dict[str, int] = {}
    for index, record in enumerate(stream.records):
        first_of_shape.setdefault(record.shape, index)
    for index in sorted({*indexes, *first_of_shape.values()}):
        record = stream.records[index]
        where = f"record {index} ({record.kind}, {record.shape})"
        try:
            effects = decode_record(SOURCE_OF[record.kind], record.value, max_bytes=max_bytes)
        except InvalidSignal as exc:
            if record.category != "dead_lettered":
                raise AssertionError(f"{where} rejected: {exc}") from exc
            continue
        if record.category == "dead_lettered":
            raise AssertionError(f"{where} should be invalid")
        got = _effect_keys(effects)
        if record.category == "ignored":
            if got:
                raise AssertionError(f"{where} should be ignored, got {got}")
            continue
        if record.shape == "redelivery":
            if [k for _, k in got] != [k for _, k in record.effects]:
                raise AssertionError(f"{where}: keys {got} != {record.effects}")
            continue
        want = [(_DECODED_AS[c], k) for c, k in record.effects]
        if got != want:
            raise AssertionError(f"{where}: effects {got} != {want}")
