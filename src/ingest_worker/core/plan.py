"""What a batch writes: its new signals grouped by incident and folded into hash-chained events.

Pure: the store feeds the stored state into a `BatchPlan`, which computes the parameters of
each write statement (`ChunkWrite`) without I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import orjson

from ingest_worker.core.canonical import evidence_sha256
from ingest_worker.core.errors import IngestError
from ingest_worker.core.events import GENESIS_HASH, AddedEvidence, Event, build_event
from ingest_worker.core.incident import ENDED, decide
from ingest_worker.core.lifecycle import Change, Outcome, RecoveryMark, Rules
from ingest_worker.core.projection import IncidentState
from ingest_worker.core.tenants import DEFAULT_TENANT
from ingest_worker.core.values import EvidenceInput, IncidentInput, Recovery


class StoreIntegrityError(IngestError):
    """The stored data contradicts the store's invariants (e.g. a missing chain head)."""


def outbox_lane(incident: uuid.UUID, lanes: int) -> int:
    """The outbox lane of an incident: its first 4 bytes (big-endian, unsigned) modulo `lanes`."""
    return int.from_bytes(incident.bytes[:4], "big") % lanes


def _mapping(value: object) -> dict[Any, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON data: {type(value).__name__}")


def json_text(value: Any) -> str:
    """JSON text of a jsonb parameter (compact; key order is irrelevant, jsonb normalizes it)."""
    return orjson.dumps(value, default=_mapping).decode()


class BatchPlan:
    """The new effects of one batch, grouped by incident key in order of first appearance.

    Triggers (`IncidentInput`) and recoveries (`Recovery`) are folded per incident key in batch
    order: each is decided by `core.incident.decide` on the state the ones before it left, with
    the newest recovery of the key's scope (stored, or earlier in the batch) at hand. The fold
    only turns the decided changes into hash-chained events and their new evidence.
    """

    def __init__(
        self,
        effects: Sequence[IncidentInput | Recovery],
        fresh: Iterable[int],
        lanes: int,
        *,
        reopen_window: timedelta = timedelta(seconds=300),
        open_after: Mapping[str, int] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        self.inputs = effects
        self.tenant = tenant
        self.lanes = lanes
        self.rules = Rules(reopen_window, dict(open_after or {}), tenant)
        #: incident key → indexes of its new triggers and of the recoveries of its scope.
        self.steps: dict[str, list[int]] = {}
        self._scope_of: dict[str, str] = {}
        self._evidence_shas: dict[tuple[uuid.UUID, int], list[str]] = {}
        self.fresh_recoveries: dict[str, list[int]] = {}
        for index in sorted(fresh):
            item = effects[index]
            if isinstance(item, IncidentInput):
                self.steps.setdefault(item.incident_key, []).append(index)
                self._scope_of.setdefault(item.incident_key, item.recovery_scope)
            else:
                self.fresh_recoveries.setdefault(item.scope, []).append(index)
        self._stored: dict[str, tuple[IncidentState, str]] = {}
        self._stored_evidence: dict[uuid.UUID, set[str]] = {}
        self._stored_recoveries: dict[str, RecoveryMark] = {}

    @property
    def trigger_keys(self) -> list[str]:
        return list(self.steps)

    @property
    def recovery_scopes(self) -> list[str]:
        return sorted(self.fresh_recoveries)

    def add_stored_recovery(self, scope: str, recovery: RecoveryMark) -> None:
        self._stored_recoveries[scope] = recovery

    def add_stored(self, state: IncidentState, head_hash: str) -> None:
        """The newest episode of a key as stored, and the hash of its newest event."""
        self._stored[state.incident_key] = (state, head_hash)
        self._scope_of.setdefault(state.incident_key, state.recovery_scope)
        self.steps.setdefault(state.incident_key, [])

    def _finish_steps(self) -> None:
        """Interleave each key's triggers with the fresh recoveries of its scope."""
        for key, indexes in self.steps.items():
            recoveries = self.fresh_recoveries.get(self._scope_of[key], [])
            if recoveries:
                self.steps[key] = sorted({*indexes, *recoveries})

    def _shas(self, incident: uuid.UUID, index: int) -> list[str]:
        shas = self._evidence_shas.get((incident, index))
        if shas is None:
            evidence = self.inputs[index].evidence
            shas = self._evidence_shas[(incident, index)] = [
                evidence_sha256(incident, e.kind, e.ref) for e in evidence
            ]
        return shas

    def evidence_probe(self) -> list[tuple[uuid.UUID, str]]:
        """The evidence of stored incidents that may exist already: ask which ones do."""
        return sorted(
            {
                (state.id, sha)
                for key, (state, _) in self._stored.items()
                for index in self.steps[key]
                for sha in self._shas(state.id, index)
            }
        )

    def add_stored_evidence(self, found: Iterable[tuple[uuid.UUID, str]]) -> None:
        for incident, sha in found:
            self._stored_evidence.setdefault(incident, set()).add(sha)

    def chunks(self, size: int) -> Iterator[list[str]]:
        """Whole incident keys, about `size` new effects per chunk."""
        self._finish_steps()
        chunk: list[str] = []
        count = 0
        for key, indexes in self.steps.items():
            if not indexes:
                continue
            chunk.append(key)
            count += len(indexes)
            if count >= size:
                yield chunk
                chunk, count = [], 0
        if chunk:
            yield chunk

    def _newest_recovery(self, scope: str, before: int) -> RecoveryMark | None:
        """The newest recovery of `scope` stored or earlier in the batch than index `before`."""
        best = self._stored_recoveries.get(scope)
        for index in self.fresh_recoveries.get(scope, ()):
            if index >= before:
                break
            item = self.inputs[index]
            if best is None or (item.signal_time, item.signal_sha256) > (
                best.signal_time,
                best.signal_sha256,
            ):
                best = RecoveryMark(item.signal_time, item.signal_sha256)
        return best

    def compute(self, keys: Iterable[str]) -> ChunkWrite:
        """Fold each key's new effects, in batch order, into events (and their evidence); the
        write carries each input's outcome."""
        write = ChunkWrite()
        for key in keys:
            fold = _Fold(self, key, write)
            for index in self.steps[key]:
                write.outcomes[index] = fold.apply(index)
            write.incidents += len(fold.touched)
        return write


class _Fold:
    """The running state of one incident key (its newest episode) while a chunk is computed."""

    def __init__(self, plan: BatchPlan, key: str, write: ChunkWrite) -> None:
        self.plan = plan
        self.write = write
        stored = plan._stored.get(key)
        self.state: IncidentState | None = None if stored is None else stored[0]
        self.prev_hash = GENESIS_HASH if stored is None else stored[1]
        self.before = None if self.state is None else self.state.snapshot()
        self.known = (
            set() if self.state is None else set(plan._stored_evidence.get(self.state.id, ()))
        )
        self.scope = plan._scope_of[key]
        self.touched: set[uuid.UUID] = set()

    def apply(self, index: int) -> Outcome:
        """Decide input `index` on the key's state and record its changes."""
        item = self.plan.inputs[index]
        state = self.state
        # Only a trigger on no incident or an ended one reads the newest recovery of its scope.
        newest = (
            self.plan._newest_recovery(self.scope, index)
            if isinstance(item, IncidentInput) and (state is None or state.status in ENDED)
            else None
        )
        decision = decide(state, item, self.plan.rules, scope_recovery=newest)
        for change in decision.events:
            self._emit(change, index)
        self.state = decision.next_state
        return decision.outcome

    def _emit(self, change: Change, index: int) -> None:
        after = change.after
        if change.new_episode:
            self.before, self.prev_hash, self.known = None, GENESIS_HASH, set()
        added = []
        if change.evidence:
            item = self.plan.inputs[index]
            for evidence, sha in zip(item.evidence, self.plan._shas(after.id, index), strict=True):
                if sha not in self.known:
                    self.known.add(sha)
                    added.append(AddedEvidence(sha, evidence.kind, evidence.ref))
                    self.write.add_evidence(sha, evidence)
        snapshot = after.snapshot()
        event = build_event(
            self.before, snapshot, occurred_at=change.occurred_at,
            signal_sha256=change.signal_sha256, prev_hash=self.prev_hash, evidence_added=added,
            kind=change.event_type,
            cause={"kind": "signal", "signal_sha256": change.cause_sha256 or change.signal_sha256},
        )  # fmt: skip
        self.write.add_event(event, outbox_lane(after.id, self.plan.lanes))
        self.touched.add(after.id)
        self.before, self.prev_hash = snapshot, event.hash


class ChunkWrite:
    """What one chunk writes: its events (with their outbox lanes), the redacted payloads of
    the new evidence they list, and how many incidents they touch (`store.mapper` turns it
    into the write statement's parameters)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lanes: list[int] = []
        self.evidence_shas: list[str] = []
        self.evidence_payloads: list[str] = []
        self.incidents = 0
        #: input index → its outcome
        self.outcomes: dict[int, Outcome] = {}

    def add_evidence(self, sha: str, item: EvidenceInput) -> None:
        self.evidence_shas.append(sha)
        self.evidence_payloads.append(json_text(item.payload))

    def add_event(self, event: Event, lane: int) -> None:
        self.events.append(event)
        self.lanes.append(lane)
