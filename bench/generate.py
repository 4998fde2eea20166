"""A deterministic (seeded) stream of signals of the four kinds, with redeliveries and bad records.

Every record knows what the worker must do with it (`category`):

- `created`: the first signal of a new incident key (one `incident.created` event);
- `updated`: a new, different signal for an incident key created earlier in the stream
  (one `incident.updated` event);
- `duplicate`: an exact redelivery (same topic, key and bytes) of an earlier record that made an
  event (no event);
- `ignored`: a valid signal that makes no incident (GREEN, passed, success, a RUNNING task);
- `dead_lettered`: an invalid record (truncated JSON, schema violation, not an object, bad UTF-8),
  or a redelivery of one.

The Kafka record key is the incident key, so that every signal of one incident lands on one
partition in send order: the events of an incident then come out in the order of its signals,
which lets the latency measurement match event *n* of an incident with its *n*-th distinct signal.

Shapes are the golden cases of tests/sources (seed 000 shapes, plus a share of the real-world
envelopes: EventBridge "ECS Task State Change" and GitHub `workflow_job`), with ids and timestamps
varied. Incident keys are computed here from the seed's key formats; `check_sample` verifies them
against the real decoder.
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

CATEGORIES = ("created", "updated", "duplicate", "ignored", "dead_lettered")
EVENT_CATEGORIES = frozenset({"created", "updated"})
KINDS = (
    "deploy_status",
    "verification",
    "ecs_stopped",
    "runner",
)
_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_ENVS = ("prod", "stage", "dev")
_STEPS = ("build", "test", "deploy", "lint", "migrate")
#: Redeliveries copy a record from this far back on average (some in the same batch, most not).
_REDELIVERY_MEAN_DISTANCE = 2000
#: Updates target an incident created among the last this many incidents of the same kind.
_UPDATE_WINDOW = 5000


@dataclass(frozen=True, slots=True)
class StreamSpec:
    signals: int = 200_000
    redeliveries: float = 0.20
    invalid: float = 0.02
    ignored: float = 0.02
    updates: float = 0.15
    envelopes: float = 0.05
    seed: int = 7

    def __post_init__(self) -> None:
        if self.signals < 1:
            raise ValueError("signals must be >= 1")
        if not 0 <= self.redeliveries + self.invalid < 1:
            raise ValueError("redeliveries + invalid must be in [0, 1)")
        for name in ("ignored", "updates", "envelopes"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class GenRecord:
    kind: str
    key: bytes
    value: bytes
    category: str
    #: The incident the record creates or updates (None for ignored and invalid records).
    incident_key: str | None
    shape: str


@dataclass
class Stream:
    spec: StreamSpec
    records: list[GenRecord]
    counts: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)

    @property
    def expected_events(self) -> int:
        return self.counts["created"] + self.counts["updated"]

    @property
    def value_bytes(self) -> int:
        return sum(len(r.value) for r in self.records)

    def summary(self) -> dict[str, Any]:
        return {
            "records": len(self.records),
            "seed": self.spec.seed,
            "fractions": {
                "redeliveries": self.spec.redeliveries,
                "invalid": self.spec.invalid,
                "ignored": self.spec.ignored,
                "updates_of_existing_keys": self.spec.updates,
                "envelopes": self.spec.envelopes,
            },
            "categories": {c: self.counts[c] for c in CATEGORIES},
            "shapes": dict(sorted(self.shapes.items())),
            "expected_events": self.expected_events,
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


#: (value, identity of the incident, incident key)
_Built = tuple[dict[str, Any], tuple[Any, ...], str]


class _Generator:
    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.records: list[GenRecord] = []
        self.counts: Counter[str] = Counter()
        self.shapes: Counter[str] = Counter()
        #: kind → identities of incidents created so far (seed shapes only), for updates.
        self.created: dict[str, list[tuple[Any, ...]]] = {k: [] for k in KINDS}
        # Templates as compact JSON text: json.loads is a faster deep copy than copy.deepcopy.
        self._ecs_running = _dumps(_fixture("aws-ecs-task-state-change-running.json"))
        self._ecs_stopped = _dumps(_fixture("aws-ecs-task-state-change-stopped.json"))
        self._workflow_job = _dumps(_fixture("github-workflow-job-completed-failure.json"))

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

    # ---------------------------------------------------------------- records
    def add(
        self,
        kind: str,
        key: bytes,
        value: bytes,
        category: str,
        incident_key: str | None,
        shape: str,
    ) -> None:
        self.records.append(GenRecord(kind, key, value, category, incident_key, shape))
        self.counts[category] += 1
        self.shapes[shape] += 1

    def valid(self, n: int) -> None:
        rng, spec = self.rng, self.spec
        kind = KINDS[rng.randrange(4)]
        if rng.random() < spec.ignored:
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
            self.add(kind, key.encode(), _dumps(value), "created", key, shape)
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
        self.add(kind, key.encode(), _dumps(value), "updated" if update else "created", key, kind)

    def ignored(self, n: int, kind: str) -> None:
        if kind == "deploy_status":
            value = self.deploy_status(n, None, "GREEN")[0]
        elif kind == "verification":
            value = self.verification(n, None, "passed")[0]
        elif kind == "ecs_stopped":
            value = self.ecs_event(n, stopped=False)[0]
        else:
            value = self.runner(n, None, "success")[0]
        self.add(kind, f"ignored-{n}".encode(), _dumps(value), "ignored", None, f"{kind}:ignored")

    def invalid(self, n: int) -> None:
        rng = self.rng
        kind = KINDS[rng.randrange(4)]
        if kind == "deploy_status":
            value = self.deploy_status(n, None, "RED")[0]
            broken = {**value, "status": "PURPLE"}
        elif kind == "verification":
            value = self.verification(n, None, "failed")[0]
            broken = {**value, "status": 7}
        elif kind == "ecs_stopped":
            value = self.ecs(n, None)[0]
            broken = {k: v for k, v in value.items() if k != "taskArn"}
        else:
            value = self.runner(n, None, "failure")[0]
            broken = {**value, "conclusion": "exploded"}
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
        self.add(kind, f"invalid-{n}".encode(), data, "dead_lettered", None, f"invalid:{problem}")

    def redelivery(self, n: int) -> None:
        distance = 1 + int(self.rng.expovariate(1 / _REDELIVERY_MEAN_DISTANCE))
        original = self.records[max(0, n - distance)]
        category = "duplicate" if original.category in EVENT_CATEGORIES else original.category
        self.add(
            original.kind,
            original.key,
            original.value,
            category,
            original.incident_key,
            "redelivery",
        )

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
        return Stream(spec, self.records, self.counts, self.shapes)


def generate(spec: StreamSpec) -> Stream:
    """The stream of `spec`: the same spec always gives the same records, byte for byte."""
    return _Generator(spec).run()


def check_sample(stream: Stream, sample: int = 400, *, max_bytes: int = 1_048_576) -> None:
    """Decode a sample of records with the worker's decoder; raise if a category or key is wrong."""
    from ingest_worker.core.errors import InvalidSignal
    from ingest_worker.sources.decode import decode_record

    rng = random.Random(stream.spec.seed + 1)
    indexes: Iterable[int] = rng.sample(
        range(len(stream.records)), min(sample, len(stream.records))
    )
    # Always include one record of every shape.
    first_of_shape: dict[str, int] = {}
    for index, record in enumerate(stream.records):
        first_of_shape.setdefault(record.shape, index)
    for index in sorted({*indexes, *first_of_shape.values()}):
        record = stream.records[index]
        try:
            inputs = decode_record(record.kind, record.value, max_bytes=max_bytes)
        except InvalidSignal as exc:
            if record.category != "dead_lettered":
                raise AssertionError(f"record {index} ({record.shape}) rejected: {exc}") from exc
            continue
        if record.category == "dead_lettered":
            raise AssertionError(f"record {index} ({record.shape}) should be invalid")
        if record.category == "ignored":
            if inputs:
                raise AssertionError(f"record {index} ({record.shape}) should be ignored")
            continue
        keys = [i.incident_key for i in inputs]
        if keys != [record.incident_key]:
            raise AssertionError(
                f"record {index} ({record.shape}): keys {keys} != {record.incident_key}"
            )
