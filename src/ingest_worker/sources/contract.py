"""The source contract: a `Source` is a signal family on its topic, a `Shape` one payload form of it.

A source module defines its wire models (pydantic), its pure mappers and one `SOURCE`; the
registry (`sources.registry.SOURCES`) lists them. Topics, settings, JSON Schemas, the AsyncAPI
document, `send` choices and metric labels are derived from the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ingest_worker.core.values import IncidentInput, SignalEffect
from ingest_worker.sources.signatures import SignatureScheme
from ingest_worker.sources.wire import Signal

#: A pure, deterministic mapper: a validated payload → its effects (incident triggers,
#: recoveries, source-reported transitions); `()` means ignored.
Mapper = Callable[[Any], tuple[SignalEffect, ...]]


def one(item: IncidentInput | None) -> tuple[IncidentInput, ...]:
    """A mapper result of at most one input as a tuple."""
    return () if item is None else (item,)


@dataclass(frozen=True, slots=True)
class Shape:
    """One payload form accepted on a source's topic.

    `claims` tells whether a JSON object is of this form; the first claiming shape of a source
    wins, and a shape without `claims` is the fallback (at most one per source).
    `schema_file` names its JSON Schema in docs/schemas/ (a published contract).
    """

    name: str
    wire: type[Signal]
    to_inputs: Mapper
    claims: Callable[[Mapping[str, Any]], bool] | None = None
    schema_file: str = ""


@dataclass(frozen=True, slots=True)
class Source:
    """A signal family: its name (incident `source_kind`, key prefix, fixture folder, metrics
    label), its default topic, the suffix of its `INGEST_TOPIC_<SETTING>` variable, its shapes."""

    name: str
    topic: str
    setting: str
    summary: str
    shapes: tuple[Shape, ...]
    error_codes: tuple[str, ...] = ()
    #: How its senders sign their bodies, when they do (the gateway checks it).
    signature: SignatureScheme | None = None

    @property
    def external(self) -> bool:
        """An external alert source (an alert tool or the generic ingestion), not one of the
        worker's own signal families: its one error code is `<NAME>_ALERT`, as every external
        source's is."""
        return self.error_codes == (f"{self.name.upper()}_ALERT",)

    def shape_of(self, data: Mapping[str, Any]) -> Shape:
        """The shape a JSON object is read as."""
        fallback: Shape | None = None
        for shape in self.shapes:
            if shape.claims is None:
                fallback = fallback or shape
            elif shape.claims(data):
                return shape
        assert fallback is not None, f"source {self.name} has no fallback shape"
        return fallback
