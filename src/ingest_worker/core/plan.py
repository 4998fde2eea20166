"""What a batch writes: its new signals grouped by incident and folded into hash-chained events.

Pure: the store feeds the stored state into a `BatchPlan`, which computes the parameters of
each write statement (`ChunkWrite`) without I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

import orjson

from ingest_worker.core.canonical import evidence_sha256
from ingest_worker.core.errors import IngestError
from ingest_worker.core.events import GENESIS_HASH, AddedEvidence, Event, build_event
from ingest_worker.core.projection import IncidentState, advance, start
from ingest_worker.core.values import EvidenceInput, IncidentInput


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DUPLICATE = "duplicate"


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
    """The new signals of one batch, grouped by incident in order of first appearance."""

    def __init__(
        self,
        inputs: Sequence[IncidentInput],
        ids: Mapping[str, uuid.UUID],
        fresh: Iterable[int],
        lanes: int,
    ) -> None:
        self.inputs = inputs
        self.lanes = lanes
        #: incident id → indexes of its new signals, in batch order.
        self.steps: dict[uuid.UUID, list[int]] = {}
        self._evidence_shas: dict[int, list[str]] = {}
        for index in sorted(fresh):
            self.steps.setdefault(ids[inputs[index].incident_key], []).append(index)
        self._stored: dict[uuid.UUID, tuple[IncidentState, str]] = {}
        self._stored_evidence: dict[uuid.UUID, set[str]] = {}

    def add_stored(self, row: Any) -> None:
        """An incident as stored (a `select_incidents` row, with `head_hash`)."""
        state = IncidentState.from_row(row)
        if row["head_hash"] is None:
            raise StoreIntegrityError(f"incident {state.id} has no event seq {state.last_seq}")
        self._stored[state.id] = (state, row["head_hash"])

    def _shas(self, incident: uuid.UUID, index: int) -> list[str]:
        shas = self._evidence_shas.get(index)
        if shas is None:
            evidence = self.inputs[index].evidence
            shas = self._evidence_shas[index] = [
                evidence_sha256(incident, e.kind, e.ref) for e in evidence
            ]
        return shas

    def evidence_probe(self) -> list[tuple[uuid.UUID, str]]:
        """The evidence of stored incidents that may exist already: ask which ones do."""
        return sorted(
            {
                (incident, sha)
                for incident in self._stored
                for index in self.steps[incident]
                for sha in self._shas(incident, index)
            }
        )

    def add_stored_evidence(self, found: Iterable[tuple[uuid.UUID, str]]) -> None:
        for incident, sha in found:
            self._stored_evidence.setdefault(incident, set()).add(sha)

    def chunks(self, size: int) -> Iterator[list[uuid.UUID]]:
        """Whole incidents, about `size` new signals per chunk."""
        chunk: list[uuid.UUID] = []
        count = 0
        for incident, indexes in self.steps.items():
            chunk.append(incident)
            count += len(indexes)
            if count >= size:
                yield chunk
                chunk, count = [], 0
        if chunk:
            yield chunk

    def compute(self, incidents: Iterable[uuid.UUID], outcomes: list[Outcome]) -> ChunkWrite:
        """Fold each incident's new signals, in batch order, into events (and their evidence)."""
        write = ChunkWrite()
        for incident in incidents:
            state, prev_hash = self._stored.get(incident, (None, GENESIS_HASH))
            before = None if state is None else state.snapshot()
            known = set(self._stored_evidence.get(incident, ()))
            for index in self.steps[incident]:
                signal = self.inputs[index]
                after = start(signal, incident) if state is None else advance(state, signal)
                added = []
                for item, sha in zip(signal.evidence, self._shas(incident, index), strict=True):
                    if sha not in known:
                        known.add(sha)
                        added.append(AddedEvidence(sha, item.kind, item.ref))
                        write.add_evidence(sha, item)
                snapshot = after.snapshot()
                event = build_event(
                    before, snapshot, occurred_at=signal.signal_time,
                    signal_sha256=signal.signal_sha256, prev_hash=prev_hash,
                    evidence_added=added,
                )  # fmt: skip
                write.add_event(event, outbox_lane(incident, self.lanes))
                outcomes[index] = Outcome.CREATED if state is None else Outcome.UPDATED
                state, before, prev_hash = after, snapshot, event.hash
            write.incidents += 1
        return write


class ChunkWrite:
    """The parameters of one `write_chunk` statement, and the rows it must write.

    The statement derives every row from the events: the incident row is the snapshot of the
    incident's newest event, evidence rows are the events' `evidence_added` (only their
    redacted payloads travel separately). Few, wide parameters keep the driver's per-element
    encoding cost low.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lanes: list[int] = []
        self.evidence_shas: list[str] = []
        self.evidence_payloads: list[str] = []
        self.incidents = 0

    def add_evidence(self, sha: str, item: EvidenceInput) -> None:
        self.evidence_shas.append(sha)
        self.evidence_payloads.append(json_text(item.payload))

    def add_event(self, event: Event, lane: int) -> None:
        self.events.append(event)
        self.lanes.append(lane)

    @property
    def arguments(self) -> list[list[Any]]:
        return [
            [e.payload_json for e in self.events],
            [e.hash for e in self.events],
            self.lanes,
            self.evidence_shas,
            self.evidence_payloads,
        ]

    def check(self, row: Any) -> None:
        """Raise unless the statement wrote exactly the computed rows (the locks guarantee it)."""
        expected = (self.incidents, len(self.evidence_shas), len(self.events), len(self.events))
        written = (row["incidents"], row["evidence"], row["events"], row["outbox"])
        if written != expected:
            raise StoreIntegrityError(
                f"wrote (incidents, evidence, events, outbox) {written}, expected {expected}"
            )
